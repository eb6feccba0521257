package migration

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/xensr/xensr/stream"
)

// Layer is the layer name in the FormatErrors of this package.
const Layer = "xenstore-migration"

// DefaultMaxRecordSize caps a record body unless Reader.MaxRecordSize says
// otherwise: 16 MiB, far above any record xenstored writes (a node is at
// most about 400 KiB; a connection's pending output is bounded by its
// daemon's quotas).
const DefaultMaxRecordSize = 16 << 20

// growChunk bounds how far the body buffer grows ahead of the data read.
const growChunk = 1 << 20

// A Reader decodes a migration stream one record at a time. It stops at the
// first error, which it returns from then on.
type Reader struct {
	// MaxRecordSize caps a record's declared length; a longer record fails
	// with stream.ErrTooLarge before anything is allocated for it. Zero
	// means DefaultMaxRecordSize.
	MaxRecordSize int

	r       io.Reader
	off     int64
	index   int
	hdr     Header
	bo      order
	haveHdr bool
	ended   bool
	err     error
	buf     []byte
	conns   map[uint32]bool
	txs     map[[2]uint32]bool
}

// NewReader returns a Reader of the stream in r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, conns: map[uint32]bool{}, txs: map[[2]uint32]bool{}}
}

// Offset returns the offset of the next byte the Reader will read.
func (r *Reader) Offset() int64 { return r.off }

// Ended reports whether the END record has been read.
func (r *Reader) Ended() bool { return r.ended }

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

func (r *Reader) formatErr(off int64, index int, t Type, field string, err error) error {
	return r.fail(&stream.FormatError{Layer: Layer, Offset: off, Index: index, Type: uint32(t), Field: field, Err: err})
}

// Header reads and checks the stream header (once) and returns it.
func (r *Reader) Header() (Header, error) {
	if r.haveHdr || r.err != nil {
		return r.hdr, r.err
	}
	var b [HeaderSize]byte
	n, err := io.ReadFull(r.r, b[:])
	r.off += int64(n)
	if err != nil {
		return Header{}, r.formatErr(0, -1, 0, "header", stream.ErrTruncated)
	}
	if string(b[:8]) != Ident {
		return Header{}, r.formatErr(0, -1, 0, "ident", stream.ErrValue)
	}
	h := Header{Version: binary.BigEndian.Uint32(b[8:]), Flags: binary.BigEndian.Uint32(b[12:])}
	if h.Version != Version1 && h.Version != Version2 {
		return Header{}, r.formatErr(8, -1, 0, "version", stream.ErrValue)
	}
	if h.Flags&^FlagBigEndian != 0 {
		return Header{}, r.formatErr(12, -1, 0, "flags", stream.ErrReserved)
	}
	r.hdr, r.bo, r.haveHdr = h, h.order(), true
	return h, nil
}

// Next reads the next record, checking it against the records before it:
// watches and transactions name a connection already seen, nodes of a
// transaction name a transaction already seen, connection ids are unique
// and non-zero. After END it returns io.EOF without reading further; input
// that ends before END fails with stream.ErrTruncated.
func (r *Reader) Next() (Record, error) {
	if _, err := r.Header(); err != nil {
		return Record{}, err
	}
	if r.err != nil {
		return Record{}, r.err
	}
	if r.ended {
		return Record{}, io.EOF
	}
	start, index := r.off, r.index
	var h [8]byte
	n, err := io.ReadFull(r.r, h[:])
	r.off += int64(n)
	if err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			return Record{}, r.fail(err)
		}
		return Record{}, r.formatErr(start, index, 0, "record header", stream.ErrTruncated)
	}
	t, length := Type(r.bo.Uint32(h[:])), r.bo.Uint32(h[4:])
	max := r.MaxRecordSize
	if max <= 0 {
		max = DefaultMaxRecordSize
	}
	if uint64(length) > uint64(max) {
		return Record{}, r.formatErr(start, index, t, "len", stream.ErrTooLarge)
	}
	if t > TypeWatchExtended {
		return Record{}, r.formatErr(start, index, t, "type", stream.ErrUnknownType)
	}
	total := pad8(int(length))
	if err := r.fill(total); err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			return Record{}, r.fail(err)
		}
		return Record{}, r.formatErr(start, index, t, "body", stream.ErrTruncated)
	}
	body, content, err := decodeBody(t, r.buf[:length], r.bo, r.hdr.Version)
	if err != nil {
		var be *bodyError
		if errors.As(err, &be) {
			return Record{}, r.formatErr(start, index, t, be.field, be.err)
		}
		return Record{}, r.formatErr(start, index, t, "", err)
	}
	for _, x := range r.buf[content:total] {
		if x != 0 {
			return Record{}, r.formatErr(start, index, t, "padding", stream.ErrPadding)
		}
	}
	rec := Record{Body: body, Offset: start, Index: index}
	switch {
	case int(length) == content:
	case int(length) == pad8(content):
		rec.LenPadded = true
	default:
		return Record{}, r.formatErr(start, index, t, "len", stream.ErrLength)
	}
	if err := r.check(body); err != nil {
		var be *bodyError
		errors.As(err, &be)
		return Record{}, r.formatErr(start, index, t, be.field, be.err)
	}
	r.index++
	if t == TypeEnd {
		r.ended = true
	}
	return rec, nil
}

// check applies the rules between records.
func (r *Reader) check(body Body) error {
	switch b := body.(type) {
	case *Connection:
		if r.conns[b.ID] {
			return bad("conn-id", stream.ErrValue)
		}
		r.conns[b.ID] = true
	case *Watch:
		if !r.conns[b.ConnID] {
			return bad("conn-id", stream.ErrOrder)
		}
	case *Transaction:
		if !r.conns[b.ConnID] {
			return bad("conn-id", stream.ErrOrder)
		}
		k := [2]uint32{b.ConnID, b.TxID}
		if r.txs[k] {
			return bad("tx-id", stream.ErrValue)
		}
		r.txs[k] = true
	case *Node:
		if b.ConnID != 0 && !r.txs[[2]uint32{b.ConnID, b.TxID}] {
			return bad("tx-id", stream.ErrOrder)
		}
	}
	return nil
}

// fill reads n bytes into r.buf[:n], growing the buffer only as data
// arrives, so that a lying length on short input allocates little.
func (r *Reader) fill(n int) error {
	if cap(r.buf) >= n {
		r.buf = r.buf[:n]
		m, err := io.ReadFull(r.r, r.buf)
		r.off += int64(m)
		return err
	}
	got := 0
	r.buf = r.buf[:0]
	for got < n {
		want := min(n-got, max(growChunk, got))
		if got+want > cap(r.buf) {
			nb := make([]byte, got, got+want)
			copy(nb, r.buf[:got])
			r.buf = nb
		}
		r.buf = r.buf[:got+want]
		m, err := io.ReadFull(r.r, r.buf[got:got+want])
		got += m
		r.off += int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}
