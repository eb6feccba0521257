package pack

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
)

var decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxBlock))

type block struct {
	kind byte
	off  int64 // offset of the block header
	size int64 // header and compressed bytes
	raw  []byte
}

// readBlockHeader reads a block header and the compressed bytes at off.
func readBlock(r io.Reader, off int64, dst []byte, decode bool) (block, error) {
	var h [blockHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return block{}, formatErr(off, "block header", ErrTruncated)
	}
	kind := h[0]
	rawLen, compLen := binary.LittleEndian.Uint32(h[1:]), binary.LittleEndian.Uint32(h[5:])
	if kind != kindSkeleton && kind != kindPages && kind != kindIndex {
		return block{}, formatErr(off, fmt.Sprintf("block kind %#x", kind), ErrCorrupt)
	}
	if rawLen > MaxBlock || compLen > MaxBlock+MaxBlock/8 {
		return block{}, formatErr(off, fmt.Sprintf("block lengths %d/%d", rawLen, compLen), ErrCorrupt)
	}
	b := block{kind: kind, off: off, size: blockHeader + int64(compLen)}
	if !decode {
		return b, nil
	}
	comp := make([]byte, compLen)
	if _, err := io.ReadFull(r, comp); err != nil {
		return block{}, formatErr(off, "block data", ErrTruncated)
	}
	if crc32.Checksum(comp, castagnoli) != binary.LittleEndian.Uint32(h[9:]) {
		return block{}, formatErr(off, "block", ErrChecksum)
	}
	raw, err := decoder.DecodeAll(comp, dst[:0])
	if err != nil || len(raw) != int(rawLen) {
		return block{}, formatErr(off, fmt.Sprintf("block data (%v)", err), ErrCorrupt)
	}
	b.raw = raw
	return b, nil
}

// MaxUniqueBytes bounds the page store of Unpack (4 GiB).
const MaxUniqueBytes = 1 << 32

// Unpack reads a packed image from r front to back and writes the original
// image to w. Unique pages are kept in memory until the end (bounded by the
// packer's MaxUnique, and by MaxUniqueBytes).
func Unpack(w io.Writer, r io.Reader) error {
	var m [len(Magic)]byte
	if _, err := io.ReadFull(r, m[:]); err != nil || string(m[:]) != Magic {
		return formatErr(0, "magic", ErrMagic)
	}
	off := int64(len(Magic))
	var pages, scratch []byte
	for {
		b, err := readBlock(r, off, scratch, true)
		if err != nil {
			return err
		}
		off += b.size
		switch b.kind {
		case kindPages:
			if len(b.raw)%pageSize != 0 || len(pages)+len(b.raw) > MaxUniqueBytes {
				return formatErr(b.off, "page block length", ErrCorrupt)
			}
			pages = append(pages, b.raw...)
		case kindSkeleton:
			if err := expand(w, b, func(id uint64) ([]byte, error) {
				if id*pageSize > uint64(len(pages)) {
					return nil, fmt.Errorf("page id %d not yet defined", id)
				}
				return pages[(id-1)*pageSize : id*pageSize], nil
			}); err != nil {
				return err
			}
		case kindIndex:
			var tr [trailerSz]byte
			if _, err := io.ReadFull(r, tr[:]); err != nil || string(tr[:8]) != EndMagic {
				return formatErr(off, "trailer", ErrTruncated)
			}
			if got := int64(binary.LittleEndian.Uint64(tr[8:])); got != b.off {
				return formatErr(off, fmt.Sprintf("trailer names the index at %d, found at %d", got, b.off), ErrCorrupt)
			}
			return nil
		}
		scratch = b.raw[:0]
		if b.kind == kindPages {
			scratch = nil // appended to pages; do not reuse
		}
	}
}

var zeros [pageSize]byte

// expand writes a skeleton block's ops; page(id) returns page id (>= 1).
func expand(w io.Writer, b block, page func(id uint64) ([]byte, error)) error {
	ops := b.raw
	bad := func(what string) error { return formatErr(b.off, "skeleton: "+what, ErrCorrupt) }
	for len(ops) > 0 {
		if len(ops) < 5 {
			return bad("short op")
		}
		op, n := ops[0], binary.LittleEndian.Uint32(ops[1:])
		ops = ops[5:]
		switch op {
		case 'L':
			if uint64(n) > uint64(len(ops)) {
				return bad("literal past the block")
			}
			if w != nil {
				if _, err := w.Write(ops[:n]); err != nil {
					return err
				}
			}
			ops = ops[n:]
		case 'Z':
			if n > MaxBlock {
				return bad("zero run too long")
			}
			for i := uint32(0); i < n && w != nil && page != nil; i++ {
				if _, err := w.Write(zeros[:]); err != nil {
					return err
				}
			}
		case 'R':
			if uint64(n)*4 > uint64(len(ops)) {
				return bad("page references past the block")
			}
			for i := uint32(0); i < n && page != nil; i++ {
				id := uint64(binary.LittleEndian.Uint32(ops[4*i:]))
				if id == 0 {
					return bad("page id 0")
				}
				p, err := page(id)
				if err != nil {
					return bad(err.Error())
				}
				if _, err := w.Write(p); err != nil {
					return err
				}
			}
			ops = ops[4*n:]
		default:
			return bad(fmt.Sprintf("op %#x", op))
		}
	}
	return nil
}

// A File is a packed image opened for random access.
type File struct {
	r       io.ReaderAt
	pages   map[[2]uint64]uint32 // (round, pfn) -> page id, last occurrence
	pblocks []pblock
	skel    []int64 // offsets of skeleton blocks
	// Occurrences counts the page occurrences in the index; Unique the
	// distinct non-zero pages.
	Occurrences, Unique int
	Size                int64
}

type pblock struct {
	first, count uint32
	off          int64
}

// Open reads the trailer, the index and the block chain of a packed file of
// size bytes; no page block is decompressed.
func Open(r io.ReaderAt, size int64) (*File, error) {
	var m [len(Magic)]byte
	if _, err := r.ReadAt(m[:], 0); err != nil || string(m[:]) != Magic {
		return nil, formatErr(0, "magic", ErrMagic)
	}
	var tr [trailerSz]byte
	if size < int64(len(Magic))+trailerSz {
		return nil, formatErr(size, "trailer", ErrTruncated)
	}
	if _, err := r.ReadAt(tr[:], size-trailerSz); err != nil || string(tr[:8]) != EndMagic {
		return nil, formatErr(size-trailerSz, "trailer", ErrTruncated)
	}
	idxOff := int64(binary.LittleEndian.Uint64(tr[8:]))
	if idxOff < int64(len(Magic)) || idxOff >= size-trailerSz {
		return nil, formatErr(size-trailerSz, "index offset", ErrCorrupt)
	}
	ib, err := readBlock(io.NewSectionReader(r, idxOff, size-trailerSz-idxOff), idxOff, nil, true)
	if err != nil {
		return nil, err
	}
	if ib.kind != kindIndex {
		return nil, formatErr(idxOff, "index block kind", ErrCorrupt)
	}
	f := &File{r: r, pages: map[[2]uint64]uint32{}, Size: size}
	idx := ib.raw
	if len(idx) < 4 {
		return nil, formatErr(idxOff, "index", ErrCorrupt)
	}
	np := int(binary.LittleEndian.Uint32(idx))
	idx = idx[4:]
	if np*8 > len(idx) || (len(idx)-np*8)%16 != 0 {
		return nil, formatErr(idxOff, "index length", ErrCorrupt)
	}
	for i := 0; i < np; i++ {
		f.pblocks = append(f.pblocks, pblock{first: binary.LittleEndian.Uint32(idx[i*8:]), count: binary.LittleEndian.Uint32(idx[i*8+4:])})
		f.Unique += int(f.pblocks[i].count)
	}
	for e := idx[np*8:]; len(e) >= 16; e = e[16:] {
		f.pages[[2]uint64{uint64(binary.LittleEndian.Uint32(e)), binary.LittleEndian.Uint64(e[4:])}] = binary.LittleEndian.Uint32(e[12:])
		f.Occurrences++
	}
	// Walk the block headers to find where each block lies.
	off, pi := int64(len(Magic)), 0
	for off < idxOff {
		b, err := readBlock(io.NewSectionReader(r, off, blockHeader), off, nil, false)
		if err != nil {
			return nil, err
		}
		switch b.kind {
		case kindPages:
			if pi >= len(f.pblocks) {
				return nil, formatErr(off, "page block not in the index", ErrCorrupt)
			}
			f.pblocks[pi].off = off
			pi++
		case kindSkeleton:
			f.skel = append(f.skel, off)
		default:
			return nil, formatErr(off, "second index block", ErrCorrupt)
		}
		off += b.size
	}
	if off != idxOff || pi != len(f.pblocks) {
		return nil, formatErr(off, "block chain does not meet the index", ErrCorrupt)
	}
	return f, nil
}

func (f *File) block(off int64) (block, error) {
	return readBlock(io.NewSectionReader(f.r, off, f.Size-off), off, nil, true)
}

// Page returns the contents of PFN pfn as saved in checkpoint round round
// (the last copy sent in that round), decompressing one page block.
func (f *File) Page(round int, pfn uint64) ([]byte, error) {
	id, ok := f.pages[[2]uint64{uint64(round), pfn}]
	if !ok {
		return nil, fmt.Errorf("pack: round %d pfn %#x: %w", round, pfn, ErrNoPage)
	}
	if id == 0 {
		return make([]byte, pageSize), nil
	}
	for _, pb := range f.pblocks {
		if id >= pb.first && id < pb.first+pb.count {
			b, err := f.block(pb.off)
			if err != nil {
				return nil, err
			}
			i := int(id - pb.first)
			if (i+1)*pageSize > len(b.raw) {
				return nil, formatErr(pb.off, "page block shorter than its count", ErrCorrupt)
			}
			return b.raw[i*pageSize : (i+1)*pageSize], nil
		}
	}
	return nil, formatErr(0, fmt.Sprintf("page id %d in no block", id), ErrCorrupt)
}

// NonPage writes every byte of the image that is not page contents (the
// headers and records, PAGE_DATA headers and PFN lists included), in order,
// decompressing only skeleton blocks.
func (f *File) NonPage(w io.Writer) error {
	for _, off := range f.skel {
		b, err := f.block(off)
		if err != nil {
			return err
		}
		if err := expand(w, b, nil); err != nil {
			return err
		}
	}
	return nil
}
