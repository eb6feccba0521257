package pack

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// Options tune Pack.
type Options struct {
	Image image.Options // how to walk the image (format, relaxed, checkpointed; not SkipPages)
	// Level trades speed for size; zero means LevelDefault.
	Level Level
	// Concurrency is how many blocks are compressed at once; zero means
	// runtime.GOMAXPROCS(0).
	Concurrency int
	// Progress, when not nil, is called from time to time with the number
	// of input bytes packed since its last call (for a progress line: a
	// regular file's page contents are read at offsets, not through Read).
	Progress func(n int64)
	// Window bounds dedupe: a repeated page is stored as a reference only
	// if it is one of the last Window unique pages, so that Pack (which
	// compares a candidate with the page it repeats, byte for byte) and
	// Unpack (reading front to back) each keep at most Window pages, plus
	// a block or two, in memory. Zero means DefaultWindow; at most
	// MaxWindow.
	Window int
}

// A Level trades packing speed for size. Unpacking speed does not depend
// on it.
type Level int

// The levels, from fastest to smallest.
const (
	LevelDefault Level = iota // zstd level 3: faster than the zstd command at -3, and smaller
	LevelFastest              // zstd level 1
	LevelBetter               // zstd level 7
	LevelBest                 // zstd level 11 and more: for archives
)

// zstdLevel maps a Level to the encoder's.
func (l Level) zstdLevel() (zstd.EncoderLevel, error) {
	switch l {
	case LevelDefault:
		return zstd.SpeedDefault, nil
	case LevelFastest:
		return zstd.SpeedFastest, nil
	case LevelBetter:
		return zstd.SpeedBetterCompression, nil
	case LevelBest:
		return zstd.SpeedBestCompression, nil
	}
	return 0, fmt.Errorf("pack: unknown level %d", int(l))
}

// Stats describe a packed image.
type Stats struct {
	InBytes, OutBytes          int64
	Pages, ZeroPages           int64
	UniquePages, DupPages      int64
	SkeletonBytes              int64
	SkeletonBlocks, PageBlocks int
}

// tee keeps the bytes the walker reads, by absolute offset.
type tee struct {
	r    io.Reader
	buf  []byte
	base int64 // offset of buf[0]
}

func (t *tee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// take returns the bytes at [off, off+n).
func (t *tee) take(off, n int64) ([]byte, error) {
	if off < t.base || off+n > t.base+int64(len(t.buf)) {
		return nil, formatErr(off, "image bytes", ErrCorrupt)
	}
	return t.buf[off-t.base : off-t.base+n], nil
}

// drop forgets what lies before upto.
func (t *tee) drop(upto int64) {
	if upto > t.base {
		k := upto - t.base
		t.buf = append(t.buf[:0], t.buf[k:]...)
		t.base = upto
	}
}

// A job is one block on its way out: workers compress it (page blocks are
// transformed first), the writer emits the blocks in the order queued.
type job struct {
	kind byte
	raw  []byte
	seq  int64 // page blocks: their number
	out  chan []byte
}

type packer struct {
	w     io.Writer
	enc   *zstd.Encoder
	jobs  chan job
	order chan job
	wg    sync.WaitGroup
	off   int64
	werr  error
	// failed is set once a write has failed, so that the walk stops
	// reading instead of packing the rest of the image for nothing.
	failed atomic.Bool
	done   chan struct{}
	// Buffers of page blocks, skeleton blocks and compressed blocks, for
	// reuse: on some virtual machines the first touch of a page of fresh
	// memory costs more than compressing it.
	freePages, freeSkel, freeComp chan []byte
	arena                         bufArena     // where they come from
	pagesWritten                  atomic.Int64 // page blocks the writer is done with

	skel   []byte
	pages  []byte // page block being filled: first id, count, pages
	xforms []byte // the transform code of each page in pages
	// Dedupe: a keyed hash finds a candidate among the last window pages,
	// a byte comparison with the kept page confirms it.
	seed maphash.Seed
	ids  map[uint64]uint32 // hash -> the latest id with that hash
	ring []uint64          // hash of each id in the window, by (id-1) % window
	kept pageBlocks        // flushed page blocks holding window pages (streams)
	// A random-access input (see image.RandomAccess): a candidate is
	// compared with the page it repeats as the input holds it, read back
	// at its offset, so page blocks are reused once written instead of
	// kept for the window.
	ra      io.ReaderAt
	raBase  int64
	offs    []int64 // input offset of each id in the window, by (id-1) % window
	pageOff int64   // input offset of the page being added
	scratch []byte  // a page read back
	pageBuf []byte  // page contents read at their offset (pageChunk at a time)
	rawBuf  []byte  // an item read back
	pseq    int64   // page blocks flushed
	dropped int64   // page blocks let go of
	window  int
	nextID  uint32
	// The run of pages not yet written as a skeleton op.
	runKind byte
	runLen  uint32
	runIDs  []byte

	index     []byte // varint columns, see format.go
	occ       uint64
	lastRound int
	lastPFN   uint64
	lastID    uint32
	ptable    []byte // first id u32, count u32 per page block
	st        Stats
	lastBlock int64 // offset of the last block written
}

// Pack reads an image from r and writes its packed form to w. Blocks are
// compressed on every core while the image is read.
func Pack(w io.Writer, r io.Reader, opt Options) (Stats, error) {
	opt.Image.SkipPages = false // Pack packs the pages
	level, err := opt.Level.zstdLevel()
	if err != nil {
		return Stats{}, err
	}
	if opt.Window == 0 {
		opt.Window = DefaultWindow
	}
	if opt.Window < 1 || opt.Window > MaxWindow {
		return Stats{}, fmt.Errorf("pack: window %d out of range 1..%d", opt.Window, MaxWindow)
	}
	n := opt.Concurrency
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	// Each block carries a CRC-32C of its compressed bytes and its raw
	// length, so zstd's own content checksum is left out.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(n), zstd.WithEncoderCRC(false))
	if err != nil {
		return Stats{}, err
	}
	p := &packer{w: w, enc: enc, jobs: make(chan job, n), order: make(chan job, n), done: make(chan struct{}),
		freePages: make(chan []byte, 2*n+2), freeSkel: make(chan []byte, 2*n+2), freeComp: make(chan []byte, 2*n+2),
		seed: maphash.MakeSeed(), ids: map[uint64]uint32{}, ring: make([]uint64, opt.Window), window: opt.Window,
		nextID: 1, lastPFN: ^uint64(0)}
	if ra, base, _, ok := image.RandomAccess(r); ok {
		p.ra, p.raBase = ra, base
		p.offs, p.scratch = make([]int64, opt.Window), make([]byte, pageSize)
	}
	defer p.arena.release() // after the workers and the writer are done
	p.skel = p.get(p.freeSkel, skelCap)
	for i := 0; i < n; i++ {
		p.wg.Add(1)
		go p.worker()
	}
	go p.writer()
	var head [fileHeader]byte
	copy(head[:], Magic)
	binary.LittleEndian.PutUint32(head[len(Magic):], uint32(opt.Window))
	p.write(head[:])
	p.newPageBlock()
	err = p.walk(r, opt)
	if err == nil {
		err = p.queueIndex()
	}
	close(p.jobs)
	p.wg.Wait()
	close(p.order)
	<-p.done
	if err == nil && p.werr == nil {
		// The index is the last block written.
		var tr [trailerSz]byte
		copy(tr[:], EndMagic)
		binary.LittleEndian.PutUint64(tr[8:], uint64(p.lastBlock))
		p.write(tr[:])
	}
	if p.werr != nil {
		err = p.werr // what stopped the walk, if it stopped
	}
	p.st.OutBytes = p.off
	return p.st, err
}

func (p *packer) worker() {
	defer p.wg.Done()
	var dst []byte // the transformed copy of a page block
	for j := range p.jobs {
		src := j.raw
		switch {
		case j.kind == kindPages && p.ra != nil:
			// Nothing reads a written block of a random-access input
			// again (see keptPage): transform it in place.
			src = transformBlock(src[:0], src)
		case j.kind == kindPages:
			if dst == nil {
				dst = p.arena.alloc(maxPageBlock)
			}
			dst = transformBlock(dst[:0], src)
			src = dst
		}
		j.out <- p.enc.EncodeAll(src, p.get(p.freeComp, len(src)/2+64))
	}
}

// transformBlock appends to dst page block raw with every page transformed
// (raw's own pages stay as they are, for the packer compares new pages with
// them, unless dst is raw[:0]: then raw is transformed in place). The
// packer marks typed page tables; the others are chosen here.
func transformBlock(dst, raw []byte) []byte {
	first, count := blockIDs(raw)
	n := int(count)
	if cap(dst) < len(raw) {
		dst = make([]byte, 0, len(raw))
	}
	dst = dst[:len(raw)] // the header and codes copied, each page written below
	copy(dst[:8], raw)
	xf := dst[8+n*pageSize:]
	copy(xf, raw[8+n*pageSize:])
	for i := range n {
		src := raw[8+i*pageSize : 8+(i+1)*pageSize]
		xf[i] = xformFor(xf[i] == xformTable, src)
		applyXform(xf[i], dst[8+i*pageSize:8+(i+1)*pageSize], src, (first-1+uint32(i))*pageSize)
	}
	return dst
}

// undoBlock reverses the transforms of a checked page block in place.
func undoBlock(raw []byte) {
	first, count := blockIDs(raw)
	n := int(count)
	xf := raw[8+n*pageSize:]
	for i := range n {
		undoXform(xf[i], raw[8+i*pageSize:8+(i+1)*pageSize], (first-1+uint32(i))*pageSize)
	}
}

// writer emits blocks in the order they were made.
func (p *packer) writer() {
	defer close(p.done)
	for j := range p.order {
		comp := <-j.out
		p.lastBlock = p.off
		var h [blockHeader]byte
		h[0] = j.kind
		binary.LittleEndian.PutUint32(h[1:], uint32(len(j.raw)))
		binary.LittleEndian.PutUint32(h[5:], uint32(len(comp)))
		binary.LittleEndian.PutUint32(h[9:], crc32.Checksum(comp, castagnoli))
		p.write(h[:])
		p.write(comp)
		put(p.freeComp, comp)
		switch {
		case j.kind == kindPages && p.ra != nil:
			put(p.freePages, j.raw) // nothing refers to it once written
		case j.kind == kindPages:
			p.pagesWritten.Store(j.seq + 1)
		case j.kind == kindSkeleton:
			put(p.freeSkel, j.raw)
		}
	}
}

// get and put recycle block buffers (a few blocks are in flight at any
// time), sparing the page faults and collections of fresh ones.
func (p *packer) get(free chan []byte, size int) []byte {
	select {
	case b := <-free:
		if cap(b) >= size {
			return b[:0]
		}
	default:
	}
	return p.arena.alloc(size)
}

func put(free chan []byte, b []byte) {
	select {
	case free <- b:
	default:
	}
}

func (p *packer) write(b []byte) {
	if p.werr != nil {
		return
	}
	n, err := p.w.Write(b)
	p.off += int64(n)
	p.werr = err
	if err != nil {
		p.failed.Store(true)
	}
}

// errStopped stops the walk once writing has failed; Pack returns the
// write error instead.
var errStopped = errors.New("pack: output failed")

// emit queues a block for compression; the writer keeps the order.
func (p *packer) emit(j job) {
	j.out = make(chan []byte, 1)
	p.order <- j
	p.jobs <- j
}

func (p *packer) walk(r io.Reader, opt Options) error {
	src := bufio.NewReaderSize(r, 64<<10)
	var t *tee
	var in io.Reader = src
	if p.ra != nil {
		// The walker reads the input at offsets and skips the page
		// contents, which are read here, into a buffer of Pack's own
		// (see recordPages).
		in, opt.Image.SkipPages = r, true
	} else {
		// A stream: the tee keeps the bytes of the item being read. It
		// holds one record at a time: sized for the largest records of
		// real streams (a 1024-page PAGE_DATA batch), it neither grows
		// nor copies itself while they arrive. (A random-access input is
		// read back instead: see readBack.)
		t = &tee{r: src, buf: p.arena.alloc(maxPageBlock + 64<<10)}
		in = t
	}
	wk := image.NewWalker(in, opt.Image)
	var end int64
	for {
		it, err := wk.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if p.failed.Load() {
			return errStopped
		}
		pd, isPages := it.Libxc.(*libxc.PageData)
		var raw []byte
		switch {
		case t != nil:
			raw, err = t.take(it.Offset, it.Size)
		case isPages:
			// The pages come from the walker: only the headers and
			// the PFN list are read back.
			raw, err = p.readBack(it, it.Size-int64(len(pd.Data)))
		default:
			raw, err = p.readBack(it, it.Size)
		}
		if err != nil {
			return err
		}
		if isPages {
			head := int(it.Size) - len(pd.Data)
			p.pageOff = it.Offset + int64(head) // the first page's input offset
			if list := 8 * len(pd.Entries); head != 16+list {
				// Unpack takes the PFN list as the licence for the pages
				// after it; a layout the walker should not have passed.
				return formatErr(it.Offset, fmt.Sprintf("PAGE_DATA of %d entries: %d header bytes, want %d", len(pd.Entries), head, 16+list), ErrCorrupt)
			}
			// Record and body headers, then the PFN list delta-coded.
			p.literal(raw[:16])
			p.words(raw[16:head])
			if err := p.pageData(it.Round, pd, it.Unkept); err != nil {
				return err
			}
		} else {
			p.literal(raw)
		}
		end = it.Offset + it.Size
		if opt.Progress != nil {
			opt.Progress(end - p.st.InBytes)
		}
		p.st.InBytes = end
		if t != nil {
			t.drop(end)
		}
		if n := p.indexSize(); n > maxIndex {
			// Stop now rather than read the rest of a large image for a
			// file that could not be finished.
			return fmt.Errorf("pack: image too large: its index needs %d bytes after %d image bytes, a packed file holds at most %d: %w", n, end, maxIndex, ErrLimit)
		}
	}
	// Whatever follows the last item (nothing for a valid image).
	var rest []byte
	if t != nil {
		if _, err := io.Copy(io.Discard, t); err != nil {
			return err
		}
		rest = t.buf
	} else {
		b, err := io.ReadAll(io.NewSectionReader(p.ra, p.raBase+end, 1<<62))
		if err != nil {
			return err
		}
		rest = b
	}
	if len(rest) > 0 {
		p.literal(rest)
		p.st.InBytes += int64(len(rest))
		if opt.Progress != nil {
			opt.Progress(int64(len(rest)))
		}
	}
	return nil
}

// readBack returns the first n bytes of item it as a random-access input
// holds them, checked against what the walker read and checked: the record
// header and body (the headers of the layers are not compared: the walker
// keeps them only decoded).
func (p *packer) readBack(it *image.Item, n int64) ([]byte, error) {
	if int64(cap(p.rawBuf)) < n {
		p.rawBuf = make([]byte, n)
	}
	b := p.rawBuf[:n]
	if _, err := p.ra.ReadAt(b, p.raBase+it.Offset); err != nil {
		return nil, fmt.Errorf("pack: reading back %d image bytes at offset %d: %w", n, it.Offset, err)
	}
	same := true
	switch it.Kind {
	case image.KindRecord:
		same = n >= stream.HeaderSize && binary.LittleEndian.Uint32(b) == it.Type && binary.LittleEndian.Uint32(b[4:]) == uint32(len(it.Body))
		if same {
			k := min(n-stream.HeaderSize, int64(len(it.Body)))
			same = bytes.Equal(b[stream.HeaderSize:stream.HeaderSize+k], it.Body[:k])
		}
	case image.KindTrailer:
		k := min(n, int64(len(it.Body)))
		same = bytes.Equal(b[:k], it.Body[:k])
	}
	if !same {
		return nil, formatErr(it.Offset, "image bytes read back differ from those read: the input changed while being packed", ErrCorrupt)
	}
	return b, nil
}

// literal adds bytes to the skeleton as literal ops. A long run of bytes
// (a record of up to the record cap, 128 MiB) is cut into ops that each
// end a skeleton block of at most skelFlush bytes plus one op, so no block
// comes near MaxBlock, whatever a valid stream holds.
func (p *packer) literal(b []byte) {
	if len(b) == 0 {
		return
	}
	p.endRun()
	p.st.SkeletonBytes += int64(len(b))
	for len(b) > 0 {
		k := min(len(b), p.room())
		p.op(opLiteral, uint32(k))
		p.skel = append(p.skel, b[:k]...)
		b = b[k:]
		if len(p.skel) >= skelFlush {
			p.flushSkeleton()
		}
	}
}

// skelCap is a skeleton block buffer's capacity: a block is flushed at
// skelFlush bytes, and the op that crosses it adds at most a page or a
// run's ids (see room and pageData).
const skelCap = skelFlush + pageSize + 64

// room returns how many bytes the skeleton block takes before it is full
// (at least 4096, so that every op makes progress).
func (p *packer) room() int { return max(skelFlush-len(p.skel), pageSize) }

// words adds the 64-bit words of b (a PAGE_DATA PFN list) to the skeleton,
// each as its difference from the word before: ascending PFNs of one type
// become one repeated value. A long list is cut like a long literal; each
// op's first word is stored as it is.
func (p *packer) words(b []byte) {
	p.endRun()
	p.st.SkeletonBytes += int64(len(b))
	for len(b) > 0 {
		k := min(len(b), p.room()&^7)
		p.op(opWords, uint32(k/8))
		start := len(p.skel)
		p.skel = append(p.skel, b[:k]...)
		applyXform(xformTable, p.skel[start:], p.skel[start:], 0)
		b = b[k:]
		if len(p.skel) >= skelFlush {
			p.flushSkeleton()
		}
	}
}

func (p *packer) op(code byte, n uint32) {
	p.skel = append(p.skel, code)
	p.skel = binary.LittleEndian.AppendUint32(p.skel, n)
}

// Skeleton ops (see format.go).
const (
	opLiteral = 'L'
	opWords   = 'D'
	runZero   = 'Z'
	runNew    = 'N'
	runDup    = 'R'
)

// pageChunk is how many bytes of a record's page contents Pack reads at a
// time from a random-access input: few enough to be still in the cache
// when each page is looked at, hashed and copied.
const pageChunk = 256 << 10

// readPages reads the n bytes of page contents at offset off of the walk
// (Walker offsets) from a random-access input, into a buffer reused for
// every chunk.
func (p *packer) readPages(off int64, n int) ([]byte, error) {
	if cap(p.pageBuf) < n {
		p.pageBuf = make([]byte, n)
	}
	b := p.pageBuf[:n]
	if _, err := p.ra.ReadAt(b, p.raBase+off); err != nil {
		return nil, fmt.Errorf("pack: reading %d bytes of page contents at offset %d: %w", n, off, err)
	}
	return b, nil
}

// pageData adds the pages of a PAGE_DATA record: from pd.Data, or, when the
// walker left them out (unkept), read from the input at their offset.
func (p *packer) pageData(round int, pd *libxc.PageData, unkept bool) error {
	total := len(pd.Data)
	first := p.pageOff // the input offset of the record's first page
	var chunk []byte   // record bytes [at, at+len(chunk)), unkept
	at := 0
	off := 0
	for i := range pd.Entries {
		t := pd.PageType(i)
		if !t.HasData() || off+pageSize > total {
			continue
		}
		var data []byte
		if unkept {
			if off >= at+len(chunk) {
				var err error
				if chunk, err = p.readPages(first+int64(off), min(pageChunk, total-off)); err != nil {
					return err
				}
				at = off
			}
			data = chunk[off-at : off-at+pageSize : off-at+pageSize]
		} else {
			data = pd.Data[off : off+pageSize : off+pageSize]
		}
		pfn := pd.PFN(i)
		off += pageSize
		p.st.Pages++
		var id uint32
		kind := byte(runZero)
		if bytes.Equal(data, zeros[:pageSize]) {
			p.st.ZeroPages++
		} else {
			sum := maphash.Bytes(p.seed, data)
			if old, ok := p.ids[sum]; ok && bytes.Equal(p.keptPage(old), data) {
				id, kind = old, runDup
				p.st.DupPages++
			} else {
				id, kind = p.addPage(sum, data, t != libxc.PageNormal), runNew
			}
		}
		p.pageOff += pageSize
		p.occurrence(round, pfn, id)
		p.addRun(kind, id)
		if len(p.xforms) == pagesPerP || len(p.skel)+len(p.runIDs) >= skelFlush {
			// The skeleton follows every full page block, so a reference
			// is expanded at most one block after it was made: that
			// bounds what Unpack keeps (see pageStore).
			p.flushSkeleton()
		}
	}
	if len(p.skel) >= skelFlush {
		p.flushSkeleton()
	}
	return nil
}

// addRun adds a page to the current run of pages of one kind, ending the
// run before it if that was of another kind.
func (p *packer) addRun(kind byte, id uint32) {
	if p.runLen > 0 && p.runKind != kind {
		p.endRun()
	}
	p.runKind = kind
	p.runLen++
	if kind == runDup {
		p.runIDs = binary.LittleEndian.AppendUint32(p.runIDs, id)
	}
}

// endRun writes the current run as a skeleton op.
func (p *packer) endRun() {
	if p.runLen == 0 {
		return
	}
	p.op(p.runKind, p.runLen)
	p.skel = append(p.skel, p.runIDs...)
	p.runLen, p.runIDs = 0, p.runIDs[:0]
}

// addPage gives a new page the next id, remembers its hash for the window
// and adds it to the page block.
func (p *packer) addPage(sum uint64, data []byte, pageTable bool) uint32 {
	id := p.nextID
	p.nextID++
	p.st.UniquePages++
	slot := &p.ring[(id-1)%uint32(p.window)]
	if id > uint32(p.window) {
		// The page leaving the window can no longer be referenced.
		if p.ids[*slot] == id-uint32(p.window) {
			delete(p.ids, *slot)
		}
	}
	*slot = sum
	p.ids[sum] = id
	if p.ra != nil {
		p.offs[(id-1)%uint32(p.window)] = p.pageOff
	}
	p.pages = append(p.pages, data...)
	x := byte(xformNone) // chosen by the worker
	if pageTable {
		x = xformTable
	}
	p.xforms = append(p.xforms, x)
	// Let go of the blocks that hold no page of the window any more; their
	// buffers are reused once the writer is done with them. (A
	// random-access input keeps none: the writer recycles them.)
	p.kept.dropBelow(p.nextID-uint32(min(p.window, int(p.nextID))), func(raw []byte) {
		if p.pagesWritten.Load() > p.dropped {
			put(p.freePages, raw)
		}
		p.dropped++
	})
	return id
}

// maxIndex is the largest index Pack writes (MaxBlock; a variable so that
// a test can lower it).
var maxIndex = MaxBlock

// indexSize is the size of the index block as it stands.
func (p *packer) indexSize() int {
	n := 4 + len(p.ptable) + 8 + len(p.index)
	if len(p.xforms) > 0 {
		n += 8 // the page block being filled
	}
	return n
}

// occurrence appends one page occurrence to the index columns.
func (p *packer) occurrence(round int, pfn uint64, id uint32) {
	p.occ++
	p.index = binary.AppendVarint(p.index, int64(round-p.lastRound))
	p.index = binary.AppendVarint(p.index, int64(pfn-(p.lastPFN+1)))
	if id == 0 {
		p.index = binary.AppendUvarint(p.index, 0)
	} else {
		d := int64(id) - int64(p.lastID) - 1
		p.index = binary.AppendUvarint(p.index, zigzag(d)+1)
		p.lastID = id
	}
	p.lastRound, p.lastPFN = round, pfn
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// keptPage returns the contents of page id, which the caller knows to be
// in the window.
func (p *packer) keptPage(id uint32) []byte {
	if first := binary.LittleEndian.Uint32(p.pages); id >= first {
		i := int(id - first) // in the block being filled
		return p.pages[8+i*pageSize : 8+(i+1)*pageSize]
	}
	if p.ra != nil {
		// Read back as the input holds it. After a failed read nil
		// compares equal with no page: the candidate is stored as a new
		// page, which is never wrong. (An input rewritten in place while
		// Pack reads it could only mislead this if the rewritten page
		// equalled the candidate and its first contents had the
		// candidate's 64-bit keyed hash too.)
		if _, err := p.ra.ReadAt(p.scratch, p.raBase+p.offs[(id-1)%uint32(p.window)]); err != nil {
			return nil
		}
		return p.scratch
	}
	return p.kept.run(id, 1)
}

func (p *packer) newPageBlock() {
	p.pages = p.get(p.freePages, 8+pagesPerP*(pageSize+1))[:8]
	binary.LittleEndian.PutUint32(p.pages, p.nextID)
	p.xforms = p.xforms[:0]
}

func (p *packer) flushPages() {
	n := uint32(len(p.xforms))
	if n == 0 {
		return
	}
	first := binary.LittleEndian.Uint32(p.pages)
	binary.LittleEndian.PutUint32(p.pages[4:], n)
	p.pages = append(p.pages, p.xforms...)
	p.ptable = binary.LittleEndian.AppendUint32(p.ptable, first)
	p.ptable = binary.LittleEndian.AppendUint32(p.ptable, n)
	p.st.PageBlocks++
	if p.ra == nil {
		p.kept.push(p.pages)
	}
	p.emit(job{kind: kindPages, raw: p.pages, seq: p.pseq})
	p.pseq++
	p.newPageBlock()
}

func (p *packer) flushSkeleton() {
	p.flushPages() // the pages it refers to come first
	p.endRun()
	if len(p.skel) == 0 {
		return
	}
	p.st.SkeletonBlocks++
	p.emit(job{kind: kindSkeleton, raw: p.skel})
	p.skel = p.get(p.freeSkel, skelCap)
}

// queueIndex flushes the last blocks and queues the index.
func (p *packer) queueIndex() error {
	p.flushSkeleton()
	idx := binary.LittleEndian.AppendUint32(nil, uint32(len(p.ptable)/8))
	idx = append(idx, p.ptable...)
	idx = binary.LittleEndian.AppendUint64(idx, p.occ)
	idx = append(idx, p.index...)
	if len(idx) > maxIndex {
		return fmt.Errorf("pack: image too large: its index needs %d bytes, a packed file holds at most %d: %w", len(idx), maxIndex, ErrLimit)
	}
	p.emit(job{kind: kindIndex, raw: idx})
	return nil
}
