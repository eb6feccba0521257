package image

import (
	"cmp"
	"fmt"
	"io"
	"iter"
	"slices"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// A PageRef locates the final copy of one guest page in a raw image.
type PageRef struct {
	PFN  uint64
	Type libxc.PageType
	// Offset is the absolute offset of the page's 4096 bytes in the
	// image, or -1 when its type carries no data (XTAB, BROKEN, XALLOC).
	Offset int64
	// Round is the checkpoint round of the final copy (0 for a stream
	// without CHECKPOINT records).
	Round int
	// Copies counts how many PAGE_DATA entries sent this PFN, across all
	// rounds (more than 1 for pages re-sent in live migration or
	// checkpointing).
	Copies int
}

// A PageIndex maps every PFN of a raw (unpacked) image to the final copy of
// its page: the last PAGE_DATA entry that sent it, which is what a restore
// ends up with. Built in one pass over the image through an io.ReaderAt, it
// then reads any page with one ReadAt. It keeps one 40-byte PageRef per PFN
// (a map from PFN to position while it is built).
type PageIndex struct {
	r       io.ReaderAt
	refs    []PageRef // by increasing PFN
	summary Summary
}

// IndexPages walks the image in r (size bytes) strictly with opt and
// indexes its pages. Set opt.Checkpointed for a checkpointed stream. It
// notes where the pages are without reading them (Options.SkipPages).
func IndexPages(r io.ReaderAt, size int64, opt Options) (*PageIndex, error) {
	opt.SkipPages = true
	x := &PageIndex{r: r}
	at := map[uint64]int{} // PFN -> index in x.refs while walking
	sum, err := Walk(io.NewSectionReader(r, 0, size), opt, func(it *Item) error {
		p, ok := it.Libxc.(*libxc.PageData)
		if !ok {
			return nil
		}
		// The page contents follow the record header, count, reserved
		// word and the PFN entries, in entry order.
		data := it.Offset + stream.HeaderSize + 8 + 8*int64(len(p.Entries))
		p.Pages(func(_ int, pfn uint64, t libxc.PageType, page []byte) bool {
			off := int64(-1)
			if page != nil {
				off = data
				data += libxc.PageSize
			}
			i, ok := at[pfn]
			if !ok {
				i = len(x.refs)
				at[pfn] = i
				x.refs = append(x.refs, PageRef{PFN: pfn})
			}
			ref := &x.refs[i]
			ref.Type, ref.Offset, ref.Round = t, off, it.Round
			ref.Copies++
			return true
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	x.summary = sum
	slices.SortFunc(x.refs, func(a, b PageRef) int { return cmp.Compare(a.PFN, b.PFN) })
	return x, nil
}

// Summary returns the summary of the walk that built the index.
func (x *PageIndex) Summary() Summary { return x.summary }

// Len returns the number of distinct PFNs.
func (x *PageIndex) Len() int { return len(x.refs) }

// Lookup returns the final copy of a PFN.
func (x *PageIndex) Lookup(pfn uint64) (PageRef, bool) {
	i, ok := slices.BinarySearchFunc(x.refs, pfn, func(r PageRef, pfn uint64) int { return cmp.Compare(r.PFN, pfn) })
	if !ok {
		return PageRef{}, false
	}
	return x.refs[i], true
}

// Refs yields the final copy of every PFN in increasing PFN order.
func (x *PageIndex) Refs() iter.Seq[PageRef] {
	return func(yield func(PageRef) bool) {
		for _, ref := range x.refs {
			if !yield(ref) {
				return
			}
		}
	}
}

// ErrNoPage reports a PFN the image does not send, or sends with a type
// that has no data.
var ErrNoPage = fmt.Errorf("image: no page data for this PFN")

// ReadPage reads the final contents of a PFN into buf, which must hold
// libxc.PageSize bytes, with one ReadAt.
func (x *PageIndex) ReadPage(pfn uint64, buf []byte) (PageRef, error) {
	ref, ok := x.Lookup(pfn)
	if !ok || ref.Offset < 0 {
		return ref, fmt.Errorf("%w: %#x", ErrNoPage, pfn)
	}
	if len(buf) < libxc.PageSize {
		return ref, fmt.Errorf("image: ReadPage needs a %d-byte buffer, got %d", libxc.PageSize, len(buf))
	}
	if _, err := x.r.ReadAt(buf[:libxc.PageSize], ref.Offset); err != nil {
		return ref, fmt.Errorf("image: reading PFN %#x at offset %d: %w", pfn, ref.Offset, err)
	}
	return ref, nil
}

// FinalPages yields the final copy of every page in increasing PFN order
// with its contents (nil for types without data). The slice is reused: it
// is valid until the next iteration. A read error is yielded once, with
// the page it was for, and ends the sequence.
func (x *PageIndex) FinalPages() iter.Seq2[Page, error] {
	return func(yield func(Page, error) bool) {
		buf := make([]byte, libxc.PageSize)
		for ref := range x.Refs() {
			pg := Page{PageRef: ref}
			if ref.Offset >= 0 {
				if _, err := x.ReadPage(ref.PFN, buf); err != nil {
					yield(pg, err)
					return
				}
				pg.Data = buf
			}
			if !yield(pg, nil) {
				return
			}
		}
	}
}

// A Page is a page's final copy and its contents.
type Page struct {
	PageRef
	Data []byte // libxc.PageSize bytes, or nil for types without data
}
