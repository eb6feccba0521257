// Package liveupdate reads and lays out the live-update data stream of Xen's
// Live Update design: the outgoing Xen leaves, at the start of the
// live-update bootmem region, a breadcrumb giving the number of pages of the
// data stream and the physical address of a contiguous array of their MFNs;
// the pages themselves lie anywhere in RAM, and their contents, in MFN-array
// order, are the migration streams of the domains, one after another.
//
// Memory bound: Open keeps the MFN array twice as it reads it (the raw
// array and the decoded MFNs) and sorts a third copy to find pages used
// twice: 24 bytes a page of the breadcrumb's nr_pages, at most 96 MiB for
// MaxPages, allocated only once the array's bytes are inside the memory
// image; a Stream's Reader reads page by page into the caller's buffer.
// TestMemoryBound checks this with runtime.MemStats.
//
// It lives under stream/ rather than grant/ because it is a container of
// migration streams: its reader reassembles the bytes and hands them to
// stream/libxc, and it has nothing to do with grant mappings.
//
// The breadcrumb layout (little-endian, 40 bytes) adds a magic and a version
// to the design's two words, so that a wrong region is detected, and the
// stream's exact length, since the last page is rarely full:
//
//	0  magic     "XENLUBC\x00"
//	8  version   u32 (1)
//	12 flags     u32 (0)
//	16 nr_pages  u64
//	24 mfn_array u64, physical address
//	32 length    u64, bytes of stream data (<= nr_pages*4096)
package liveupdate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/xensr/xensr/stream"
)

// PageSize is the page size of the MFNs.
const PageSize = 4096

// Magic opens a breadcrumb.
const Magic = "XENLUBC\x00"

// Version is the breadcrumb version this package reads and writes.
const Version = 1

// BreadcrumbSize is the encoded size of a Breadcrumb.
const BreadcrumbSize = 40

// MaxPages bounds nr_pages (16 GiB of stream) so a corrupt breadcrumb
// cannot make a reader allocate an absurd MFN array.
const MaxPages = 1 << 22

// A Breadcrumb is the record at the start of the live-update bootmem.
type Breadcrumb struct {
	Version  uint32
	Flags    uint32
	NrPages  uint64
	MFNArray uint64 // physical address of NrPages little-endian u64 MFNs
	Length   uint64 // bytes of stream data
}

// Sentinel errors; a *stream.FormatError of layer "liveupdate" wraps one of them.
var (
	ErrMagic     = errors.New("no live-update breadcrumb (bad magic)")
	ErrVersion   = errors.New("unsupported breadcrumb version")
	ErrReserved  = errors.New("non-zero reserved field")
	ErrCount     = errors.New("page count and stream length disagree")
	ErrRange     = errors.New("address outside the memory image")
	ErrOverlap   = errors.New("overlaps the bootmem region or another stream page")
	ErrTruncated = errors.New("memory image ends inside a page")
)

// liveErr returns the *stream.FormatError of the liveupdate layer: the field
// at fault and its physical address (as Offset).
func liveErr(field string, addr uint64, err error) error {
	return &stream.FormatError{Layer: "liveupdate", Offset: int64(addr), Index: -1, Field: field, Err: err}
}

// Append appends the encoding of b.
func (b Breadcrumb) Append(dst []byte) []byte {
	dst = append(dst, Magic...)
	dst = binary.LittleEndian.AppendUint32(dst, b.Version)
	dst = binary.LittleEndian.AppendUint32(dst, b.Flags)
	dst = binary.LittleEndian.AppendUint64(dst, b.NrPages)
	dst = binary.LittleEndian.AppendUint64(dst, b.MFNArray)
	return binary.LittleEndian.AppendUint64(dst, b.Length)
}

// ParseBreadcrumb decodes and checks a breadcrumb found at physical address
// addr (used in errors).
func ParseBreadcrumb(p []byte, addr uint64) (Breadcrumb, error) {
	if len(p) < BreadcrumbSize {
		return Breadcrumb{}, liveErr("breadcrumb", addr, ErrTruncated)
	}
	if string(p[:8]) != Magic {
		return Breadcrumb{}, liveErr("magic", addr, ErrMagic)
	}
	le := binary.LittleEndian
	b := Breadcrumb{le.Uint32(p[8:]), le.Uint32(p[12:]), le.Uint64(p[16:]), le.Uint64(p[24:]), le.Uint64(p[32:])}
	switch {
	case b.Version != Version:
		return b, liveErr("version", addr+8, fmt.Errorf("%w: %d", ErrVersion, b.Version))
	case b.Flags != 0:
		return b, liveErr("flags", addr+12, ErrReserved)
	case b.NrPages > MaxPages:
		return b, liveErr("nr_pages", addr+16, fmt.Errorf("%w: %d pages (max %d)", ErrCount, b.NrPages, MaxPages))
	case b.Length > b.NrPages*PageSize || (b.NrPages > 0 && b.Length <= (b.NrPages-1)*PageSize):
		return b, liveErr("length", addr+32, fmt.Errorf("%w: %d bytes in %d pages", ErrCount, b.Length, b.NrPages))
	}
	return b, nil
}

// A Region is a range of physical memory.
type Region struct{ Start, Len uint64 }

func (r Region) overlaps(start, n uint64) bool { return start < r.Start+r.Len && r.Start < start+n }

// A Stream is the validated live-update data of a memory image.
type Stream struct {
	Breadcrumb Breadcrumb
	MFNs       []uint64
	ram        io.ReaderAt
}

// Open reads the breadcrumb at the start of bootmem in ram (a memory image
// of size bytes: physical address = offset), reads the MFN array, and checks
// every address: inside the image, the array and the pages clear of the
// bootmem region and of each other.
func Open(ram io.ReaderAt, size uint64, bootmem Region) (*Stream, error) {
	if bootmem.Len < BreadcrumbSize || bootmem.Start+bootmem.Len > size || bootmem.Start+bootmem.Len < bootmem.Start {
		return nil, liveErr("bootmem", bootmem.Start, ErrRange)
	}
	var raw [BreadcrumbSize]byte
	if _, err := ram.ReadAt(raw[:], int64(bootmem.Start)); err != nil {
		return nil, liveErr("breadcrumb", bootmem.Start, ErrTruncated)
	}
	b, err := ParseBreadcrumb(raw[:], bootmem.Start)
	if err != nil {
		return nil, err
	}
	arrLen := b.NrPages * 8
	if b.MFNArray+arrLen > size || b.MFNArray+arrLen < b.MFNArray {
		return nil, liveErr("mfn_array", b.MFNArray, ErrRange)
	}
	if bootmem.overlaps(b.MFNArray, arrLen) {
		// The design keeps the array outside the breadcrumb's region.
		return nil, liveErr("mfn_array", b.MFNArray, ErrOverlap)
	}
	arr := make([]byte, arrLen)
	if _, err := ram.ReadAt(arr, int64(b.MFNArray)); err != nil {
		return nil, liveErr("mfn_array", b.MFNArray, ErrTruncated)
	}
	s := &Stream{Breadcrumb: b, MFNs: make([]uint64, b.NrPages), ram: ram}
	array := Region{b.MFNArray, arrLen}
	for i := range s.MFNs {
		mfn := binary.LittleEndian.Uint64(arr[i*8:])
		addr := mfn * PageSize
		switch {
		case mfn > size/PageSize || addr+PageSize > size:
			return nil, liveErr(fmt.Sprintf("mfn[%d]", i), b.MFNArray+uint64(i)*8, fmt.Errorf("%w: mfn %#x", ErrRange, mfn))
		case bootmem.overlaps(addr, PageSize) || array.overlaps(addr, PageSize):
			return nil, liveErr(fmt.Sprintf("mfn[%d]", i), b.MFNArray+uint64(i)*8, fmt.Errorf("%w: mfn %#x", ErrOverlap, mfn))
		}
		s.MFNs[i] = mfn
	}
	// Pages used twice: sort a copy (8 bytes a page; a map would cost
	// several times that), then name the first repeated index.
	sorted := slices.Clone(s.MFNs)
	slices.Sort(sorted)
	var dups map[uint64]bool
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			if dups == nil {
				dups = map[uint64]bool{}
			}
			dups[sorted[i]] = false
		}
	}
	if dups != nil {
		for i, mfn := range s.MFNs {
			if seen, dup := dups[mfn]; dup {
				if seen {
					return nil, liveErr(fmt.Sprintf("mfn[%d]", i), b.MFNArray+uint64(i)*8, fmt.Errorf("%w: mfn %#x", ErrOverlap, mfn))
				}
				dups[mfn] = true
			}
		}
	}
	return s, nil
}

// Reader returns the stream data, reassembled page by page through the MFN
// array, Length bytes long.
func (s *Stream) Reader() io.Reader {
	return &reader{s: s}
}

type reader struct {
	s   *Stream
	off uint64
}

func (r *reader) Read(p []byte) (int, error) {
	if r.off >= r.s.Breadcrumb.Length {
		return 0, io.EOF
	}
	page, in := r.off/PageSize, r.off%PageSize
	n := min(uint64(len(p)), PageSize-in, r.s.Breadcrumb.Length-r.off)
	addr := r.s.MFNs[page]*PageSize + in
	m, err := r.s.ram.ReadAt(p[:n], int64(addr))
	r.off += uint64(m)
	if err != nil && uint64(m) < n {
		return m, liveErr(fmt.Sprintf("page %d", page), addr, ErrTruncated)
	}
	return m, nil
}

// Layout writes a live-update data stream into ram (a memory image):
// data into the pages mfns, the MFN array at mfnArray, and the breadcrumb at
// the start of bootmem. It checks what Open checks and returns the
// breadcrumb.
func Layout(ram []byte, bootmem Region, mfnArray uint64, mfns []uint64, data []byte) (Breadcrumb, error) {
	b := Breadcrumb{Version: Version, NrPages: uint64(len(mfns)), MFNArray: mfnArray, Length: uint64(len(data))}
	if _, err := ParseBreadcrumb(b.Append(nil), bootmem.Start); err != nil {
		return b, err
	}
	if bootmem.Start+BreadcrumbSize > uint64(len(ram)) || mfnArray+8*uint64(len(mfns)) > uint64(len(ram)) {
		return b, liveErr("layout", mfnArray, ErrRange)
	}
	for i, mfn := range mfns {
		if mfn*PageSize+PageSize > uint64(len(ram)) {
			return b, liveErr(fmt.Sprintf("mfn[%d]", i), mfn*PageSize, ErrRange)
		}
		binary.LittleEndian.PutUint64(ram[mfnArray+uint64(i)*8:], mfn)
		chunk := data[min(len(data), i*PageSize):min(len(data), (i+1)*PageSize)]
		copy(ram[mfn*PageSize:], chunk)
	}
	copy(ram[bootmem.Start:], b.Append(nil))
	if _, err := Open(bytesReaderAt(ram), uint64(len(ram)), bootmem); err != nil {
		return b, err
	}
	return b, nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
