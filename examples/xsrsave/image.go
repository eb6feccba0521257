package main

import (
	"bufio"
	"encoding/binary"
	"io"

	"github.com/xensr/xensr/stream/libxl"
	"github.com/xensr/xensr/stream/xl"
)

var le = binary.LittleEndian

// Record types this program writes. libxc (v3) and libxl (v2) numbers are
// separate spaces; both frame records the same way: u32 type, u32 body
// length, body, zero padding to a multiple of 8.
const (
	recEnd            = 0
	recPageData       = 1
	recX86TSCInfo     = 8
	recHVMContext     = 9
	recHVMParams      = 10
	recStaticDataEnd  = 16
	recX86CPUIDPolicy = 17
	recX86MSRPolicy   = 18
)

// Stream constants from the xl, libxl and libxc stream specifications.
const (
	libxlVersion         = 2
	libxcMarker          = ^uint64(0)
	libxcID              = 0x58454e46 // "XENF"
	libxcVersion         = 3
	libxcDomainTypeX86HV = 2
	pageShift            = 12
	maxBatch             = 1024 // pages per PAGE_DATA record, as libxc
)

// imageWriter writes the three nested layers of an xl save image: the xl
// header (package stream/xl), the libxl stream (package stream/libxl), and,
// inline in it, the libxc stream. It keeps the first write error and turns
// every later call into a no-op, so the engine checks err where it matters.
type imageWriter struct {
	w   *bufio.Writer
	n   int64     // bytes handed to w
	dst io.Writer // where record bytes go: w, then the libxl Writer's libxc pass-through
	lx  *libxl.Writer
	err error
	hdr [32]byte
}

// countTo counts the bytes an imageWriter hands to its buffer.
type countTo imageWriter

func (c *countTo) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newImageWriter(w io.Writer) *imageWriter {
	iw := &imageWriter{w: bufio.NewWriterSize(w, 1<<20)}
	iw.dst = (*countTo)(iw)
	return iw
}

func (iw *imageWriter) write(p []byte) {
	if iw.err != nil {
		return
	}
	_, iw.err = iw.dst.Write(p)
}

func (iw *imageWriter) setErr(err error) {
	if iw.err == nil {
		iw.err = err
	}
}

// xlHeader writes the xl save-file header (package stream/xl) with the
// domain configuration (JSON, NUL-terminated as xl writes it) as the one
// optional-data chunk.
func (iw *imageWriter) xlHeader(config []byte) {
	h := xl.Header{Mandatory: xl.FlagStreamV2}
	if len(config) > 0 {
		h.Mandatory |= xl.FlagJSON
		h.Config = append(append([]byte(nil), config...), 0)
	}
	b, err := h.AppendBinary(nil)
	if err != nil {
		iw.setErr(err)
		return
	}
	iw.write(b)
}

// libxlHeader starts the libxl stream (version 2, little endian) with a
// LIBXC_CONTEXT record: the libxc stream follows inline.
func (iw *imageWriter) libxlHeader() {
	if iw.err != nil {
		return
	}
	iw.lx = libxl.NewWriter((*countTo)(iw), iw.n)
	iw.setErr(iw.lx.WriteHeader(libxl.Header{Version: libxlVersion}))
	iw.setErr(iw.lx.WriteRecord(libxl.TypeLibxcContext, nil))
	iw.dst = iw.lx.Libxc()
}

// libxlEnd ends the libxl stream after the libxc stream's END.
func (iw *imageWriter) libxlEnd() {
	if iw.err != nil || iw.lx == nil {
		return
	}
	iw.setErr(iw.lx.Close())
}

// libxcHeaders writes the libxc image header (big-endian) and the domain
// header (little-endian) of an x86 HVM stream.
func (iw *imageWriter) libxcHeaders(xenMajor, xenMinor uint32) {
	var h [40]byte
	be, le := binary.BigEndian, binary.LittleEndian
	be.PutUint64(h[0:], libxcMarker)
	be.PutUint32(h[8:], libxcID)
	be.PutUint32(h[12:], libxcVersion)
	// options (u16) and reserved (48 bits) stay zero: little endian.
	le.PutUint32(h[24:], libxcDomainTypeX86HV)
	le.PutUint16(h[28:], pageShift)
	le.PutUint32(h[32:], xenMajor)
	le.PutUint32(h[36:], xenMinor)
	iw.write(h[:])
}

// record writes one record whose body is the concatenation of parts.
func (iw *imageWriter) record(typ uint32, parts ...[]byte) {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	binary.LittleEndian.PutUint32(iw.hdr[0:], typ)
	binary.LittleEndian.PutUint32(iw.hdr[4:], uint32(n))
	iw.write(iw.hdr[:8])
	for _, p := range parts {
		iw.write(p)
	}
	if pad := (8 - n%8) % 8; pad != 0 {
		clear(iw.hdr[8:16])
		iw.write(iw.hdr[8 : 8+pad])
	}
}

// flush pushes buffered bytes to the underlying writer.
func (iw *imageWriter) flush() error {
	if iw.err == nil {
		iw.err = iw.w.Flush()
	}
	return iw.err
}
