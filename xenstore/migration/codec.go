package migration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/xensr/xensr/stream"
)

// Fixed sizes of the record bodies before their variable parts.
const (
	globalSize      = 8
	connFixed       = 24
	watchFixed      = 8
	watchExtFixed   = 12
	transactionSize = 8
	nodeFixed       = 16
	permSize        = 4
	quotaFixed      = 4
	domainFixed     = 8
)

// ErrEncode reports a record the Writer cannot encode (a field too long for
// its length field, a string with a NUL, a version that lacks the record).
var ErrEncode = errors.New("xenstore-migration: record cannot be encoded")

func pad8(n int) int { return (n + 7) &^ 7 }

// bodyError is a decoding failure inside a body: the field and the cause.
type bodyError struct {
	field string
	err   error
}

func (e *bodyError) Error() string { return e.field + ": " + e.err.Error() }

func bad(field string, err error) error { return &bodyError{field, err} }

// cstr takes a NUL-terminated string of n bytes (the NUL included) from b at
// off.
func cstr(b []byte, off, n int, field string) (string, error) {
	if n < 1 {
		return "", bad(field, stream.ErrValue) // no room for the NUL
	}
	if off+n > len(b) {
		return "", bad(field, stream.ErrLength)
	}
	s := b[off : off+n-1]
	if b[off+n-1] != 0 || bytes.IndexByte(s, 0) >= 0 {
		return "", bad(field, stream.ErrValue)
	}
	return string(s), nil
}

// quotas decodes n values at b[off:] and then n NUL-terminated names.
func quotas(b []byte, off, n int, bo binary.ByteOrder) ([]Quota, int, error) {
	if off+4*n > len(b) {
		return nil, 0, bad("quota-val", stream.ErrLength)
	}
	q := make([]Quota, n)
	for i := range q {
		q[i].Value = bo.Uint32(b[off+4*i:])
	}
	off += 4 * n
	for i := range q {
		j := bytes.IndexByte(b[off:], 0)
		if j < 0 {
			return nil, 0, bad("quota-names", stream.ErrLength)
		}
		q[i].Name = string(b[off : off+j])
		off += j + 1
	}
	return q, off, nil
}

// decodeBody decodes the body of a record of type t and returns the size of
// its content (what follows must be zero padding).
func decodeBody(t Type, b []byte, bo binary.ByteOrder, version uint32) (Body, int, error) {
	need := func(n int, field string) error {
		if len(b) < n {
			return bad(field, stream.ErrLength)
		}
		return nil
	}
	switch t {
	case TypeEnd:
		if len(b) != 0 {
			return nil, 0, bad("", stream.ErrLength)
		}
		return &End{}, 0, nil
	case TypeGlobal:
		if err := need(globalSize, ""); err != nil {
			return nil, 0, err
		}
		return &Global{SocketFD: int32(bo.Uint32(b)), EvtchnFD: int32(bo.Uint32(b[4:]))}, globalSize, nil
	case TypeConnection:
		if err := need(connFixed, ""); err != nil {
			return nil, 0, err
		}
		c := &Connection{ID: bo.Uint32(b), Kind: ConnType(bo.Uint16(b[4:]))}
		fields := bo.Uint16(b[6:])
		if c.ID == 0 {
			return nil, 0, bad("conn-id", stream.ErrValue)
		}
		if fields&^FieldUniqueID != 0 {
			return nil, 0, bad("fields", stream.ErrReserved)
		}
		switch c.Kind {
		case ConnRing:
			c.DomID, c.TargetID, c.Evtchn = bo.Uint16(b[8:]), bo.Uint16(b[10:]), bo.Uint32(b[12:])
		case ConnSocket:
			c.SocketFD = int32(bo.Uint32(b[8:]))
			if bo.Uint32(b[12:]) != 0 {
				return nil, 0, bad("conn-spec.pad", stream.ErrReserved)
			}
		default:
			return nil, 0, bad("conn-type", stream.ErrValue)
		}
		in, resp, out := int(bo.Uint16(b[16:])), bo.Uint16(b[18:]), int(bo.Uint32(b[20:]))
		if int(resp) > out {
			return nil, 0, bad("out-resp-len", stream.ErrValue)
		}
		if uint64(connFixed)+uint64(in)+uint64(out) > uint64(len(b)) {
			return nil, 0, bad("data", stream.ErrLength)
		}
		off := connFixed
		c.In = append([]byte{}, b[off:off+in]...)
		off += in
		c.Out = append([]byte{}, b[off:off+out]...)
		off += out
		c.RespLen = resp
		if fields&FieldUniqueID != 0 {
			at := pad8(off)
			if at+8 > len(b) {
				return nil, 0, bad("unique-id", stream.ErrLength)
			}
			for _, x := range b[off:at] {
				if x != 0 {
					return nil, 0, bad("unique-id.pad", stream.ErrPadding)
				}
			}
			c.HasUniqueID, c.UniqueID = true, bo.Uint64(b[at:])
			off = at + 8
		}
		return c, off, nil
	case TypeWatch, TypeWatchExtended:
		fixed := watchFixed
		if t == TypeWatchExtended {
			if version < Version2 {
				return nil, 0, bad("", stream.ErrUnknownType)
			}
			fixed = watchExtFixed
		}
		if err := need(fixed, ""); err != nil {
			return nil, 0, err
		}
		w := &Watch{ConnID: bo.Uint32(b), Extended: t == TypeWatchExtended}
		pl, tl := int(bo.Uint16(b[4:])), int(bo.Uint16(b[6:]))
		if w.Extended {
			w.Depth = bo.Uint16(b[8:])
			if bo.Uint16(b[10:]) != 0 {
				return nil, 0, bad("pad", stream.ErrReserved)
			}
		}
		var err error
		if w.Path, err = cstr(b, fixed, pl, "wpath"); err != nil {
			return nil, 0, err
		}
		if w.Token, err = cstr(b, fixed+pl, tl, "token"); err != nil {
			return nil, 0, err
		}
		return w, fixed + pl + tl, nil
	case TypeTransaction:
		if err := need(transactionSize, ""); err != nil {
			return nil, 0, err
		}
		return &Transaction{ConnID: bo.Uint32(b), TxID: bo.Uint32(b[4:])}, transactionSize, nil
	case TypeNode:
		if err := need(nodeFixed, ""); err != nil {
			return nil, 0, err
		}
		n := &Node{ConnID: bo.Uint32(b), TxID: bo.Uint32(b[4:]), Access: bo.Uint16(b[12:])}
		pl, vl, np := int(bo.Uint16(b[8:])), int(bo.Uint16(b[10:])), int(bo.Uint16(b[14:]))
		off := nodeFixed
		if off+np*permSize > len(b) {
			return nil, 0, bad("perms", stream.ErrLength)
		}
		if np > 0 {
			n.Perms = make([]Perm, np)
		}
		for i := range n.Perms {
			p := Perm{Access: b[off], Flags: b[off+1], DomID: bo.Uint16(b[off+2:])}
			switch p.Access {
			case 'n', 'r', 'w', 'b':
			default:
				return nil, 0, bad(fmt.Sprintf("perm[%d].perm", i), stream.ErrValue)
			}
			if p.Flags&^PermStale != 0 {
				return nil, 0, bad(fmt.Sprintf("perm[%d].flags", i), stream.ErrReserved)
			}
			n.Perms[i] = p
			off += permSize
		}
		var err error
		if n.Path, err = cstr(b, off, pl, "path"); err != nil {
			return nil, 0, err
		}
		off += pl
		if off+vl > len(b) {
			return nil, 0, bad("value", stream.ErrLength)
		}
		n.Value = append([]byte{}, b[off:off+vl]...)
		return n, off + vl, nil
	case TypeGlobalQuota:
		if err := need(quotaFixed, ""); err != nil {
			return nil, 0, err
		}
		nd, ng := int(bo.Uint16(b)), int(bo.Uint16(b[2:]))
		q, end, err := quotas(b, quotaFixed, nd+ng, bo)
		if err != nil {
			return nil, 0, err
		}
		return &GlobalQuota{Domain: q[:nd:nd], Global: q[nd:]}, end, nil
	case TypeDomain:
		if err := need(domainFixed, ""); err != nil {
			return nil, 0, err
		}
		d := &Domain{DomID: bo.Uint16(b), Features: bo.Uint32(b[4:])}
		if version < Version2 && d.Features != 0 {
			return nil, 0, bad("features", stream.ErrReserved)
		}
		q, end, err := quotas(b, domainFixed, int(bo.Uint16(b[2:])), bo)
		if err != nil {
			return nil, 0, err
		}
		d.Quotas = q
		return d, end, nil
	}
	return nil, 0, bad("type", stream.ErrUnknownType)
}

// checkEncodable reports why a body cannot be encoded in version, or nil.
func checkEncodable(body Body, version uint32) error {
	str := func(field, s string) error {
		if len(s)+1 > 0xffff || strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: %s %q: too long or holds a NUL", ErrEncode, field, s)
		}
		return nil
	}
	names := func(q []Quota) error {
		for _, x := range q {
			if strings.IndexByte(x.Name, 0) >= 0 {
				return fmt.Errorf("%w: quota name %q holds a NUL", ErrEncode, x.Name)
			}
		}
		if len(q) > 0xffff {
			return fmt.Errorf("%w: %d quotas", ErrEncode, len(q))
		}
		return nil
	}
	switch b := body.(type) {
	case nil:
		return fmt.Errorf("%w: no body", ErrEncode)
	case *Connection:
		if b.ID == 0 || (b.Kind != ConnRing && b.Kind != ConnSocket) || len(b.In) > 0xffff ||
			uint64(len(b.Out)) > 0xffffffff || int(b.RespLen) > len(b.Out) {
			return fmt.Errorf("%w: connection %d", ErrEncode, b.ID)
		}
	case *Watch:
		if b.Extended && version < Version2 {
			return fmt.Errorf("%w: WATCH_DATA_EXTENDED in version %d", ErrEncode, version)
		}
		if err := str("wpath", b.Path); err != nil {
			return err
		}
		return str("token", b.Token)
	case *Node:
		if len(b.Perms) > 0xffff || len(b.Value) > 0xffff {
			return fmt.Errorf("%w: node %q: too many perms or value too long", ErrEncode, b.Path)
		}
		for _, p := range b.Perms {
			if !strings.ContainsRune("nrwb", rune(p.Access)) || p.Access == 0 || p.Flags&^PermStale != 0 {
				return fmt.Errorf("%w: node %q: permission %v", ErrEncode, b.Path, p)
			}
		}
		return str("path", b.Path)
	case *GlobalQuota:
		if err := names(b.Domain); err != nil {
			return err
		}
		return names(b.Global)
	case *Domain:
		if b.Features != 0 && version < Version2 {
			return fmt.Errorf("%w: domain %d: features in version %d", ErrEncode, b.DomID, version)
		}
		return names(b.Quotas)
	}
	return nil
}

func (*End) appendTo(b []byte, bo order) []byte { return b }

func (g *Global) appendTo(b []byte, bo order) []byte {
	b = bo.AppendUint32(b, uint32(g.SocketFD))
	return bo.AppendUint32(b, uint32(g.EvtchnFD))
}

func (c *Connection) appendTo(b []byte, bo order) []byte {
	start := len(b)
	b = bo.AppendUint32(b, c.ID)
	b = bo.AppendUint16(b, uint16(c.Kind))
	var fields uint16
	if c.HasUniqueID {
		fields = FieldUniqueID
	}
	b = bo.AppendUint16(b, fields)
	if c.Kind == ConnSocket {
		b = bo.AppendUint32(b, uint32(c.SocketFD))
		b = bo.AppendUint32(b, 0)
	} else {
		b = bo.AppendUint16(b, c.DomID)
		b = bo.AppendUint16(b, c.TargetID)
		b = bo.AppendUint32(b, c.Evtchn)
	}
	b = bo.AppendUint16(b, uint16(len(c.In)))
	b = bo.AppendUint16(b, c.RespLen)
	b = bo.AppendUint32(b, uint32(len(c.Out)))
	b = append(append(b, c.In...), c.Out...)
	if c.HasUniqueID {
		for (len(b)-start)%8 != 0 {
			b = append(b, 0)
		}
		b = bo.AppendUint64(b, c.UniqueID)
	}
	return b
}

func (w *Watch) appendTo(b []byte, bo order) []byte {
	b = bo.AppendUint32(b, w.ConnID)
	b = bo.AppendUint16(b, uint16(len(w.Path)+1))
	b = bo.AppendUint16(b, uint16(len(w.Token)+1))
	if w.Extended {
		b = bo.AppendUint16(b, w.Depth)
		b = bo.AppendUint16(b, 0)
	}
	b = append(append(b, w.Path...), 0)
	return append(append(b, w.Token...), 0)
}

func (t *Transaction) appendTo(b []byte, bo order) []byte {
	return bo.AppendUint32(bo.AppendUint32(b, t.ConnID), t.TxID)
}

func (n *Node) appendTo(b []byte, bo order) []byte {
	b = bo.AppendUint32(b, n.ConnID)
	b = bo.AppendUint32(b, n.TxID)
	b = bo.AppendUint16(b, uint16(len(n.Path)+1))
	b = bo.AppendUint16(b, uint16(len(n.Value)))
	b = bo.AppendUint16(b, n.Access)
	b = bo.AppendUint16(b, uint16(len(n.Perms)))
	for _, p := range n.Perms {
		b = append(b, p.Access, p.Flags)
		b = bo.AppendUint16(b, p.DomID)
	}
	b = append(append(b, n.Path...), 0)
	return append(b, n.Value...)
}

func appendQuotas(b []byte, bo order, qs ...[]Quota) []byte {
	for _, q := range qs {
		for _, x := range q {
			b = bo.AppendUint32(b, x.Value)
		}
	}
	for _, q := range qs {
		for _, x := range q {
			b = append(append(b, x.Name...), 0)
		}
	}
	return b
}

func (g *GlobalQuota) appendTo(b []byte, bo order) []byte {
	b = bo.AppendUint16(b, uint16(len(g.Domain)))
	b = bo.AppendUint16(b, uint16(len(g.Global)))
	return appendQuotas(b, bo, g.Domain, g.Global)
}

func (d *Domain) appendTo(b []byte, bo order) []byte {
	b = bo.AppendUint16(b, d.DomID)
	b = bo.AppendUint16(b, uint16(len(d.Quotas)))
	b = bo.AppendUint32(b, d.Features)
	return appendQuotas(b, bo, d.Quotas)
}
