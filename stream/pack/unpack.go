package pack

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

var decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxBlock))

// A block is one block of a packed file, as read and, once decoded, as
// decompressed.
type block struct {
	kind   byte
	off    int64 // offset of the block header
	size   int64 // header and compressed bytes
	rawLen uint32
	crc    uint32
	comp   []byte
	raw    []byte
}

// readHeader reads and checks the block header at off.
func readHeader(r io.Reader, off int64) (block, error) {
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
	return block{kind: kind, off: off, size: blockHeader + int64(compLen), rawLen: rawLen, crc: binary.LittleEndian.Uint32(h[9:])}, nil
}

// readBlock reads the block at off with its compressed bytes and checks
// their CRC.
func readBlock(r io.Reader, off int64) (block, error) {
	b, err := readHeader(r, off)
	if err != nil {
		return b, err
	}
	b.comp = make([]byte, b.size-blockHeader)
	if _, err := io.ReadFull(r, b.comp); err != nil {
		return block{}, formatErr(off, "block data", ErrTruncated)
	}
	if crc32.Checksum(b.comp, castagnoli) != b.crc {
		return block{}, formatErr(off, "block", ErrChecksum)
	}
	return b, nil
}

// decode decompresses the block and checks a page block's layout; with
// undo it also reverses the transforms of every page.
func (b *block) decode(undo bool) error {
	raw, err := decoder.DecodeAll(b.comp, make([]byte, 0, b.rawLen))
	if err != nil || len(raw) != int(b.rawLen) {
		return formatErr(b.off, fmt.Sprintf("block data (%v)", err), ErrCorrupt)
	}
	b.raw, b.comp = raw, nil
	if b.kind != kindPages {
		return nil
	}
	if _, _, err := b.pageLayout(); err != nil {
		return err
	}
	if undo {
		undoBlock(raw)
	}
	return nil
}

// pageLayout checks a decoded page block and returns its first id and
// page count.
func (b *block) pageLayout() (first, n uint32, err error) {
	if len(b.raw) < 8 {
		return 0, 0, formatErr(b.off, "page block header", ErrCorrupt)
	}
	first, n = blockIDs(b.raw)
	if first == 0 || n == 0 || n > pagesPerP || uint64(len(b.raw)) != 8+uint64(n)*(pageSize+1) || uint64(first)+uint64(n) > 1<<32 {
		return 0, 0, formatErr(b.off, fmt.Sprintf("page block of %d pages from id %d in %d bytes", n, first, len(b.raw)), ErrCorrupt)
	}
	for i, x := range b.raw[8+int(n)*pageSize:] {
		if x > xformTable {
			return 0, 0, formatErr(b.off, fmt.Sprintf("page %d: transform %d", first+uint32(i), x), ErrCorrupt)
		}
	}
	return first, n, nil
}

// page returns page id of a checked page block, transformed as stored.
func (b *block) page(id uint32) (data []byte, xform byte) {
	first, n := blockIDs(b.raw)
	i := int(id - first)
	return b.raw[8+i*pageSize : 8+(i+1)*pageSize], b.raw[8+int(n)*pageSize+i]
}

// readFileHeader reads the magic and the dedupe window.
func readFileHeader(r io.Reader) (uint32, error) {
	var h [fileHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil || string(h[:len(Magic)]) != Magic {
		return 0, formatErr(0, "magic", ErrMagic)
	}
	w := binary.LittleEndian.Uint32(h[len(Magic):])
	if w == 0 || w > MaxWindow {
		return 0, formatErr(int64(len(Magic)), fmt.Sprintf("window %d", w), ErrCorrupt)
	}
	return w, nil
}

// A pageStore keeps the page blocks a skeleton may still refer to. The
// packer refers only to the last window pages it had made, and writes the
// skeleton after at most one more page block, so pages older than window +
// pagesPerP behind the newest can go.
type pageStore struct {
	pageBlocks
	window uint32
	next   uint32 // first id of the next page block
}

func (s *pageStore) add(b block) error {
	first, n, _ := b.pageLayout()
	if first != s.next {
		return formatErr(b.off, fmt.Sprintf("page block starts at id %d, want %d", first, s.next), ErrCorrupt)
	}
	s.push(b.raw)
	s.next += n
	if keep := uint64(s.window) + pagesPerP; uint64(s.next) > keep {
		s.dropBelow(s.next-uint32(keep), nil)
	}
	return nil
}

// pages returns pages id, id+1, ... (at most n) that lie one after another
// in one block.
func (s *pageStore) pages(id, n uint32) ([]byte, error) {
	if p := s.run(id, n); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("page id %d not defined or outside the window", id)
}

// A fetched block travels from Unpack's reader to its consumer; done is
// closed once it is decoded (or failed).
type fetched struct {
	b       block
	err     error
	trailer [trailerSz]byte
	done    chan struct{}
}

// Unpack reads a packed image from r front to back and writes the original
// image to w. Blocks are decompressed on every core, ahead of the writing;
// it keeps at most the file's dedupe window of pages (plus one block) in
// memory.
func Unpack(w io.Writer, r io.Reader) error {
	window, err := readFileHeader(r)
	if err != nil {
		return err
	}
	ahead := 2 * runtime.GOMAXPROCS(0)
	queue := make(chan *fetched, ahead)
	stop, stopped := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stop)
		<-stopped // r is not read once Unpack has returned
	}()
	go func() {
		defer close(stopped)
		defer close(queue)
		off := int64(fileHeader)
		for {
			f := &fetched{done: make(chan struct{})}
			f.b, f.err = readBlock(r, off)
			last := f.err != nil || f.b.kind == kindIndex
			if f.err == nil && f.b.kind == kindIndex {
				if _, err := io.ReadFull(r, f.trailer[:]); err != nil {
					f.err = formatErr(off+f.b.size, "trailer", ErrTruncated)
				}
			}
			if f.err == nil {
				go func() {
					f.err = f.b.decode(true)
					close(f.done)
				}()
			} else {
				close(f.done)
			}
			select {
			case queue <- f:
			case <-stop:
				return
			}
			if last {
				return
			}
			off += f.b.size
		}
	}()

	// Runs of pages are written straight from the blocks; the buffer
	// gathers the small writes (record headers, PFN lists) in between.
	bw := bufio.NewWriterSize(w, 64<<10)
	store := pageStore{window: window, next: 1}
	var ex expander
	for f := range queue {
		<-f.done
		if f.err != nil {
			return f.err
		}
		b := f.b
		switch b.kind {
		case kindPages:
			if err := store.add(b); err != nil {
				return err
			}
		case kindSkeleton:
			if err := ex.expand(bw, b, &store); err != nil {
				return err
			}
		case kindIndex:
			end := b.off + b.size
			if string(f.trailer[:8]) != EndMagic {
				return formatErr(end, "trailer", ErrCorrupt)
			}
			if got := int64(binary.LittleEndian.Uint64(f.trailer[8:])); got != b.off {
				return formatErr(end, fmt.Sprintf("trailer names the index at %d, found at %d", got, b.off), ErrCorrupt)
			}
			if ex.next != store.next {
				return formatErr(b.off, fmt.Sprintf("skeleton uses %d new pages, page blocks hold %d", ex.next-1, store.next-1), ErrCorrupt)
			}
			return bw.Flush()
		}
	}
	return formatErr(0, "index", ErrTruncated) // not reached: the reader ends with the index or an error
}

var zeros [16 * pageSize]byte

// An expander writes skeleton ops; next is the id the next new page gets.
type expander struct{ next uint32 }

// expand writes a skeleton block's ops to w, taking pages from the store.
// With a nil store, pages are skipped and only literals are written.
func (e *expander) expand(w io.Writer, b block, store *pageStore) error {
	if e.next == 0 {
		e.next = 1
	}
	ops := b.raw
	bad := func(what string) error { return formatErr(b.off, "skeleton: "+what, ErrCorrupt) }
	for len(ops) > 0 {
		if len(ops) < 5 {
			return bad("short op")
		}
		op, n := ops[0], binary.LittleEndian.Uint32(ops[1:])
		ops = ops[5:]
		switch op {
		case opLiteral:
			if uint64(n) > uint64(len(ops)) {
				return bad("literal past the block")
			}
			if _, err := w.Write(ops[:n]); err != nil {
				return err
			}
			ops = ops[n:]
		case opWords:
			if uint64(n)*8 > uint64(len(ops)) {
				return bad("word list past the block")
			}
			undoXform(xformTable, ops[:8*n], 0)
			if _, err := w.Write(ops[:8*n]); err != nil {
				return err
			}
			ops = ops[8*n:]
		case runZero:
			if n > MaxBlock {
				return bad("zero run too long")
			}
			for left := int(n) * pageSize; left > 0 && store != nil; {
				k, err := w.Write(zeros[:min(left, len(zeros))])
				if err != nil {
					return err
				}
				left -= k
			}
		case runNew:
			if uint64(e.next)+uint64(n) > 1<<32 {
				return bad("new-page run too long")
			}
			for i := uint32(0); i < n && store != nil; {
				p, err := store.pages(e.next+i, n-i)
				if err != nil {
					return bad(err.Error())
				}
				if _, err := w.Write(p); err != nil {
					return err
				}
				i += uint32(len(p) / pageSize)
			}
			e.next += n
		case runDup:
			if uint64(n)*4 > uint64(len(ops)) {
				return bad("page references past the block")
			}
			for i := uint32(0); i < n; i++ {
				id := binary.LittleEndian.Uint32(ops[4*i:])
				if id == 0 || id >= e.next {
					return bad(fmt.Sprintf("reference to page %d before it is made", id))
				}
				if store == nil {
					continue
				}
				p, err := store.pages(id, 1)
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
	// distinct non-zero pages; Window is the dedupe window in pages.
	Occurrences, Unique int
	Window              int
	Size                int64
}

type pblock struct {
	first, count uint32
	off          int64
}

// Open reads the trailer, the index and the block chain of a packed file of
// size bytes; no page block is decompressed.
func Open(r io.ReaderAt, size int64) (*File, error) {
	if size < int64(fileHeader)+trailerSz {
		return nil, formatErr(size, "file shorter than header and trailer", ErrTruncated)
	}
	window, err := readFileHeader(io.NewSectionReader(r, 0, fileHeader))
	if err != nil {
		return nil, err
	}
	var tr [trailerSz]byte
	if _, err := r.ReadAt(tr[:], size-trailerSz); err != nil || string(tr[:8]) != EndMagic {
		return nil, formatErr(size-trailerSz, "trailer", ErrTruncated)
	}
	idxOff := int64(binary.LittleEndian.Uint64(tr[8:]))
	if idxOff < int64(fileHeader) || idxOff >= size-trailerSz {
		return nil, formatErr(size-trailerSz, "index offset", ErrCorrupt)
	}
	ib, err := readBlock(io.NewSectionReader(r, idxOff, size-trailerSz-idxOff), idxOff)
	if err == nil {
		err = ib.decode(false)
	}
	if err != nil {
		return nil, err
	}
	if ib.kind != kindIndex {
		return nil, formatErr(idxOff, "index block kind", ErrCorrupt)
	}
	f := &File{r: r, pages: map[[2]uint64]uint32{}, Size: size, Window: int(window)}
	if err := f.readIndex(ib); err != nil {
		return nil, err
	}
	// Walk the block headers to find where each block lies.
	off, pi := int64(fileHeader), 0
	for off < idxOff {
		b, err := readHeader(io.NewSectionReader(r, off, blockHeader), off)
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

// readIndex decodes the index block: the page blocks, then the varint
// columns of page occurrences (see format.go).
func (f *File) readIndex(ib block) error {
	idx := ib.raw
	bad := func(what string) error { return formatErr(ib.off, "index: "+what, ErrCorrupt) }
	if len(idx) < 4 {
		return bad("short")
	}
	np := uint64(binary.LittleEndian.Uint32(idx))
	idx = idx[4:]
	if np*8+8 > uint64(len(idx)) {
		return bad(fmt.Sprintf("%d page blocks", np))
	}
	next := uint32(1)
	for i := uint64(0); i < np; i++ {
		pb := pblock{first: binary.LittleEndian.Uint32(idx[i*8:]), count: binary.LittleEndian.Uint32(idx[i*8+4:])}
		if pb.first != next || pb.count == 0 || pb.count > pagesPerP {
			return bad(fmt.Sprintf("page block %d: ids %d+%d", i, pb.first, pb.count))
		}
		next += pb.count
		f.pblocks = append(f.pblocks, pb)
		f.Unique += int(pb.count)
	}
	idx = idx[np*8:]
	nocc := binary.LittleEndian.Uint64(idx)
	idx = idx[8:]
	if nocc > uint64(len(idx))/3 {
		return bad(fmt.Sprintf("%d occurrences in %d bytes", nocc, len(idx)))
	}
	var round int64
	pfn, lastID := ^uint64(0), uint32(0)
	for i := uint64(0); i < nocc; i++ {
		var v [3]uint64
		for k := range v {
			u, n := binary.Uvarint(idx)
			if n <= 0 {
				return bad(fmt.Sprintf("occurrence %d: bad varint", i))
			}
			v[k], idx = u, idx[n:]
		}
		round += unzigzag(v[0])
		pfn += uint64(unzigzag(v[1])) + 1
		var id uint32
		if v[2] != 0 {
			nid := int64(lastID) + 1 + unzigzag(v[2]-1)
			if nid < 1 || nid >= int64(next) {
				return bad(fmt.Sprintf("occurrence %d: page id %d of %d", i, nid, next-1))
			}
			id, lastID = uint32(nid), uint32(nid)
		}
		if round < 0 || round > 1<<31 {
			return bad(fmt.Sprintf("occurrence %d: round %d", i, round))
		}
		f.pages[[2]uint64{uint64(round), pfn}] = id
	}
	if len(idx) != 0 {
		return bad(fmt.Sprintf("%d bytes after the occurrences", len(idx)))
	}
	f.Occurrences = int(nocc)
	return nil
}

func (f *File) block(off int64, undo bool) (block, error) {
	b, err := readBlock(io.NewSectionReader(f.r, off, f.Size-off), off)
	if err == nil {
		err = b.decode(undo)
	}
	return b, err
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
		if id >= pb.first && id-pb.first < pb.count {
			b, err := f.block(pb.off, false)
			if err != nil {
				return nil, err
			}
			if first, n, _ := b.pageLayout(); first != pb.first || n != pb.count {
				return nil, formatErr(pb.off, fmt.Sprintf("page block holds ids %d+%d, index says %d+%d", first, n, pb.first, pb.count), ErrCorrupt)
			}
			p, x := b.page(id)
			undoXform(x, p, (id-1)*pageSize)
			return p, nil
		}
	}
	return nil, formatErr(0, fmt.Sprintf("page id %d in no block", id), ErrCorrupt)
}

// NonPage writes every byte of the image that is not page contents (the
// headers and records, PAGE_DATA headers and PFN lists included), in order,
// decompressing only skeleton blocks.
func (f *File) NonPage(w io.Writer) error {
	var ex expander
	for _, off := range f.skel {
		b, err := f.block(off, false)
		if err != nil {
			return err
		}
		if err := ex.expand(w, b, nil); err != nil {
			return err
		}
	}
	return nil
}
