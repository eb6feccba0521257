// Package xl reads and writes the xl save-file header: the preamble that
// `xl save` (and the sending side of `xl migrate`) writes before the libxl
// migration stream.
//
// The header is a 32-byte magic, a byte-order marker, mandatory and optional
// flag words and the length of the optional data that follows. In files
// written by xl the optional data is a u32 length and the domain
// configuration (JSON with FlagJSON, a NUL-terminated text otherwise).
// Everything after the optional data is the libxl stream (see package
// stream/libxl); a Reader hands it out unread.
//
// Memory bound: reading a header costs less than twice the optional data
// length in allocations (the buffer doubles from 64 KiB as bytes arrive,
// up to Options.MaxOptionalData, 16 MiB by default; a longer declared
// length fails before any allocation, and a lying length on a short input
// costs about twice what arrived). Strict reading decodes a JSON
// configuration too: measured at 3 times the optional data in all (bounded
// at 6 in the test). TestMemoryBound checks this with runtime.MemStats.
package xl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream"
)

// Magic is the 32 bytes every xl save file starts with.
const Magic = "Xen saved domain, xl format\n \x00 \r"

// HeaderSize is the size of the fixed header, before the optional data.
const HeaderSize = 48

// byteOrderMarker is the value of the byte-order field in the writer's order.
const byteOrderMarker = 0x01020304

// Mandatory flags. A reader must reject a file with a mandatory flag it does
// not know.
const (
	FlagJSON     uint32 = 1 << 0 // the configuration is libxl JSON
	FlagStreamV2 uint32 = 1 << 1 // the payload is a migration v2 (libxl) stream
	// KnownMandatory is the set of mandatory flags this package understands.
	KnownMandatory = FlagJSON | FlagStreamV2
)

// DefaultMaxOptionalData caps the optional data a Reader accepts (16 MiB).
const DefaultMaxOptionalData = 16 << 20

// Layer is the layer name used in errors.
const Layer = "xl"

// ErrMagic reports input that does not start with Magic. It is wrapped in a
// *stream.FormatError.
var ErrMagic = errors.New("not an xl save file (bad magic)")

// A Header is the decoded xl save-file header and its optional data.
type Header struct {
	// BigEndian reports the byte order of the u32 fields (xl writes them in
	// the saving host's order; x86 is little-endian).
	BigEndian bool
	// Mandatory holds the mandatory flags (FlagJSON, FlagStreamV2, ...).
	Mandatory uint32
	// Optional holds the optional flags; none are defined.
	Optional uint32
	// Config is the domain configuration as stored, including any trailing
	// NUL. Nil means the optional data is empty (no configuration at all);
	// a non-nil empty slice encodes a zero configuration length.
	Config []byte
	// Extra is optional data after the configuration, which readers skip;
	// it is kept so re-encoding is byte-exact.
	Extra []byte
}

// ConfigText returns the configuration without its trailing NUL bytes.
func (h *Header) ConfigText() []byte { return bytes.TrimRight(h.Config, "\x00") }

// OptionalDataLen returns the length of the encoded optional data.
func (h *Header) OptionalDataLen() int {
	if h.Config == nil && len(h.Extra) == 0 {
		return 0
	}
	return 4 + len(h.Config) + len(h.Extra)
}

// Size returns the encoded size of the header with its optional data.
func (h *Header) Size() int { return HeaderSize + h.OptionalDataLen() }

type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func (h *Header) order() byteOrder {
	if h.BigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// AppendBinary appends the encoded header and optional data to b.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	n := h.OptionalDataLen()
	if uint64(n) > 0xffffffff || uint64(len(h.Config)) > 0xffffffff {
		return b, errors.New("xl: optional data longer than 4 GiB")
	}
	o := h.order()
	b = append(b, Magic...)
	b = o.AppendUint32(b, byteOrderMarker)
	b = o.AppendUint32(b, h.Mandatory)
	b = o.AppendUint32(b, h.Optional)
	b = o.AppendUint32(b, uint32(n))
	if n > 0 {
		b = o.AppendUint32(b, uint32(len(h.Config)))
		b = append(b, h.Config...)
		b = append(b, h.Extra...)
	}
	return b, nil
}

// MarshalBinary returns the encoded header and optional data.
func (h *Header) MarshalBinary() ([]byte, error) { return h.AppendBinary(nil) }

// A Reader reads an xl save-file header and hands out the libxl stream that
// follows it, without reading ahead.
type Reader struct {
	// Header is the decoded header; valid after NewReader succeeds.
	Header Header
	r      io.Reader
}

// Options tune a Reader.
type Options struct {
	// MaxOptionalData caps the optional data length; zero means
	// DefaultMaxOptionalData.
	MaxOptionalData int
	// Relaxed accepts what xl's restore would refuse: unknown mandatory
	// flags, a missing FlagStreamV2 (the legacy v1 reader's), a
	// big-endian header ("wrong byte order" on x86) and, with FlagJSON, a
	// configuration that is not libxl JSON.
	Relaxed bool
}

// NewReader reads the header and optional data from r with default options.
func NewReader(r io.Reader) (*Reader, error) { return NewReaderOptions(r, Options{}) }

// NewReaderOptions reads the header and optional data from r.
func NewReaderOptions(r io.Reader, opt Options) (*Reader, error) {
	h, err := ReadHeader(r, opt)
	if err != nil {
		return nil, err
	}
	return &Reader{Header: *h, r: r}, nil
}

// Offset returns the offset of the libxl stream: the encoded header size.
func (r *Reader) Offset() int64 { return int64(r.Header.Size()) }

// Payload returns the underlying reader positioned at the libxl stream.
func (r *Reader) Payload() io.Reader { return r.r }

// Read reads from the payload (the libxl stream), so a Reader is an io.Reader.
func (r *Reader) Read(p []byte) (int, error) { return r.r.Read(p) }

func errAt(off int64, field string, err error) error {
	return &stream.FormatError{Layer: Layer, Offset: off, Index: -1, Field: field, Err: err}
}

// ReadHeader reads exactly one header and its optional data from r.
func ReadHeader(r io.Reader, opt Options) (*Header, error) {
	var fixed [HeaderSize]byte
	n, err := io.ReadFull(r, fixed[:])
	if err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			return nil, err
		}
		// A short input is truncated if what arrived is a prefix of the
		// header that can still be valid, and not xl at all otherwise.
		m := min(n, len(Magic))
		if n == 0 || string(fixed[:m]) != Magic[:m] {
			return nil, errAt(0, "magic", ErrMagic)
		}
		return nil, errAt(0, "header", stream.ErrTruncated)
	}
	return parseFixed(fixed[:], r, opt)
}

func parseFixed(fixed []byte, r io.Reader, opt Options) (*Header, error) {
	if string(fixed[:32]) != Magic {
		return nil, errAt(0, "magic", ErrMagic)
	}
	h := &Header{}
	switch binary.LittleEndian.Uint32(fixed[32:36]) {
	case byteOrderMarker:
	case 0x04030201:
		h.BigEndian = true
	default:
		return nil, errAt(32, "byteorder", stream.ErrValue)
	}
	if h.BigEndian && !opt.Relaxed {
		// xl compares the marker in its own (x86: little-endian) order:
		// "File has wrong byte order".
		return nil, &stream.FormatError{Layer: Layer, Offset: 32, Index: -1, Field: "byteorder", Err: fmt.Errorf("%w: big-endian header", stream.ErrValue),
			Expected: "04 03 02 01 (little-endian)", Actual: "01 02 03 04 (big-endian)"}
	}
	o := h.order()
	h.Mandatory = o.Uint32(fixed[36:40])
	h.Optional = o.Uint32(fixed[40:44])
	optLen := o.Uint32(fixed[44:48])
	if !opt.Relaxed {
		if h.Mandatory&^KnownMandatory != 0 {
			return nil, errAt(36, "mandatory_flags", stream.ErrValue)
		}
		if h.Mandatory&FlagStreamV2 == 0 {
			return nil, errAt(36, "mandatory_flags", errors.New("legacy (v1) stream: FlagStreamV2 not set"))
		}
	}
	max := opt.MaxOptionalData
	if max <= 0 {
		max = DefaultMaxOptionalData
	}
	if uint64(optLen) > uint64(max) {
		return nil, errAt(44, "optional_data_len", stream.ErrTooLarge)
	}
	if optLen == 0 {
		return h, nil
	}
	data, err := readGrowing(r, int(optLen))
	if err != nil {
		return nil, errAt(HeaderSize, "optional_data", stream.ErrTruncated)
	}
	if len(data) < 4 {
		return nil, errAt(HeaderSize, "optional_data", stream.ErrLength)
	}
	cl := o.Uint32(data[:4])
	if uint64(cl) > uint64(len(data)-4) {
		return nil, errAt(HeaderSize, "config_len", stream.ErrLength)
	}
	h.Config = data[4 : 4+cl : 4+cl]
	if rest := data[4+cl:]; len(rest) > 0 {
		h.Extra = rest
	}
	if !opt.Relaxed && h.Mandatory&FlagJSON != 0 {
		// xl hands the configuration to libxl's JSON parser.
		if _, err := h.DomainConfig(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// readGrowing reads exactly n bytes, growing its buffer only as data arrives,
// so a lying length on a short input allocates little.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	const chunk = 64 << 10
	buf := make([]byte, 0, min(n, chunk))
	for len(buf) < n {
		want := min(n-len(buf), max(chunk, cap(buf)-len(buf)))
		if cap(buf)-len(buf) < want {
			// Double: less than 2n allocated in all.
			nb := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+want])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// A Writer writes an xl header and then passes the libxl stream through.
// Write errors are sticky: after one, every call returns it and writes
// nothing.
type Writer struct {
	w     io.Writer
	wrote bool
	err   error
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteHeader writes the header and its optional data. It must be called once,
// before any Write.
func (w *Writer) WriteHeader(h *Header) error {
	if w.wrote {
		return errors.New("xl: WriteHeader called twice")
	}
	b, err := h.AppendBinary(nil)
	if err != nil {
		return err
	}
	w.wrote = true
	_, err = w.write(b)
	return err
}

// Write writes payload bytes (the libxl stream) after the header.
func (w *Writer) Write(p []byte) (int, error) {
	if !w.wrote {
		return 0, errors.New("xl: Write before WriteHeader")
	}
	return w.write(p)
}

func (w *Writer) write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	w.err = err
	return n, err
}
