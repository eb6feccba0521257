package migration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A Writer encodes a migration stream: WriteHeader, then WriteRecord for
// each record, the last of which is END. A failed write of the underlying
// io.Writer is sticky: every later call returns it.
type Writer struct {
	err     error
	w       io.Writer
	hdr     Header
	bo      order
	haveHdr bool
	ended   bool
	buf     []byte
	off     int64
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Offset returns how many bytes have been written.
func (w *Writer) Offset() int64 { return w.off }

// WriteHeader writes the stream header. Its version decides which records
// and fields may follow; its flags the byte order.
func (w *Writer) WriteHeader(h Header) error {
	if w.err != nil {
		return w.err
	}
	if w.haveHdr {
		return errors.New("xenstore-migration: header already written")
	}
	if (h.Version != Version1 && h.Version != Version2) || h.Flags&^FlagBigEndian != 0 {
		return fmt.Errorf("%w: header version %d flags %#x", ErrEncode, h.Version, h.Flags)
	}
	b := append([]byte(Ident), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[8:], h.Version)
	binary.BigEndian.PutUint32(b[12:], h.Flags)
	w.hdr, w.bo, w.haveHdr = h, h.order(), true
	return w.write(b)
}

// WriteRecord writes one record: its type, its length (counting the
// padding when rec.LenPadded), its body and zero padding to 8 bytes.
func (w *Writer) WriteRecord(rec Record) error {
	if w.err != nil {
		return w.err
	}
	if !w.haveHdr {
		return errors.New("xenstore-migration: record before the header")
	}
	if w.ended {
		return errors.New("xenstore-migration: record after END")
	}
	if err := checkEncodable(rec.Body, w.hdr.Version); err != nil {
		return err
	}
	b := append(w.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	b = rec.Body.appendTo(b, w.bo)
	n := len(b) - 8
	if uint64(n) > 0xffffffff {
		return fmt.Errorf("%w: %v body of %d bytes", ErrEncode, rec.Type(), n)
	}
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	if rec.LenPadded {
		n = len(b) - 8
	}
	w.bo.PutUint32(b, uint32(rec.Type()))
	w.bo.PutUint32(b[4:], uint32(n))
	w.buf = b
	if rec.Type() == TypeEnd {
		w.ended = true
	}
	return w.write(b)
}

func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		w.err = err
	}
	return err
}
