package libxc

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream"
)

// A Writer encodes a libxc stream: WriteHeader, then records, then Close,
// which writes END unless the caller wrote one. It pads records, buffers
// nothing between calls (the libxl layer may write to the same io.Writer
// between checkpoint rounds) and checks nothing about the records: it writes
// what it is given, so tests can build invalid streams too.
type Writer struct {
	fw          *stream.Writer
	buf         []byte
	wroteHeader bool
	wroteEnd    bool
}

// ErrNoHeader reports a record written before the headers; it matches
// stream.ErrWriteBeforeHeader.
var ErrNoHeader = fmt.Errorf("libxc: %w", stream.ErrWriteBeforeHeader)

// NewWriter returns a Writer of a libxc stream to w.
func NewWriter(w io.Writer) *Writer { return &Writer{fw: stream.NewWriter(w, 0)} }

// WriteHeader writes the image and domain headers.
func (w *Writer) WriteHeader(img ImageHeader, dom DomainHeader) error {
	if w.wroteHeader {
		return fmt.Errorf("libxc: second header: %w", stream.ErrWriteAfterEnd)
	}
	b := w.buf[:0]
	b = binary.BigEndian.AppendUint64(b, img.Marker)
	b = binary.BigEndian.AppendUint32(b, img.ID)
	b = binary.BigEndian.AppendUint32(b, img.Version)
	b = binary.BigEndian.AppendUint16(b, img.Options)
	b = binary.BigEndian.AppendUint16(b, img.Reserved1)
	b = binary.BigEndian.AppendUint32(b, img.Reserved2)
	b = le.AppendUint32(b, uint32(dom.Type))
	b = le.AppendUint16(b, dom.PageShift)
	b = le.AppendUint16(b, dom.Reserved)
	b = le.AppendUint32(b, dom.XenMajor)
	b = le.AppendUint32(b, dom.XenMinor)
	w.buf = b
	w.wroteHeader = true
	return w.fw.WriteRaw(b)
}

// WriteRecord writes one record. PAGE_DATA contents are written from the
// record's slice without a copy.
func (w *Writer) WriteRecord(rec Record) error {
	if !w.wroteHeader {
		return ErrNoHeader
	}
	if w.wroteEnd {
		return fmt.Errorf("libxc: %s: %w", rec.Type(), stream.ErrWriteAfterEnd)
	}
	if rec.Type() == TypeEnd {
		w.wroteEnd = true
	}
	if p, ok := rec.(*PageData); ok {
		w.buf = p.appendHeader(w.buf[:0])
		return w.fw.WriteRecordv(uint32(TypePageData), w.buf, p.Data)
	}
	w.buf = rec.appendBody(w.buf[:0])
	return w.fw.WriteRecord(uint32(rec.Type()), w.buf)
}

// Close writes the END record if it has not been written. It does not close
// the underlying io.Writer.
func (w *Writer) Close() error {
	if w.wroteEnd {
		return nil
	}
	return w.WriteRecord(&End{})
}
