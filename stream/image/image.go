// Package image walks a whole Xen save image or migration stream, layer by
// layer: the xl save-file header (package stream/xl), the libxl stream
// (package stream/libxl), and the libxc stream inline in it, or a bare libxl
// or libxc stream. It detects the outermost layer from its magic (or takes
// it as given), and hands out every header and record in stream order with
// its absolute byte offset, plus page statistics for PAGE_DATA records.
//
// The libxc layer is read and validated by package stream/libxc (through
// libxl.Reader.Libxc inside a libxl stream); the walker adds offsets, page
// statistics and the xl migration trailer. An Encoder writes the items back
// through the layers' Writers (xl.Writer, libxl.Writer, libxc.Writer); for a
// valid input the output is byte-identical.
//
// Memory bound: a Walker holds what its layers' readers hold (package
// stream/xl: less than twice the optional data, and a decoded JSON
// configuration; stream/libxl: one record buffer; stream/libxc: one record
// buffer, the largest record's decoded arrays and a PV P2M frame list, less
// than 5.2 times the record cap for one record) plus the first MaxTrailer
// bytes of trailing data; it keeps nothing per record. TestMemoryBound checks
// it with runtime.MemStats at and just past the cap.
package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/libxl"
	"github.com/xensr/xensr/stream/xl"
)

// A Format is the outermost layer of an image.
type Format int

// Formats.
const (
	FormatAuto  Format = iota // detect from the magic
	FormatXL                  // xl save file: xl header, libxl stream
	FormatLibxl               // bare libxl stream
	FormatLibxc               // bare libxc stream
)

// String returns the format's name as ParseFormat accepts it.
func (f Format) String() string {
	switch f {
	case FormatXL:
		return "xl"
	case FormatLibxl:
		return "libxl"
	case FormatLibxc:
		return "libxc"
	}
	return "auto"
}

// ParseFormat parses "xl", "libxl", "libxc" or "auto" (or "").
func ParseFormat(s string) (Format, error) {
	switch s {
	case "", "auto":
		return FormatAuto, nil
	case "xl":
		return FormatXL, nil
	case "libxl":
		return FormatLibxl, nil
	case "libxc":
		return FormatLibxc, nil
	}
	return FormatAuto, fmt.Errorf("unknown format %q (want xl, libxl, libxc or auto)", s)
}

// ErrUnknownFormat reports input whose first bytes match no known layer.
var ErrUnknownFormat = errors.New("unknown image format (not xl, libxl or libxc)")

// ErrTrailing reports bytes after the end of the outermost layer that are not
// the xl migration sender's final message.
var ErrTrailing = errors.New("trailing data after the end of the stream")

// DetectSize is the number of leading bytes Detect needs.
const DetectSize = 32

// Detect returns the format whose magic starts prefix, or FormatAuto.
func Detect(prefix []byte) Format {
	switch {
	case bytes.HasPrefix(prefix, []byte(xl.Magic)):
		return FormatXL
	case bytes.HasPrefix(prefix, []byte("LibxlFmt")):
		return FormatLibxl
	case bytes.HasPrefix(prefix, []byte("\xff\xff\xff\xff\xff\xff\xff\xffXENF")):
		return FormatLibxc
	}
	return FormatAuto
}

// XLMigrationTrailer is what `xl migrate` sends after the libxl stream once
// the receiver is ready: the "permission to go" message with its NUL.
const XLMigrationTrailer = "domain is yours, you are cleared to unpause\x00"

// A Kind tells headers, records and trailing data apart.
type Kind int

// Kinds of items.
const (
	KindHeader Kind = iota
	KindRecord
	KindTrailer
)

// An Item is one header, record or trailer of the image, in stream order.
// Body and the header pointers alias the Walker's buffers and are valid until
// the next call to Next.
type Item struct {
	Layer  string // "xl", "libxl", "libxc" or "trailer"
	Kind   Kind
	Name   string // header name or record type name
	Type   uint32 // record type (KindRecord)
	Index  int    // record index within its layer; -1 for headers and trailers
	Offset int64  // absolute offset
	Size   int64  // encoded size, including padding
	Round  int    // libxc checkpoint round the record belongs to
	Body   []byte // record body without padding; trailing bytes (first MaxTrailer)

	XL          *xl.Header
	Libxl       *libxl.Header
	LibxcImage  *libxc.ImageHeader
	LibxcDomain *libxc.DomainHeader
	Libxc       libxc.Record // the decoded libxc record (KindRecord in layer "libxc")
	Pages       *PageStats   // PAGE_DATA records
	// Unkept says that the page bytes of this PAGE_DATA record in Body
	// and Libxc are not the guest's (Options.SkipPages).
	Unkept bool
}

// Options tune a Walker.
type Options struct {
	Format        Format // FormatAuto detects
	Relaxed       bool   // forensic reading: see libxl.Options.Relaxed and libxc.Reader.Relaxed
	Checkpointed  bool   // a checkpointed (Remus/COLO) stream: libxc CHECKPOINT records allowed
	MaxRecordSize int    // zero: stream.DefaultMaxRecordSize

	// SkipPages keeps the page contents of PAGE_DATA records out of the
	// record buffers, for a walk that needs only the checks and the
	// statistics (a verify). Every other byte is read and checked as
	// without it (record headers, PFN entries, lengths, padding, every
	// other record), so a walk finds the same faults with the same errors;
	// but the page bytes in such a record's Item.Body and
	// libxc.PageData.Data are not the guest's (whatever the record buffer
	// held: the walker does not spend time clearing them), and Item.Unkept
	// says so.
	//
	// A random-access input (see RandomAccess: a regular file, a
	// *bytes.Reader) is read with ReadAt from its offset at NewWalker, which
	// it leaves where it was, and the page contents are not read at all:
	// PageStats counts them as Unread instead of telling zero pages apart.
	// (A record that runs past the end of the input is read, so truncation
	// is reported as without SkipPages.) A stream is read through a 64 KiB
	// buffer, every byte of it (the page contents straight into a scratch
	// buffer), and its zero pages are counted as usual; but on Linux, from
	// an *os.File open on a pipe, the page contents are spliced to
	// /dev/null (never copied into the process) and counted as Unread, as
	// from a file.
	SkipPages bool
}

// MaxTrailer caps the trailing bytes kept in a trailer Item's Body.
const MaxTrailer = 64 << 10

// A Summary totals what a walk saw.
type Summary struct {
	Format       string         `json:"format"`
	Bytes        int64          `json:"bytes"`
	Records      map[string]int `json:"records"` // per layer
	LibxcVersion uint32         `json:"libxc_version,omitempty"`
	DomainType   string         `json:"domain_type,omitempty"`
	XenVersion   string         `json:"xen_version,omitempty"`
	Checkpoints  int            `json:"checkpoints"`
	Pages        PageStats      `json:"pages"`
	TrailerBytes int64          `json:"trailer_bytes,omitempty"`
	Trailer      string         `json:"trailer,omitempty"`
	Config       string         `json:"-"`
	ConfigBytes  int            `json:"config_bytes,omitempty"`
	ConfigIsJSON bool           `json:"config_json,omitempty"`
}

type state int

const (
	stStart state = iota
	stXL
	stLibxlHeader
	stLibxl
	stXCImage
	stXCDomain
	stXC
	stTrailer
	stDone
)

// A Walker reads an image item by item.
type Walker struct {
	opt   Options
	src   io.Reader
	r     io.Reader
	off   int64
	st    state
	err   error
	outer Format

	xlh   xl.Header
	guest libxl.GuestType // from the xl configuration, if any
	vcpus int             // b_info.max_vcpus from the xl configuration, if any
	lr    *libxl.Reader
	lh    libxl.Header
	xr    *libxc.Reader
	xcHdr libxc.ImageHeader
	xcDom libxc.DomainHeader
	round int
	pages PageStats
	tbuf  []byte
	item  Item
	sum   Summary

	skip *skipReader // Options.SkipPages
}

// NewWalker returns a Walker reading r from its first byte.
func NewWalker(r io.Reader, opt Options) *Walker {
	w := &Walker{opt: opt, src: r, sum: Summary{Records: map[string]int{}}}
	if opt.SkipPages {
		w.skip = newSkipReader(r)
		w.src = w.skip
	}
	return w
}

// SkippedBytes returns how many bytes of page contents the walk kept out of
// its record buffers (Options.SkipPages): not read at all from a
// random-access input, read and counted but not kept from a stream.
func (w *Walker) SkippedBytes() int64 {
	if w.skip == nil {
		return 0
	}
	return w.skip.skipped
}

// SplicedBytes returns how many of the SkippedBytes were passed over in the
// kernel, spliced from a pipe to /dev/null without being copied into the
// process (Options.SkipPages on Linux).
func (w *Walker) SplicedBytes() int64 {
	if w.skip == nil {
		return 0
	}
	return w.skip.spliced
}

// Format returns the outermost format, once the first item was read.
func (w *Walker) Format() Format { return w.outer }

// Summary returns the totals of the items read so far.
func (w *Walker) Summary() Summary { return w.sum }

// Walk reads the whole image, calling fn for each item, and returns the summary.
func Walk(r io.Reader, opt Options, fn func(*Item) error) (Summary, error) {
	w := NewWalker(r, opt)
	for {
		it, err := w.Next()
		if err == io.EOF {
			return w.Summary(), nil
		}
		if err != nil {
			return w.Summary(), err
		}
		if fn != nil {
			if err := fn(it); err != nil {
				return w.Summary(), err
			}
		}
	}
}

// Next returns the next item, or io.EOF after the last one. Errors are
// sticky.
func (w *Walker) Next() (*Item, error) {
	if w.err != nil {
		return nil, w.err
	}
	it, err := w.next()
	if err != nil {
		if err != io.EOF {
			w.err = err
		}
		return nil, err
	}
	w.sum.Bytes = it.Offset + it.Size
	if it.Kind == KindRecord {
		w.sum.Records[it.Layer]++
	}
	return it, nil
}

func (w *Walker) newItem(layer string, kind Kind, name string, off, size int64) *Item {
	w.item = Item{Layer: layer, Kind: kind, Name: name, Index: -1, Offset: off, Size: size, Round: w.round}
	return &w.item
}

func (w *Walker) next() (*Item, error) {
	for {
		switch w.st {
		case stStart:
			if err := w.start(); err != nil {
				return nil, err
			}
		case stXL:
			h, err := xl.ReadHeader(w.r, xl.Options{Relaxed: w.opt.Relaxed})
			if err != nil {
				return nil, err
			}
			w.xlh = *h
			if h.Mandatory&xl.FlagJSON != 0 && len(h.ConfigText()) > 0 {
				// What the restore takes from the configuration: the
				// domain type and vCPU count (checked strictly in the
				// libxl and libxc layers).
				if cfg, err := h.DomainConfig(); err == nil {
					w.guest = libxl.ParseGuestType(cfg.CInfo.Type)
					w.vcpus = cfg.BInfo.MaxVCPUs
				}
			}
			w.sum.ConfigBytes = len(h.Config)
			w.sum.Config = string(h.ConfigText())
			w.sum.ConfigIsJSON = h.Mandatory&xl.FlagJSON != 0
			it := w.newItem(xl.Layer, KindHeader, "xl header", 0, int64(h.Size()))
			it.XL = &w.xlh
			w.off = int64(h.Size())
			w.st = stLibxlHeader
			return it, nil
		case stLibxlHeader:
			w.lr = libxl.NewReaderOptions(w.r, w.off, libxl.Options{Relaxed: w.opt.Relaxed, MaxRecordSize: w.opt.MaxRecordSize, Checkpointed: w.opt.Checkpointed,
				Guest: w.guest, VCPUs: w.vcpus})
			h, err := w.lr.Header()
			if err != nil {
				return nil, err
			}
			w.lh = h
			it := w.newItem(libxl.Layer, KindHeader, "libxl header", w.off, libxl.HeaderSize)
			it.Libxl = &w.lh
			w.off += libxl.HeaderSize
			w.st = stLibxl
			return it, nil
		case stLibxl:
			if xr := w.lr.Libxc(); xr != nil {
				w.off = w.lr.Offset()
				if xr != w.xr {
					w.xr = xr // a new libxc stream: its headers come first
					w.st = stXCImage
				} else {
					w.st = stXC // the next round of a checkpointed stream
				}
				continue
			}
			rec, err := w.lr.Next()
			if err == io.EOF {
				w.off = w.lr.Offset()
				w.st = stTrailer
				continue
			}
			if err != nil {
				return nil, err
			}
			it := w.newItem(libxl.Layer, KindRecord, rec.Type.String(), rec.Offset, int64(stream.HeaderSize+stream.PaddedLen(len(rec.Body))))
			it.Type, it.Index, it.Body = uint32(rec.Type), rec.Index, rec.Body
			w.off = rec.Offset + it.Size
			return it, nil
		case stXCImage:
			return w.libxcImage()
		case stXCDomain:
			return w.libxcDomain()
		case stXC:
			return w.libxcRecord()
		case stTrailer:
			return w.trailer()
		case stDone:
			return nil, io.EOF
		}
	}
}

func (w *Walker) start() error {
	f := w.opt.Format
	var pre [DetectSize]byte
	n, err := io.ReadFull(w.src, pre[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	w.r = io.MultiReader(bytes.NewReader(pre[:n]), w.src)
	if f == FormatAuto {
		f = Detect(pre[:n])
		if f == FormatAuto {
			return &stream.FormatError{Layer: "image", Index: -1, Field: "magic", Err: ErrUnknownFormat}
		}
	}
	w.outer = f
	w.sum.Format = f.String()
	switch f {
	case FormatXL:
		w.st = stXL
	case FormatLibxl:
		w.st = stLibxlHeader
	default:
		w.st = stXCImage
	}
	return nil
}

func (w *Walker) libxcImage() (*Item, error) {
	if w.xr == nil { // a bare libxc stream; inside libxl, Libxc made it
		w.xr = libxc.NewReaderAt(w.r, w.off)
		w.xr.Relaxed = w.opt.Relaxed
		w.xr.Checkpointed = w.opt.Checkpointed
		if w.opt.MaxRecordSize > 0 {
			w.xr.SetMaxRecordSize(w.opt.MaxRecordSize)
		}
	}
	img, dom, err := w.xr.Header()
	if err != nil {
		return nil, err
	}
	if !w.opt.Relaxed && w.guest != libxl.GuestUnknown {
		// xc_domain_restore picks the restore ops from the domain the
		// configuration created: "Unable to restore %s domain into an
		// x86_pv domain" and the HVM equivalent.
		want := libxc.DomainX86HVM
		if w.guest == libxl.GuestPV {
			want = libxc.DomainX86PV
		}
		if dom.Type != want {
			return nil, &stream.FormatError{Layer: libxc.Layer, Offset: w.off + libxc.ImageHeaderSize, Index: -1, Field: "type",
				Err:      fmt.Errorf("%w: libxc domain type does not match the configuration's %v guest", stream.ErrValue, w.guest),
				Expected: want.String(), Actual: dom.Type.String()}
		}
	}
	w.xcHdr, w.xcDom = img, dom
	w.sum.LibxcVersion = img.Version
	w.sum.DomainType = dom.Type.String()
	w.sum.XenVersion = fmt.Sprintf("%d.%d", dom.XenMajor, dom.XenMinor)
	it := w.newItem(libxc.Layer, KindHeader, "libxc image header", w.off, libxc.ImageHeaderSize)
	it.LibxcImage = &w.xcHdr
	w.off += libxc.ImageHeaderSize
	w.st = stXCDomain
	return it, nil
}

func (w *Walker) libxcDomain() (*Item, error) {
	it := w.newItem(libxc.Layer, KindHeader, "libxc domain header", w.off, libxc.DomainHeaderSize)
	it.LibxcDomain = &w.xcDom
	w.off += libxc.DomainHeaderSize
	w.st = stXC
	return it, nil
}

func (w *Walker) libxcRecord() (*Item, error) {
	unread := false
	if w.skip != nil {
		// The libxc reader never reads ahead: its offset is where the
		// next record starts, counted from the input's offset at
		// NewWalker.
		unread = w.skip.arm(w.skip.base + w.xr.Offset())
	}
	rec, err := w.xr.Next()
	if err != nil {
		return nil, err
	}
	cur := w.xr.Current()
	it := w.newItem(libxc.Layer, KindRecord, libxc.RecordType(cur.Type).String(), cur.Offset, int64(cur.PaddedSize()))
	it.Type, it.Index, it.Body, it.Libxc = cur.Type, cur.Index, cur.Body, rec
	w.off = cur.Offset + it.Size
	it.Unkept = unread
	switch r := rec.(type) {
	case *libxc.PageData:
		if unread && w.skip.counted() {
			// Read and counted by the skipReader, not kept.
			w.pages = pageStats(r, true)
			w.pages.Unread, w.pages.ZeroPages = 0, w.skip.zero
		} else {
			w.pages = pageStats(r, unread)
		}
		w.sum.Pages.add(&w.pages)
		it.Pages = &w.pages
	case *libxc.End:
		// Inside libxl, its Next takes the stream back from here.
		if w.lr != nil {
			w.st = stLibxl
		} else {
			w.st = stTrailer
		}
	case *libxc.Checkpoint:
		w.sum.Checkpoints++
		w.round++
		if w.lr != nil {
			w.st = stLibxl
		}
	}
	return it, nil
}

// mayBeTrailer reports whether the total trailing bytes read so far, of
// which w.tbuf holds the first ones, can still be the xl migration trailer.
func (w *Walker) mayBeTrailer(total int64) bool {
	return w.outer == FormatXL && total <= int64(len(XLMigrationTrailer)) && string(w.tbuf) == XLMigrationTrailer[:len(w.tbuf)]
}

func (w *Walker) trailer() (*Item, error) {
	if w.tbuf == nil {
		w.tbuf = make([]byte, 0, 4096)
	}
	w.tbuf = w.tbuf[:0]
	var total int64
	var chunk [4096]byte
	for {
		n, err := w.r.Read(chunk[:])
		if n > 0 {
			if room := MaxTrailer - len(w.tbuf); room > 0 {
				w.tbuf = append(w.tbuf, chunk[:min(n, room)]...)
			}
			total += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		// Strictly, only the xl migration trailer may follow: stop at
		// the first byte that cannot be part of it, so an endless input
		// fails at once.
		if !w.opt.Relaxed && !w.mayBeTrailer(total) {
			return nil, &stream.FormatError{Layer: w.outer.String(), Offset: w.off, Index: -1, Field: "trailer", Err: ErrTrailing,
				Expected: fmt.Sprintf("end of input or the %d-byte xl migration trailer", len(XLMigrationTrailer)), Actual: fmt.Sprintf("at least %d bytes", total)}
		}
	}
	w.st = stDone
	if total == 0 {
		return nil, io.EOF
	}
	known := w.outer == FormatXL && total == int64(len(XLMigrationTrailer)) && string(w.tbuf) == XLMigrationTrailer
	if !known && !w.opt.Relaxed {
		return nil, &stream.FormatError{Layer: w.outer.String(), Offset: w.off, Index: -1, Field: "trailer", Err: ErrTrailing}
	}
	name := "trailing data"
	if known {
		name = "xl migration: permission to go"
	}
	w.sum.TrailerBytes = total
	w.sum.Trailer = name
	it := w.newItem("trailer", KindTrailer, name, w.off, total)
	it.Body = w.tbuf
	return it, nil
}
