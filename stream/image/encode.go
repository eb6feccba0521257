package image

import (
	"errors"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/libxl"
	"github.com/xensr/xensr/stream/xl"
)

// An Encoder writes walked items back out through the layers' Writers: the xl
// header through xl.Writer, libxl records through libxl.Writer, and the libxc
// stream through a record writer on libxl.Writer.Libxc. Every item is
// re-encoded from its decoded fields (headers) or its type and body
// (records), so padding and framing are regenerated, not copied.
type Encoder struct {
	w   io.Writer
	out io.Writer // where the next layer writes: w, the xl payload, or libxl.Writer.Libxc
	xw  *xl.Writer
	lw  *libxl.Writer
	cw  *libxc.Writer
	img *libxc.ImageHeader
	off int64
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w, out: w} }

// Encode writes one item.
func (e *Encoder) Encode(it *Item) error {
	switch {
	case it.XL != nil:
		e.xw = xl.NewWriter(e.w)
		e.out = e.xw
		e.off = int64(it.XL.Size())
		return e.xw.WriteHeader(it.XL)
	case it.Libxl != nil:
		e.lw = libxl.NewWriter(e.out, e.off)
		return e.lw.WriteHeader(*it.Libxl)
	case it.LibxcImage != nil:
		h := *it.LibxcImage
		e.img = &h
		return nil
	case it.LibxcDomain != nil:
		if e.img == nil {
			return errors.New("image: libxc domain header without the image header")
		}
		e.cw = libxc.NewWriter(e.xcOut())
		return e.cw.WriteHeader(*e.img, *it.LibxcDomain)
	case it.Kind == KindTrailer:
		if len(it.Body) != int(it.Size) {
			return fmt.Errorf("image: trailer of %d bytes longer than the %d kept", it.Size, len(it.Body))
		}
		_, err := e.w.Write(it.Body)
		return err
	case it.Kind == KindRecord && it.Layer == libxl.Layer:
		if e.lw == nil {
			return errors.New("image: libxl record before the libxl header")
		}
		return e.lw.WriteRecord(libxl.RecordType(it.Type), it.Body)
	case it.Kind == KindRecord && it.Layer == "libxc":
		if e.cw == nil {
			return errors.New("image: libxc record before the libxc headers")
		}
		if it.Libxc != nil {
			return e.cw.WriteRecord(it.Libxc)
		}
		return e.cw.WriteRecord(&libxc.Raw{RecType: libxc.RecordType(it.Type), Body: it.Body})
	}
	return fmt.Errorf("image: cannot encode item %q", it.Name)
}

func (e *Encoder) xcOut() io.Writer {
	if e.lw != nil {
		return e.lw.Libxc()
	}
	return e.out
}

// Rewrite walks r and re-encodes every item to w, returning the summary.
// It needs the page contents: opt.SkipPages is ignored.
func Rewrite(w io.Writer, r io.Reader, opt Options) (Summary, error) {
	opt.SkipPages = false
	enc := NewEncoder(w)
	return Walk(r, opt, enc.Encode)
}
