package migration

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/stream"
)

// FuzzReadState: any input either fails with a FormatError or decodes to a
// state whose encoding is the input, byte for byte. The corpus is in
// testdata/fuzz/FuzzReadState.
func FuzzReadState(f *testing.F) {
	f.Add(sample())
	st := &State{Header: Header{Version: 2, Flags: FlagBigEndian}, Records: []Record{
		{Body: &Connection{ID: 1, Kind: ConnRing, HasUniqueID: true, UniqueID: 7, In: []byte{1}}},
		{Body: &Watch{ConnID: 1, Path: "/a", Token: "t", Extended: true, Depth: 2}},
		{Body: &Transaction{ConnID: 1, TxID: 2}},
		{Body: &Node{ConnID: 1, TxID: 2, Path: "/a", Perms: []Perm{{'r', 1, 3}}}},
		{Body: &GlobalQuota{Domain: []Quota{{"nodes", 1}}}},
		{Body: &Domain{DomID: 1, Features: 1, Quotas: []Quota{{"x", 2}}}, LenPadded: true},
		{Body: &End{}},
	}}
	b, _ := st.Bytes()
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		st, err := ReadState(bytes.NewReader(in))
		if err != nil {
			var fe *stream.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
			return
		}
		out, err := st.Bytes()
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("round trip differs:\n%x\n%x", in, out)
		}
	})
}
