// Package stream is the record framing shared by the layers of a Xen
// migration v2 stream (the libxc and libxl streams): each record is a
// little-endian u32 type, a u32 body length, the body, and zero padding up to
// a multiple of 8 bytes.
//
// A Reader reads exactly one record at a time into a reused buffer and never
// reads ahead, so layers can hand the same io.Reader to each other: the libxl
// layer reads its LIBXC_CONTEXT record, passes the underlying reader to a
// libxc reader (starting at the current offset), and takes it back after the
// libxc END record. A Writer frames and pads records for the caller.
//
// Malformed input is reported as a *FormatError naming the layer, byte
// offset, record index, type and field, and what was expected versus found,
// wrapping one of the sentinel errors.
//
// Memory bound: a Reader keeps one record buffer, as large as the largest
// record it has read (at most the record cap, MaxRecordSize, rounded up to
// 8). A declared length past the cap fails before anything is allocated. While
// a longer record arrives the buffer starts at 4 MiB + 8 KiB + 8 bytes (one
// PAGE_DATA record of 1024 pages) and doubles as it fills, so a record costs
// less than twice its length in allocations (at most twice the cap) and
// linear time, and a lying length on a short input costs at most twice the
// bytes that arrived plus 4 MiB + 8 KiB + 8. TestMemoryBound checks this with
// runtime.MemStats.
package stream

import (
	"encoding/binary"
	"fmt"
	"io"
)

// HeaderSize is the size of a record header (type and length).
const HeaderSize = 8

// Align is the alignment of records: bodies are zero-padded to a multiple of it.
const Align = 8

// DefaultMaxRecordSize is the default cap on a record body: 128 MiB, the limit
// Xen's restore code applies.
const DefaultMaxRecordSize = 128 << 20

// PaddedLen returns n rounded up to a multiple of Align.
func PaddedLen(n int) int { return (n + Align - 1) &^ (Align - 1) }

// A Record is one framed record. Body aliases the Reader's buffer and is valid
// only until the next call to Next.
type Record struct {
	Type   uint32 // record type, including any optional bit
	Body   []byte // body without padding
	Offset int64  // absolute offset of the record header
	Index  int    // index of the record among those read by this Reader
}

// PaddedSize returns the encoded size of the record: header, body and padding.
func (r *Record) PaddedSize() int { return HeaderSize + PaddedLen(len(r.Body)) }

// A Reader reads framed records one at a time from an io.Reader without
// reading ahead of the current record.
type Reader struct {
	r     io.Reader
	layer string
	// MaxRecordSize caps the declared body length; longer records fail with
	// ErrTooLarge before any allocation. Zero means DefaultMaxRecordSize.
	MaxRecordSize int
	// AllowNonZeroPadding accepts padding bytes that are not zero (for
	// forensic reading).
	AllowNonZeroPadding bool
	// TypeName, if set, names record types in errors (the layer's names,
	// such as "PAGE_DATA").
	TypeName func(uint32) string

	off   int64
	index int
	buf   []byte
	hdr   [HeaderSize]byte
}

// NewReader returns a Reader of the named layer (used in errors) reading from
// r, whose first byte is at absolute offset off.
func NewReader(r io.Reader, layer string, off int64) *Reader {
	return &Reader{r: r, layer: layer, off: off}
}

// Offset returns the absolute offset of the next byte the Reader will read.
func (r *Reader) Offset() int64 { return r.off }

// Index returns the index the next record will have.
func (r *Reader) Index() int { return r.index }

// SetOffset tells the Reader the absolute offset of the next byte of its
// io.Reader, after another layer has read from the same io.Reader.
func (r *Reader) SetOffset(off int64) { r.off = off }

// ReadFull reads exactly len(p) bytes that are not a record (a stream
// header), advancing the offset. It returns the offset of p's first byte and
// a FormatError wrapping ErrTruncated, naming field, when the input is short.
func (r *Reader) ReadFull(p []byte, field string) (int64, error) {
	start := r.off
	n, err := io.ReadFull(r.r, p)
	r.off += int64(n)
	if err != nil {
		if err == io.EOF && n == 0 && field == "" {
			return start, io.EOF
		}
		e := &FormatError{Layer: r.layer, Offset: start, Index: -1, Field: field, Err: truncOr(err)}
		if e.Err == ErrTruncated {
			e.Expected, e.Actual = Bytes(len(p)), Short(n, len(p))
		}
		return start, e
	}
	return start, nil
}

// Underlying returns the io.Reader, positioned just after the last record read.
func (r *Reader) Underlying() io.Reader { return r.r }

// Next reads the next record. At a clean end of input (no byte of a new record
// header) it returns io.EOF; a partial record yields a FormatError wrapping
// ErrTruncated that says how many bytes were missing. The returned Record's
// Body is valid until the next call.
func (r *Reader) Next() (Record, error) {
	start := r.off
	n, err := io.ReadFull(r.r, r.hdr[:])
	r.off += int64(n)
	if err != nil {
		if err == io.EOF {
			return Record{}, io.EOF
		}
		e := r.errAt(start, 0, "record header", truncOr(err))
		if e.Err == ErrTruncated {
			e.Index, e.Expected, e.Actual = -1, Bytes(HeaderSize), Short(n, HeaderSize)
		}
		return Record{}, e
	}
	typ := binary.LittleEndian.Uint32(r.hdr[0:4])
	length := binary.LittleEndian.Uint32(r.hdr[4:8])
	max := r.MaxRecordSize
	if max <= 0 {
		max = DefaultMaxRecordSize
	}
	if uint64(length) > uint64(max) {
		e := r.errAt(start, typ, "length", ErrTooLarge)
		e.Expected, e.Actual = "at most "+Bytes(max), Bytes(int(length))
		return Record{}, e
	}
	padded := PaddedLen(int(length))
	if got, err := r.fill(padded); err != nil {
		e := r.errAt(start, typ, "body", truncOr(err))
		if e.Err == ErrTruncated {
			e.Expected, e.Actual = Bytes(padded), Short(got, padded)
		}
		return Record{}, e
	}
	body := r.buf[:length]
	if !r.AllowNonZeroPadding {
		for _, b := range r.buf[length:padded] {
			if b != 0 {
				e := r.errAt(start, typ, "padding", ErrPadding)
				e.Expected, e.Actual = "zero bytes", fmt.Sprintf("% x", r.buf[length:padded])
				return Record{}, e
			}
		}
	}
	rec := Record{Type: typ, Body: body, Offset: start, Index: r.index}
	r.index++
	return rec, nil
}

// firstChunk is the most the buffer grows ahead of data actually read: a
// record longer than the buffer starts with this much room and doubles it
// each time it fills, so a lying length on a short input costs at most twice
// the bytes that arrived plus firstChunk, and a long record costs less than
// twice its length in allocations and linear time in copying. It is one
// PAGE_DATA record of a full batch (Xen writes up to 1024 pages a record:
// count and reserved word, 1024 PFN entries, 1024 pages), so the records
// that make up most of an image are read into the buffer in one allocation,
// with no regrowth and no copy (a process verifying an image pays for every
// page it touches first).
const firstChunk = 8 + 1024*8 + 1024*4096

// fill reads exactly n bytes into r.buf[:n], growing the buffer only as data
// arrives. It returns how many bytes arrived and the read error.
func (r *Reader) fill(n int) (int, error) {
	if cap(r.buf) >= n {
		r.buf = r.buf[:n]
		m, err := io.ReadFull(r.r, r.buf)
		r.off += int64(m)
		return m, err
	}
	got := 0
	if cap(r.buf) < min(n, firstChunk) {
		r.buf = make([]byte, 0, min(n, firstChunk))
	}
	r.buf = r.buf[:0]
	for got < n {
		if got == cap(r.buf) {
			nb := make([]byte, got, min(n, 2*got))
			copy(nb, r.buf[:got])
			r.buf = nb
		}
		want := min(n, cap(r.buf)) - got
		r.buf = r.buf[:got+want]
		m, err := io.ReadFull(r.r, r.buf[got:got+want])
		got += m
		r.off += int64(m)
		if err != nil {
			r.buf = r.buf[:got]
			return got, err
		}
	}
	return got, nil
}

func truncOr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}

func (r *Reader) errAt(off int64, typ uint32, field string, err error) *FormatError {
	e := &FormatError{Layer: r.layer, Offset: off, Index: r.index, Type: typ, Field: field, Err: err}
	if r.TypeName != nil {
		e.TypeName = r.TypeName(typ)
	}
	return e
}

// Bytes formats a byte count for FormatError's Expected and Actual.
func Bytes(n int) string {
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}

// Short formats, for FormatError's Actual, a read that got only got of want
// bytes: how many arrived and how many were missing.
func Short(got, want int) string {
	return fmt.Sprintf("%s (%d missing)", Bytes(got), want-got)
}

// A Writer writes framed records, adding the header and zero padding. Its
// errors are sticky, as archive/tar's: after the first failed write every
// call returns that error and writes nothing, so a caller need not keep the
// first error itself.
type Writer struct {
	w     io.Writer
	off   int64
	index int
	err   error
	hdr   [HeaderSize + Align]byte
}

// Err returns the Writer's sticky error: nil until a write fails.
func (w *Writer) Err() error { return w.err }

// NewWriter returns a Writer writing to w, whose first byte is at absolute
// offset off.
func NewWriter(w io.Writer, off int64) *Writer { return &Writer{w: w, off: off} }

// Offset returns the absolute offset of the next byte to be written.
func (w *Writer) Offset() int64 { return w.off }

// Index returns the index the next record will have.
func (w *Writer) Index() int { return w.index }

// WriteRecord writes one record: header, body, and padding to 8 bytes.
func (w *Writer) WriteRecord(typ uint32, body []byte) error {
	return w.WriteRecordv(typ, body)
}

// WriteRecordv writes one record whose body is the concatenation of parts,
// avoiding a copy into one slice.
func (w *Writer) WriteRecordv(typ uint32, parts ...[]byte) error {
	if w.err != nil {
		return w.err
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if uint64(n) > 0xffffffff {
		return ErrTooLarge
	}
	binary.LittleEndian.PutUint32(w.hdr[0:4], typ)
	binary.LittleEndian.PutUint32(w.hdr[4:8], uint32(n))
	if err := w.write(w.hdr[:HeaderSize]); err != nil {
		return err
	}
	for _, p := range parts {
		if err := w.write(p); err != nil {
			return err
		}
	}
	if pad := PaddedLen(n) - n; pad > 0 {
		clear(w.hdr[HeaderSize:])
		if err := w.write(w.hdr[HeaderSize : HeaderSize+pad]); err != nil {
			return err
		}
	}
	w.index++
	return nil
}

// WriteRaw writes bytes as they are (a header, or a record already framed),
// advancing the offset but not the record index.
func (w *Writer) WriteRaw(p []byte) error { return w.write(p) }

func (w *Writer) write(p []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	w.err = err
	return err
}
