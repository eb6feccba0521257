package pack

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"runtime"
	"slices"
	"sync"

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
	maxRaw := uint64(MaxBlock)
	if kind == kindPages {
		maxRaw = maxPageBlock
	}
	if uint64(rawLen) > maxRaw {
		return block{}, sizeErr(off, fmt.Sprintf("%c block raw length", kind), ErrLimit, fmt.Sprintf("at most %d", maxRaw), rawLen)
	}
	if bound := compBound(rawLen); uint64(compLen) > bound {
		return block{}, sizeErr(off, fmt.Sprintf("%c block compressed length", kind), ErrCorrupt, fmt.Sprintf("at most %d for %d raw bytes", bound, rawLen), compLen)
	}
	if uint64(rawLen) > maxRatio*uint64(compLen) {
		return block{}, sizeErr(off, fmt.Sprintf("%c block raw length", kind), ErrCorrupt, fmt.Sprintf("at most %d for %d compressed bytes (zstd)", maxRatio*uint64(compLen), compLen), rawLen)
	}
	return block{kind: kind, off: off, size: blockHeader + int64(compLen), rawLen: rawLen, crc: binary.LittleEndian.Uint32(h[9:])}, nil
}

// compBound is the most a zstd frame of raw bytes may take (stored blocks
// of 128 KiB with 3-byte headers, a frame header: well within this).
func compBound(raw uint32) uint64 { return uint64(raw) + uint64(raw)>>8 + 64 }

// readBlock reads the block at off with its compressed bytes and checks
// their CRC. The buffer grows with what arrives, so a header that lies
// about its length on a short input costs little.
func readBlock(r io.Reader, off int64) (block, error) {
	b, err := readHeader(r, off)
	if err != nil {
		return b, err
	}
	return readBody(r, b)
}

// readBody reads the compressed bytes of block b, whose header was just
// read, and checks their CRC.
func readBody(r io.Reader, b block) (block, error) {
	off := b.off
	n := int(b.size - blockHeader)
	b.comp = make([]byte, 0, min(n, 1<<20))
	for len(b.comp) < n {
		k := min(n-len(b.comp), max(cap(b.comp)-len(b.comp), len(b.comp)))
		if cap(b.comp)-len(b.comp) < k {
			b.comp = append(b.comp, make([]byte, k)...)[:len(b.comp)]
		}
		got, err := io.ReadFull(r, b.comp[len(b.comp):len(b.comp)+k])
		b.comp = b.comp[:len(b.comp)+got]
		if err != nil {
			return block{}, sizeErr(off, "block data", ErrTruncated, fmt.Sprintf("%d bytes", n), fmt.Sprintf("%d bytes", len(b.comp)))
		}
	}
	if crc32.Checksum(b.comp, castagnoli) != b.crc {
		return block{}, formatErr(off, "block", ErrChecksum)
	}
	return b, nil
}

// decode decompresses the block and checks a page block's layout; with
// undo it also reverses the transforms of every page.
//
// The block's raw buffer, if it has room, is reused for the result.
func (b *block) decode(undo bool) error {
	dst := b.raw[:0]
	if cap(dst) < int(b.rawLen) {
		dst = make([]byte, 0, b.rawLen)
	}
	raw, err := decoder.DecodeAll(b.comp, dst)
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
	if w == 0 {
		return 0, sizeErr(int64(len(Magic)), "window", ErrCorrupt, fmt.Sprintf("1 to %d pages", MaxWindow), w)
	}
	if w > MaxWindow {
		return 0, sizeErr(int64(len(Magic)), "window", ErrLimit, fmt.Sprintf("1 to %d pages", MaxWindow), w)
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
	cost    int64 // bytes taken from the read-ahead budget
	err     error
	trailer [trailerSz]byte
	done    chan struct{}
}

// Unpack reads a packed image from r front to back and writes the original
// image to w. Blocks are decompressed on every core, ahead of the writing;
// it keeps at most the file's dedupe window of pages (plus a page block at
// each edge) and 32 MiB of blocks read ahead (see the package doc), and
// refuses a declared size past its limits before allocating or writing
// for it.
func Unpack(w io.Writer, r io.Reader) error {
	window, err := readFileHeader(r)
	if err != nil {
		return err
	}
	ahead := 2 * runtime.GOMAXPROCS(0)
	queue := make(chan *fetched, ahead)
	stop, stopped := make(chan struct{}), make(chan struct{})
	budget := newBudget(aheadBudget)
	defer func() {
		close(stop)
		budget.close()
		<-stopped // r is not read once Unpack has returned
	}()
	go func() {
		defer close(stopped)
		defer close(queue)
		off := int64(fileHeader)
		for {
			f := &fetched{done: make(chan struct{})}
			f.b, f.err = readHeader(r, off)
			if f.err == nil {
				// What this block will hold, compressed and raw, waits
				// for room among the blocks read ahead.
				f.cost = f.b.size + int64(f.b.rawLen)
				if !budget.take(f.cost) {
					return
				}
				f.b, f.err = readBody(r, f.b)
			}
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
				return sizeErr(b.off, "new pages", ErrCorrupt, fmt.Sprintf("%d (in the page blocks)", store.next-1), fmt.Sprintf("%d (in the skeleton)", ex.next-1))
			}
			if nocc, err := indexOccurrences(b); err != nil {
				return err
			} else if nocc != ex.pages {
				return sizeErr(b.off, "index occurrences", ErrCorrupt, fmt.Sprintf("%d (pages in the skeleton)", ex.pages), nocc)
			}
			return bw.Flush()
		}
		// The block is written (a page block's bytes count in the window
		// now): its room goes to the blocks behind it.
		f.b.raw = nil
		budget.give(f.cost)
	}
	return formatErr(0, "index", ErrTruncated) // not reached: the reader ends with the index or an error
}

var zeros [16 * pageSize]byte

// An expander writes skeleton ops; next is the id the next new page gets.
// Every page a run op stands for has its entry in a PFN list before it
// (a words op: Pack writes each PAGE_DATA's list before its pages), so
// credit, the words not yet matched by pages, bounds the runs: a file
// cannot make Unpack write more than 512 pages' bytes per 8 bytes of
// skeleton it decompressed. pages counts the pages written.
type expander struct {
	next          uint32
	credit, pages uint64
}

// run checks a run op of n pages against MaxRun and the credit.
func (e *expander) run(b block, op byte, n uint32) error {
	if n > MaxRun {
		return sizeErr(b.off, fmt.Sprintf("skeleton: %c run", op), ErrLimit, fmt.Sprintf("at most %d pages (one record)", MaxRun), n)
	}
	if uint64(n) > e.credit {
		return sizeErr(b.off, fmt.Sprintf("skeleton: %c run", op), ErrLimit, fmt.Sprintf("at most %d pages (PFN entries not yet used)", e.credit), n)
	}
	e.credit -= uint64(n)
	e.pages += uint64(n)
	return nil
}

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
			e.credit += uint64(n)
			undoXform(xformTable, ops[:8*n], 0)
			if _, err := w.Write(ops[:8*n]); err != nil {
				return err
			}
			ops = ops[8*n:]
		case runZero:
			if err := e.run(b, op, n); err != nil {
				return err
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
			if err := e.run(b, op, n); err != nil {
				return err
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
			if err := e.run(b, op, n); err != nil {
				return err
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

// A File is a packed image opened for random access. Open keeps the index
// block as it is (at most MaxBlock bytes) and checks it; the table that
// finds a page is built by the first Page call.
type File struct {
	r       io.ReaderAt
	occ     []byte // the index's occurrence columns (varints, see format.go)
	idxOff  int64  // offset of the index block
	pblocks []pblock
	skel    []int64 // offsets of skeleton blocks

	once  sync.Once
	table []occurrence // sorted by round and PFN, last occurrence of each
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

// An occurrence is one entry of the page table: 16 bytes a page.
type occurrence struct {
	pfn   uint64
	round uint32
	id    uint32
}

// Open reads the trailer, the index and the block chain of a packed file of
// size bytes; no page or skeleton block is decompressed. It holds the
// index block (at most MaxBlock raw bytes, plus its compressed bytes while
// it is read) and 16 bytes per page block and 8 per skeleton block; the
// first Page call adds 16 bytes per page occurrence.
func Open(r io.ReaderAt, size int64) (*File, error) {
	if size < int64(fileHeader)+trailerSz {
		return nil, sizeErr(size, "file", ErrTruncated, fmt.Sprintf("at least %d bytes (header and trailer)", int64(fileHeader)+trailerSz), size)
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
		return nil, sizeErr(size-trailerSz, "index offset", ErrCorrupt, fmt.Sprintf("%d to %d", fileHeader, size-trailerSz-1), idxOff)
	}
	f := &File{r: r, Size: size, Window: int(window)}
	// Walk the block headers to find where each block lies; the skeleton's
	// raw length bounds the page occurrences (8 bytes of PFN list each).
	var pbOffs []int64
	var skelRaw uint64
	off := int64(fileHeader)
	for off < idxOff {
		b, err := readHeader(io.NewSectionReader(r, off, blockHeader), off)
		if err != nil {
			return nil, err
		}
		switch b.kind {
		case kindPages:
			pbOffs = append(pbOffs, off)
		case kindSkeleton:
			f.skel = append(f.skel, off)
			skelRaw += uint64(b.rawLen)
		default:
			return nil, formatErr(off, "second index block", ErrCorrupt)
		}
		off += b.size
	}
	if off != idxOff {
		return nil, sizeErr(off, "block chain", ErrCorrupt, fmt.Sprintf("to end at the index (offset %d)", idxOff), fmt.Sprintf("end at %d", off))
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
	if err := f.readIndex(ib, pbOffs, skelRaw); err != nil {
		return nil, err
	}
	return f, nil
}

// readIndex checks the index block: the page blocks (as many as the chain
// holds), then the varint columns of page occurrences (see format.go), no
// more of them than the skeleton's PFN lists can hold. It keeps the columns
// as they are.
func (f *File) readIndex(ib block, pbOffs []int64, skelRaw uint64) error {
	idx := ib.raw
	bad := func(what string) error { return formatErr(ib.off, "index: "+what, ErrCorrupt) }
	if _, err := indexOccurrences(ib); err != nil { // checks the table's length
		return err
	}
	n := uint64(binary.LittleEndian.Uint32(idx))
	if n != uint64(len(pbOffs)) {
		return sizeErr(ib.off, "index page blocks", ErrCorrupt, fmt.Sprintf("%d (in the block chain)", len(pbOffs)), n)
	}
	idx = idx[4:]
	next := uint32(1)
	f.pblocks = make([]pblock, 0, n)
	for i := uint64(0); i < n; i++ {
		pb := pblock{first: binary.LittleEndian.Uint32(idx[i*8:]), count: binary.LittleEndian.Uint32(idx[i*8+4:]), off: pbOffs[i]}
		if pb.first != next || pb.count == 0 || pb.count > pagesPerP || uint64(next)+uint64(pb.count) > 1<<32 {
			return bad(fmt.Sprintf("page block %d: ids %d+%d", i, pb.first, pb.count))
		}
		next += pb.count
		f.pblocks = append(f.pblocks, pb)
		f.Unique += int(pb.count)
	}
	idx = idx[n*8:]
	nocc := binary.LittleEndian.Uint64(idx)
	idx = idx[8:]
	if nocc > uint64(len(idx))/3 {
		return sizeErr(ib.off, "index occurrences", ErrCorrupt, fmt.Sprintf("at most %d (3 bytes each in %d bytes)", len(idx)/3, len(idx)), nocc)
	}
	if nocc > skelRaw/8 {
		return sizeErr(ib.off, "index occurrences", ErrLimit, fmt.Sprintf("at most %d (PFN entries the %d skeleton bytes can hold)", skelRaw/8, skelRaw), nocc)
	}
	f.occ, f.idxOff = idx, ib.off
	if err := f.occurrences(nocc, next, func(uint32, uint64, uint32) {}); err != nil {
		return err
	}
	f.Occurrences = int(nocc)
	return nil
}

// occurrences decodes the occurrence columns, calling fn for each, and
// checks every id against next (the first id no page block holds).
func (f *File) occurrences(nocc uint64, next uint32, fn func(round uint32, pfn uint64, id uint32)) error {
	idx := f.occ
	bad := func(what string) error { return formatErr(f.idxOff, "index: "+what, ErrCorrupt) }
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
		fn(uint32(round), pfn, id)
	}
	if len(idx) != 0 {
		return bad(fmt.Sprintf("%d bytes after the occurrences", len(idx)))
	}
	return nil
}

// buildTable makes the sorted page table from the checked index.
func (f *File) buildTable() {
	next := uint32(1)
	if n := len(f.pblocks); n > 0 {
		next = f.pblocks[n-1].first + f.pblocks[n-1].count
	}
	t := make([]occurrence, 0, f.Occurrences)
	f.occurrences(uint64(f.Occurrences), next, func(round uint32, pfn uint64, id uint32) {
		t = append(t, occurrence{pfn: pfn, round: round, id: id})
	})
	slices.SortStableFunc(t, func(a, b occurrence) int {
		if c := cmp.Compare(a.round, b.round); c != 0 {
			return c
		}
		return cmp.Compare(a.pfn, b.pfn)
	})
	// Keep the last occurrence of each (round, PFN).
	out := t[:0]
	for i := range t {
		if i+1 < len(t) && t[i+1].round == t[i].round && t[i+1].pfn == t[i].pfn {
			continue
		}
		out = append(out, t[i])
	}
	f.table = slices.Clip(out)
}

// lookup returns the id of the page saved for pfn in round.
func (f *File) lookup(round int, pfn uint64) (uint32, bool) {
	f.once.Do(f.buildTable)
	if round < 0 || round > 1<<31 {
		return 0, false
	}
	i, ok := slices.BinarySearchFunc(f.table, occurrence{pfn: pfn, round: uint32(round)}, func(a, b occurrence) int {
		if c := cmp.Compare(a.round, b.round); c != 0 {
			return c
		}
		return cmp.Compare(a.pfn, b.pfn)
	})
	if !ok {
		return 0, false
	}
	return f.table[i].id, true
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
	id, ok := f.lookup(round, pfn)
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

// A PageRef names one page a packed file holds: the last copy of PFN sent
// in checkpoint round Round (0 for a plain save).
type PageRef struct {
	Round int
	PFN   uint64
	Zero  bool // an all-zero page (stored as no data)
}

// Pages lists every page the file holds, in round then PFN order, one
// PageRef per (round, PFN): what Page can read, without decompressing any
// page. The first call builds the page table (16 bytes per occurrence), as
// Page does.
func (f *File) Pages() iter.Seq[PageRef] {
	return func(yield func(PageRef) bool) {
		f.once.Do(f.buildTable)
		for _, o := range f.table {
			if !yield(PageRef{Round: int(o.round), PFN: o.pfn, Zero: o.id == 0}) {
				return
			}
		}
	}
}

// NonPage writes every byte of the image that is not page contents (the
// headers and records, PAGE_DATA headers and PFN lists included), in order,
// decompressing only skeleton blocks.
func (f *File) NonPage(w io.Writer) error {
	var ex expander
	var buf []byte // one raw buffer for every block
	for _, off := range f.skel {
		b, err := readBlock(io.NewSectionReader(f.r, off, f.Size-off), off)
		if err == nil {
			b.raw = buf
			err = b.decode(false)
		}
		if err != nil {
			return err
		}
		buf = b.raw
		if err := ex.expand(w, b, nil); err != nil {
			return err
		}
	}
	return nil
}

// indexOccurrences returns the number of page occurrences an index block
// declares (after its page-block table).
func indexOccurrences(ib block) (uint64, error) {
	idx := ib.raw
	if len(idx) < 4 {
		return 0, formatErr(ib.off, "index", ErrCorrupt)
	}
	np := uint64(binary.LittleEndian.Uint32(idx))
	if 4+np*8+8 > uint64(len(idx)) {
		return 0, sizeErr(ib.off, "index page blocks", ErrCorrupt, fmt.Sprintf("at most %d in %d bytes", (uint64(len(idx))-12)/8, len(idx)), np)
	}
	return binary.LittleEndian.Uint64(idx[4+np*8:]), nil
}

// A budget bounds the bytes of blocks read ahead: take waits until n fits
// (or nothing else is held, so one large block always passes), give
// returns them; close wakes and fails every waiter.
type budget struct {
	mu     sync.Mutex
	cond   *sync.Cond
	held   int64
	limit  int64
	closed bool
}

func newBudget(limit int64) *budget {
	b := &budget{limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.held > 0 && b.held+n > b.limit {
		b.cond.Wait()
	}
	b.held += n
	return !b.closed
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.held -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *budget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}
