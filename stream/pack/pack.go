package pack

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// Options tune Pack.
type Options struct {
	Image image.Options // how to walk the image (format, relaxed, checkpointed)
	Level zstd.EncoderLevel
	// MaxUnique bounds the distinct pages remembered for dedupe (and what
	// Unpack keeps in memory): default 1<<18 (1 GiB of pages).
	MaxUnique int
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

// take returns the bytes at [off, off+n); drop forgets what lies before.
func (t *tee) take(off, n int64) ([]byte, error) {
	if off < t.base || off+n > t.base+int64(len(t.buf)) {
		return nil, formatErr(off, "image bytes", ErrCorrupt)
	}
	b := t.buf[off-t.base : off-t.base+n]
	return b, nil
}

func (t *tee) drop(upto int64) {
	if upto > t.base {
		k := upto - t.base
		t.buf = append(t.buf[:0], t.buf[k:]...)
		t.base = upto
	}
}

type job struct {
	kind byte
	raw  []byte
	out  chan []byte
}

type packer struct {
	w         io.Writer
	enc       *zstd.Encoder
	jobs      chan job
	order     chan job
	wg        sync.WaitGroup
	off       int64
	werr      error
	done      chan struct{}
	skel      []byte
	pages     []byte
	ids       map[[32]byte]uint32
	nextID    uint32
	maxUniq   int
	index     []byte // round u32, pfn u64, id u32 per page occurrence
	ptable    []byte // first id u32, count u32, offset u64 per page block
	pfirst    uint32
	st        Stats
	idsRun    []uint32
	lastBlock int64 // offset of the last block written
}

// Pack reads an image from r and writes its packed form to w.
func Pack(w io.Writer, r io.Reader, opt Options) (Stats, error) {
	if opt.Level == 0 {
		opt.Level = zstd.SpeedBetterCompression
	}
	if opt.MaxUnique <= 0 {
		opt.MaxUnique = 1 << 18
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opt.Level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return Stats{}, err
	}
	p := &packer{w: w, enc: enc, jobs: make(chan job, 8), order: make(chan job, 8), done: make(chan struct{}),
		ids: map[[32]byte]uint32{}, maxUniq: opt.MaxUnique, pfirst: 1, nextID: 1}
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		p.wg.Add(1)
		go p.worker()
	}
	go p.writer()
	p.write([]byte(Magic))
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
	if err == nil {
		err = p.werr
	}
	p.st.OutBytes = p.off
	return p.st, err
}

func (p *packer) worker() {
	defer p.wg.Done()
	for j := range p.jobs {
		j.out <- p.enc.EncodeAll(j.raw, make([]byte, 0, len(j.raw)/2+64))
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
		binary.LittleEndian.PutUint32(h[9:], crc32Castagnoli(comp))
		p.write(h[:])
		p.write(comp)
	}
}

func crc32Castagnoli(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func (p *packer) write(b []byte) {
	if p.werr != nil {
		return
	}
	n, err := p.w.Write(b)
	p.off += int64(n)
	p.werr = err
}

// emit queues a block for compression; the writer keeps the order.
func (p *packer) emit(kind byte, raw []byte) {
	j := job{kind: kind, raw: raw, out: make(chan []byte, 1)}
	p.order <- j
	p.jobs <- j
}

func (p *packer) walk(r io.Reader, opt Options) error {
	t := &tee{r: r}
	wk := image.NewWalker(t, opt.Image)
	var end int64
	for {
		it, err := wk.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		raw, err := t.take(it.Offset, it.Size)
		if err != nil {
			return err
		}
		if pd, ok := it.Libxc.(*libxc.PageData); ok {
			head := int64(len(raw)) - int64(len(pd.Data))
			p.literal(raw[:head])
			p.pageData(it.Round, pd)
		} else {
			p.literal(raw)
		}
		end = it.Offset + it.Size
		p.st.InBytes = end
		t.drop(end)
	}
	// Whatever the walker read past the last item (nothing for a valid image).
	if _, err := io.Copy(io.Discard, t); err != nil {
		return err
	}
	if len(t.buf) > 0 {
		p.literal(t.buf)
		p.st.InBytes += int64(len(t.buf))
	}
	return nil
}

func (p *packer) literal(b []byte) {
	if len(b) == 0 {
		return
	}
	p.st.SkeletonBytes += int64(len(b))
	p.skel = append(p.skel, 'L')
	p.skel = binary.LittleEndian.AppendUint32(p.skel, uint32(len(b)))
	p.skel = append(p.skel, b...)
	if len(p.skel) >= skelFlush {
		p.flushSkeleton()
	}
}

var zeroPage [pageSize]byte

func (p *packer) pageData(round int, pd *libxc.PageData) {
	run := p.idsRun[:0]
	pd.Pages(func(i int, pfn uint64, t libxc.PageType, data []byte) bool {
		if data == nil {
			return true
		}
		p.st.Pages++
		var id uint32
		if bytes.Equal(data, zeroPage[:]) {
			p.st.ZeroPages++
		} else {
			sum := sha256.Sum256(data)
			if old, ok := p.ids[sum]; ok {
				id = old
				p.st.DupPages++
			} else {
				id = p.nextID
				p.nextID++
				p.st.UniquePages++
				if len(p.ids) < p.maxUniq {
					p.ids[sum] = id
				}
				p.pages = append(p.pages, data...)
				if len(p.pages) >= pagesPerP*pageSize {
					p.flushPages()
				}
			}
		}
		p.index = binary.LittleEndian.AppendUint32(p.index, uint32(round))
		p.index = binary.LittleEndian.AppendUint64(p.index, pfn)
		p.index = binary.LittleEndian.AppendUint32(p.index, id)
		run = append(run, id)
		return true
	})
	p.idsRun = run
	// Runs of zero pages and of page references.
	for i := 0; i < len(run); {
		j := i
		zero := run[i] == 0
		for j < len(run) && (run[j] == 0) == zero {
			j++
		}
		if zero {
			p.skel = append(p.skel, 'Z')
			p.skel = binary.LittleEndian.AppendUint32(p.skel, uint32(j-i))
		} else {
			p.skel = append(p.skel, 'R')
			p.skel = binary.LittleEndian.AppendUint32(p.skel, uint32(j-i))
			for _, id := range run[i:j] {
				p.skel = binary.LittleEndian.AppendUint32(p.skel, id)
			}
		}
		i = j
	}
	if len(p.skel) >= skelFlush {
		p.flushSkeleton()
	}
}

func (p *packer) flushPages() {
	if len(p.pages) == 0 {
		return
	}
	n := uint32(len(p.pages) / pageSize)
	p.ptable = binary.LittleEndian.AppendUint32(p.ptable, p.pfirst)
	p.ptable = binary.LittleEndian.AppendUint32(p.ptable, n)
	p.pfirst += n
	p.st.PageBlocks++
	p.emit(kindPages, p.pages)
	p.pages = make([]byte, 0, pagesPerP*pageSize)
}

func (p *packer) flushSkeleton() {
	p.flushPages() // the pages it refers to come first
	if len(p.skel) == 0 {
		return
	}
	p.st.SkeletonBlocks++
	p.emit(kindSkeleton, p.skel)
	p.skel = make([]byte, 0, skelFlush+64)
}

// queueIndex flushes the last blocks and queues the index.
func (p *packer) queueIndex() error {
	p.flushSkeleton()
	idx := binary.LittleEndian.AppendUint32(nil, uint32(len(p.ptable)/8))
	idx = append(idx, p.ptable...)
	idx = append(idx, p.index...)
	if len(idx) > MaxBlock {
		return errors.New("pack: index larger than a block (image too large)")
	}
	p.emit(kindIndex, idx)
	return nil
}
