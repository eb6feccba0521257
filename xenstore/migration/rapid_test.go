package migration

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"
)

func genStr(t *rapid.T, name string) string {
	return rapid.StringMatching(`[a-zA-Z0-9/_@-]{0,40}`).Draw(t, name)
}

func genQuotas(t *rapid.T, name string) []Quota {
	n := rapid.IntRange(0, 4).Draw(t, name)
	q := make([]Quota, n)
	for i := range q {
		q[i] = Quota{Name: genStr(t, name+"-name"), Value: rapid.Uint32().Draw(t, name+"-val")}
	}
	return q
}

// genState draws a valid state: connections before their watches and
// transactions, transactions before their nodes, END last.
func genState(t *rapid.T) *State {
	v := rapid.SampledFrom([]uint32{Version1, Version2}).Draw(t, "version")
	st := &State{Header: Header{Version: v, Flags: rapid.SampledFrom([]uint32{0, FlagBigEndian}).Draw(t, "flags")}}
	var conns []uint32
	var txs [][2]uint32
	add := func(b Body) {
		st.Records = append(st.Records, Record{Body: b, LenPadded: rapid.Bool().Draw(t, "lenPadded")})
	}
	n := rapid.IntRange(0, 12).Draw(t, "records")
	for i := 0; i < n; i++ {
		switch rapid.IntRange(0, 7).Draw(t, "kind") {
		case 0:
			add(&Global{SocketFD: rapid.Int32().Draw(t, "sfd"), EvtchnFD: rapid.Int32().Draw(t, "efd")})
		case 1:
			id := uint32(len(conns) + 1)
			c := &Connection{ID: id, Kind: rapid.SampledFrom([]ConnType{ConnRing, ConnSocket}).Draw(t, "kind"),
				In: rapid.SliceOfN(rapid.Byte(), 0, 20).Draw(t, "in"), Out: rapid.SliceOfN(rapid.Byte(), 0, 20).Draw(t, "out"),
				HasUniqueID: rapid.Bool().Draw(t, "hasuid")}
			c.RespLen = uint16(rapid.IntRange(0, len(c.Out)).Draw(t, "resp"))
			if c.HasUniqueID {
				c.UniqueID = rapid.Uint64().Draw(t, "uid")
			}
			if c.Kind == ConnRing {
				c.DomID, c.TargetID, c.Evtchn = rapid.Uint16().Draw(t, "dom"), rapid.Uint16().Draw(t, "tdom"), rapid.Uint32().Draw(t, "evtchn")
			} else {
				c.SocketFD = rapid.Int32().Draw(t, "fd")
			}
			conns = append(conns, id)
			add(c)
		case 2:
			if len(conns) == 0 {
				continue
			}
			w := &Watch{ConnID: rapid.SampledFrom(conns).Draw(t, "wconn"), Path: genStr(t, "wpath"), Token: genStr(t, "token")}
			if v >= Version2 && rapid.Bool().Draw(t, "ext") {
				w.Extended, w.Depth = true, rapid.Uint16().Draw(t, "depth")
			}
			add(w)
		case 3:
			if len(conns) == 0 {
				continue
			}
			tx := [2]uint32{rapid.SampledFrom(conns).Draw(t, "tconn"), uint32(len(txs) + 1)}
			txs = append(txs, tx)
			add(&Transaction{ConnID: tx[0], TxID: tx[1]})
		case 4:
			nd := &Node{Path: genStr(t, "path"), Value: rapid.SliceOfN(rapid.Byte(), 0, 30).Draw(t, "value")}
			for j := rapid.IntRange(0, 3).Draw(t, "perms"); j > 0; j-- {
				nd.Perms = append(nd.Perms, Perm{Access: rapid.SampledFrom([]byte("nrwb")).Draw(t, "acc"),
					Flags: uint8(rapid.IntRange(0, 1).Draw(t, "pflags")), DomID: rapid.Uint16().Draw(t, "pdom")})
			}
			if len(txs) > 0 && rapid.Bool().Draw(t, "intx") {
				tx := rapid.SampledFrom(txs).Draw(t, "ntx")
				nd.ConnID, nd.TxID, nd.Access = tx[0], tx[1], uint16(rapid.IntRange(0, 3).Draw(t, "access"))
			}
			add(nd)
		case 5:
			add(&GlobalQuota{Domain: genQuotas(t, "dq"), Global: genQuotas(t, "gq")})
		case 6:
			d := &Domain{DomID: rapid.Uint16().Draw(t, "did"), Quotas: genQuotas(t, "q")}
			if v >= Version2 {
				d.Features = rapid.Uint32().Draw(t, "features")
			}
			add(d)
		case 7:
			add(&Node{Path: genStr(t, "spath")}) // a node with no perms
		}
	}
	st.Records = append(st.Records, Record{Body: &End{}})
	return st
}

// TestRapidRoundTrip: any valid state encodes, decodes to the same records
// and re-encodes to the same bytes.
func TestRapidRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		b, err := st.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadState(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%v\n%x", err, b)
		}
		// LenPadded is normalised where the two lengths are the same.
		for i := range st.Records {
			if st.Records[i].LenPadded && !got.Records[i].LenPadded {
				st.Records[i].LenPadded = false
			}
		}
		if d := cmp.Diff(st, got, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(Record{}, "Offset", "Index")); d != "" {
			t.Fatalf("(-want +got):\n%s", d)
		}
		b2, err := got.Bytes()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}
