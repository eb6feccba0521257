package libxl

import (
	"fmt"
	"io"

	"github.com/xensr/xensr/stream"
)

// A Writer writes a libxl stream: the header, then records, with the libxc
// stream written inline through Libxc after a LIBXC_CONTEXT record. Write
// errors are sticky: after one, every call (and every write through Libxc)
// returns it and writes nothing.
type Writer struct {
	cw     countingWriter
	fw     *stream.Writer
	header bool
	ended  bool
}

type countingWriter struct {
	w   io.Writer
	off int64
	err error // sticky: the first write error
}

// Write writes p and counts the bytes. After a failed write it returns the
// same error and writes nothing.
func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	c.err = err
	return n, err
}

// NewWriter returns a Writer to w, whose first byte is at absolute offset off.
func NewWriter(w io.Writer, off int64) *Writer {
	lw := &Writer{cw: countingWriter{w: w, off: off}}
	lw.fw = stream.NewWriter(&lw.cw, 0)
	return lw
}

// Offset returns the absolute offset of the next byte written.
func (w *Writer) Offset() int64 { return w.cw.off }

// WriteHeader writes the stream header.
func (w *Writer) WriteHeader(h Header) error {
	if w.header {
		return fmt.Errorf("libxl: second header: %w", stream.ErrWriteAfterEnd)
	}
	b, _ := h.AppendBinary(make([]byte, 0, HeaderSize))
	w.header = true
	_, err := w.cw.Write(b)
	return err
}

// WriteRecord writes one record; the body is padded for the caller.
func (w *Writer) WriteRecord(typ RecordType, body []byte) error {
	if !w.header {
		return fmt.Errorf("libxl: %w", stream.ErrWriteBeforeHeader)
	}
	if w.ended {
		return fmt.Errorf("libxl: %s: %w", typ, stream.ErrWriteAfterEnd)
	}
	if err := w.fw.WriteRecord(uint32(typ), body); err != nil {
		return err
	}
	if typ == TypeEnd {
		w.ended = true
	}
	return nil
}

// WriteEmulator writes an EMULATOR_XENSTORE_DATA or EMULATOR_CONTEXT record.
func (w *Writer) WriteEmulator(typ RecordType, e Emulator) error {
	b, _ := e.AppendBinary(nil)
	return w.WriteRecord(typ, b)
}

// Libxc returns the writer for the inline libxc stream: give it to a libxc
// Writer after writing a LIBXC_CONTEXT record. Bytes written through it
// count towards Offset.
func (w *Writer) Libxc() io.Writer { return &w.cw }

// Close writes the END record unless one was written already. It does not
// close the underlying writer.
func (w *Writer) Close() error {
	if w.ended {
		return nil
	}
	return w.WriteRecord(TypeEnd, nil)
}
