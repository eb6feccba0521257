package migrate

import (
	"bufio"
	"encoding/binary"
	"io"

	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/libxl"
	"github.com/xensr/xensr/stream/xl"
)

var le = binary.LittleEndian

const (
	libxlVersion = 2
	libxcVersion = 3
	maxBatch     = 1024 // frames per PAGE_DATA record, as libxc
)

// imageWriter writes the three nested layers of an xl save image through
// the project's stream packages: the xl header (stream/xl), the libxl
// stream (stream/libxl) and, inline in it, the libxc stream
// (stream/libxc). Everything goes through one bufio.Writer. It keeps the
// first error and turns every later call into a no-op, so the engine checks
// err where it matters.
type imageWriter struct {
	w   *bufio.Writer
	n   int64 // bytes handed to w
	lx  *libxl.Writer
	lc  *libxc.Writer
	err error
	pv  bool // the domain header says x86 PV, not HVM
}

// countTo counts the bytes an imageWriter hands to its buffer.
type countTo imageWriter

func (c *countTo) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newImageWriter(w io.Writer) *imageWriter {
	return &imageWriter{w: bufio.NewWriterSize(w, 1<<20)}
}

func (iw *imageWriter) setErr(err error) {
	if iw.err == nil {
		iw.err = err
	}
}

// xlHeader writes the xl save-file header with the domain configuration
// (JSON, NUL-terminated as xl writes it) as the one optional-data chunk.
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
	_, err = (*countTo)(iw).Write(b)
	iw.setErr(err)
}

// libxlHeader starts the libxl stream (version 2, little endian) with a
// LIBXC_CONTEXT record, then the libxc stream's image header (v3) and
// domain header (x86 HVM, or x86 PV when iw.pv) inline.
func (iw *imageWriter) libxlHeader(xenMajor, xenMinor uint32) {
	if iw.err != nil {
		return
	}
	iw.lx = libxl.NewWriter((*countTo)(iw), iw.n)
	iw.setErr(iw.lx.WriteHeader(libxl.Header{Version: libxlVersion}))
	iw.setErr(iw.lx.WriteRecord(libxl.TypeLibxcContext, nil))
	iw.lc = libxc.NewWriter(iw.lx.Libxc())
	typ := libxc.DomainX86HVM
	if iw.pv {
		typ = libxc.DomainX86PV
	}
	iw.setErr(iw.lc.WriteHeader(libxc.NewImageHeader(libxcVersion), libxc.DomainHeader{
		Type: typ, PageShift: 12, XenMajor: xenMajor, XenMinor: xenMinor,
	}))
}

// record writes one libxc record.
func (iw *imageWriter) record(rec libxc.Record) {
	if iw.err != nil {
		return
	}
	iw.setErr(iw.lc.WriteRecord(rec))
}

// end writes the libxc END and the libxl END.
func (iw *imageWriter) end() {
	if iw.err != nil {
		return
	}
	iw.setErr(iw.lc.Close())
	iw.setErr(iw.lx.Close())
}

// flush pushes buffered bytes to the underlying writer.
func (iw *imageWriter) flush() error {
	if iw.err == nil {
		iw.err = iw.w.Flush()
	}
	return iw.err
}
