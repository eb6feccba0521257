package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/xensr/xensr/stream"
)

// forgedBlock is one block of a forged packed file, raw.
type forgedBlock struct {
	kind byte
	raw  []byte
}

// forge writes a packed file with the given window and blocks (the last
// should be the index), each compressed and checksummed, and the trailer:
// a well-formed file whose declared sizes are the test's to choose.
func forge(t testing.TB, window uint32, blocks ...forgedBlock) []byte {
	t.Helper()
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	out := binary.LittleEndian.AppendUint32([]byte(Magic), window)
	var last int
	for _, b := range blocks {
		last = len(out)
		comp := enc.EncodeAll(b.raw, nil)
		out = append(out, b.kind)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(b.raw)))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(comp)))
		out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(comp, castagnoli))
		out = append(out, comp...)
	}
	out = append(out, EndMagic...)
	return binary.LittleEndian.AppendUint64(out, uint64(last))
}

// skel builds skeleton ops.
type skel []byte

func (s skel) op(code byte, n uint32) skel {
	return binary.LittleEndian.AppendUint32(append(s, code), n)
}

// words adds a words op of n PFN entries (all deltas 1: ascending PFNs).
func (s skel) words(n int) skel {
	s = s.op(opWords, uint32(n))
	for i := 0; i < n; i++ {
		s = binary.LittleEndian.AppendUint64(s, 1)
	}
	return s
}

// zeroIndex is an index of no page blocks and nocc zero-page occurrences
// at ascending PFNs (three zero varints each).
func zeroIndex(nocc int) []byte {
	idx := binary.LittleEndian.AppendUint32(nil, 0)
	idx = binary.LittleEndian.AppendUint64(idx, uint64(nocc))
	return append(idx, make([]byte, 3*nocc)...)
}

// peakHeap runs fn and returns the highest HeapAlloc seen above the heap
// before it (sampled every 2 ms with the collector made eager, so garbage
// counts little), using runtime.MemStats.
func peakHeap(fn func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak.Load() {
				peak.Store(ms.HeapAlloc - base)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	fn()
	close(done)
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > base && ms.HeapAlloc-base > peak.Load() {
		peak.Store(ms.HeapAlloc - base)
	}
	return peak.Load()
}

// wantErr checks err is a pack FormatError wrapping sentinel and naming
// field, with expected and actual values.
func wantErr(t *testing.T, err, sentinel error, field string) {
	t.Helper()
	var fe *stream.FormatError
	if !errors.Is(err, sentinel) || !errors.As(err, &fe) || fe.Layer != "pack" || !strings.Contains(fe.Field, field) || fe.Expected == "" || fe.Actual == "" {
		t.Fatalf("got %v, want a pack FormatError wrapping %v naming %q with expected and actual values", err, sentinel, field)
	}
}

// countWriter counts bytes and fails past a limit (so that a control run
// of an unbounded writer ends).
type countWriter struct{ n, limit int64 }

var errTooMuch = errors.New("test writer: too much output")

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.limit {
		return len(p), errTooMuch
	}
	return len(p), nil
}

// TestWindowLimit: the window a file declares is at most MaxWindow (1 GiB
// of pages); one past it is refused before anything is read or kept.
func TestWindowLimit(t *testing.T) {
	for _, w := range []uint32{MaxWindow, MaxWindow + 1, 1 << 20} {
		f := forge(t, w, forgedBlock{kindSkeleton, skel(nil).op(opLiteral, 1).op(0, 0)[:6]}, forgedBlock{kindIndex, zeroIndex(0)})
		err := Unpack(io.Discard, bytes.NewReader(f))
		_, oerr := Open(bytes.NewReader(f), int64(len(f)))
		if w <= MaxWindow {
			if err != nil || oerr != nil {
				t.Fatalf("window %d: Unpack %v, Open %v", w, err, oerr)
			}
			continue
		}
		wantErr(t, err, ErrLimit, "window")
		wantErr(t, oerr, ErrLimit, "window")
	}
	if _, err := Pack(io.Discard, bytes.NewReader(nil), Options{Window: MaxWindow + 1}); err == nil {
		t.Fatal("Pack accepted a window past MaxWindow")
	}
}

// TestRunLimits: a run op may stand for at most MaxRun pages and no more
// pages than the PFN entries before it; the 98-byte output bomb (one zero
// run of 2^26 pages: 256 GiB) is refused before a byte is written.
func TestRunLimits(t *testing.T) {
	cases := []struct {
		name  string
		s     skel
		pages int
		err   error
	}{
		{"run at the limit", skel(nil).words(MaxRun).op(runZero, MaxRun), MaxRun, nil},
		{"run past the limit", skel(nil).words(MaxRun+1).op(runZero, MaxRun+1), 0, ErrLimit},
		{"run past the PFN entries", skel(nil).words(10).op(runZero, 11), 0, ErrLimit},
		{"runs within the PFN entries", skel(nil).words(10).op(runZero, 4).op(runZero, 6), 10, nil},
		{"no PFN list (98-byte bomb)", skel(nil).op(runZero, 1<<26), 0, ErrLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := forge(t, 1, forgedBlock{kindSkeleton, c.s}, forgedBlock{kindIndex, zeroIndex(c.pages)})
			w := &countWriter{limit: 1 << 30}
			err := Unpack(w, bytes.NewReader(f))
			if c.err == nil {
				if err != nil {
					t.Fatalf("Unpack: %v", err)
				}
				if want := int64(len(c.s)) - 5*int64(bytes.Count(c.s, []byte{opWords})) + int64(c.pages)*pageSize; w.n > want+int64(len(c.s)) {
					t.Fatalf("wrote %d bytes", w.n)
				}
				return
			}
			wantErr(t, err, c.err, "run")
			if w.n > int64(len(c.s)) { // the PFN list may be out; no page
				t.Fatalf("wrote %d bytes before refusing", w.n)
			}
		})
	}
	// The index must agree with the skeleton's pages.
	f := forge(t, 1, forgedBlock{kindSkeleton, skel(nil).words(10).op(runZero, 10)}, forgedBlock{kindIndex, zeroIndex(9)})
	wantErr(t, Unpack(io.Discard, bytes.NewReader(f)), ErrCorrupt, "index occurrences")
}

// TestBlockLimits: block lengths are checked against the hard limits and
// against each other (zstd's bounds) before anything is allocated.
func TestBlockLimits(t *testing.T) {
	head := func(kind byte, raw, comp uint32) []byte {
		b := binary.LittleEndian.AppendUint32([]byte(Magic), 1)
		b = append(b, kind)
		b = binary.LittleEndian.AppendUint32(b, raw)
		return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(b, comp), 0)
	}
	cases := []struct {
		name      string
		kind      byte
		raw, comp uint32
		err       error
		field     string
	}{
		{"page block past its size", kindPages, maxPageBlock + 1, 1 << 20, ErrLimit, "raw length"},
		{"skeleton past MaxBlock", kindSkeleton, MaxBlock + 1, 1 << 20, ErrLimit, "raw length"},
		{"raw past zstd's ratio", kindSkeleton, MaxBlock, MaxBlock / maxRatio / 2, ErrCorrupt, "raw length"},
		{"compressed past zstd's bound", kindSkeleton, 100, 1000, ErrCorrupt, "compressed length"},
		{"lying length on short input", kindSkeleton, MaxBlock, MaxBlock, ErrTruncated, "block data"},
	}
	for _, c := range cases {
		f := head(c.kind, c.raw, c.comp)
		var err error
		peak := peakHeap(func() { err = Unpack(io.Discard, bytes.NewReader(f)) })
		t.Logf("%s: %v (heap peak %d bytes)", c.name, err, peak)
		wantErr(t, err, c.err, c.field)
		if peak > 8<<20 {
			t.Errorf("%s: heap grew by %d bytes for a %d-byte file", c.name, peak, len(f))
		}
	}
	// errors.Is(err, stream.ErrTruncated) holds for a cut packed file.
	if err := Unpack(io.Discard, bytes.NewReader(head(kindSkeleton, 100, 50)[:15])); !errors.Is(err, stream.ErrTruncated) {
		t.Fatalf("cut file: %v does not match stream.ErrTruncated", err)
	}
}

// TestOpenIndexBound: Open of a file whose index declares many page
// occurrences keeps the index block and nothing per occurrence, and an
// index that declares more occurrences than the skeleton's PFN lists can
// hold (the 7 KB stat bomb) is refused.
func TestOpenIndexBound(t *testing.T) {
	const n = 1 << 20
	var s skel
	for left := n; left > 0; left -= MaxRun {
		k := min(left, MaxRun)
		s = s.words(k).op(runZero, uint32(k))
	}
	f := forge(t, 1, forgedBlock{kindSkeleton, s}, forgedBlock{kindIndex, zeroIndex(n)})
	var pf *File
	var err error
	peak := peakHeap(func() { pf, err = Open(bytes.NewReader(f), int64(len(f))) })
	if err != nil {
		t.Fatal(err)
	}
	// The bound: the index block's raw bytes plus its compressed bytes
	// plus 1 MiB of decoder state and slack.
	bound := uint64(len(zeroIndex(n))) + uint64(len(f)) + 1<<20
	t.Logf("Open of %d occurrences: heap peak %d bytes, bound %d", n, peak, bound)
	if peak > bound {
		t.Fatalf("Open took %d bytes for %d occurrences, bound %d", peak, n, bound)
	}
	if pf.Occurrences != n {
		t.Fatalf("Occurrences %d", pf.Occurrences)
	}
	// The page table the first Page call builds: 16 bytes an occurrence.
	peak = peakHeap(func() { _, err = pf.Page(0, 12345) })
	if err != nil {
		t.Fatal(err)
	}
	if bound := uint64(16*n) + 2<<20; peak > 2*bound {
		t.Fatalf("Page built a table of %d bytes for %d occurrences, bound %d", peak, n, bound)
	}
	var u countWriter
	u.limit = 1 << 40
	if err := Unpack(&u, bytes.NewReader(f)); err != nil || u.n != int64(len(s))-int64(5*2*((n+MaxRun-1)/MaxRun))+n*pageSize-int64(8*n)+int64(8*n) {
		t.Fatalf("Unpack: %v, %d bytes", err, u.n)
	}

	// At the skeleton's limit and one past it.
	for _, extra := range []int{0, 1} {
		f := forge(t, 1, forgedBlock{kindSkeleton, skel(nil).words(100).op(runZero, 100)}, forgedBlock{kindIndex, zeroIndex(101 + extra)})
		// The bound is the skeleton's raw bytes / 8 (here 816 / 8 = 102).
		raw := len(skel(nil).words(100).op(runZero, 100))
		_, err := Open(bytes.NewReader(f), int64(len(f)))
		if 101+extra > raw/8 {
			wantErr(t, err, ErrLimit, "index occurrences")
		} else if err != nil {
			t.Fatalf("%d occurrences: %v", 101+extra, err)
		}
	}
	big := forge(t, 1, forgedBlock{kindSkeleton, skel(nil).words(10).op(runZero, 10)}, forgedBlock{kindIndex, zeroIndex(22_000_000)})
	var berr error
	start := time.Now()
	peak = peakHeap(func() { _, berr = Open(bytes.NewReader(big), int64(len(big))) })
	t.Logf("forged index of 22M occurrences in a %d-byte file: %v in %v, heap peak %d", len(big), berr, time.Since(start), peak)
	wantErr(t, berr, ErrLimit, "index occurrences")
	if peak > 3*uint64(22_000_000)+8<<20 {
		t.Fatalf("refusing the forged index took %d bytes", peak)
	}
}

// TestUnpackBound: Unpack keeps at most the window of pages (plus a page
// block at each edge) and the read-ahead budget, whatever the file holds:
// here many page blocks of pages that compress to almost nothing, and
// skeleton blocks of 4 MiB literals written to a slow writer, with
// GOMAXPROCS 8 (16 blocks could be read ahead).
func TestUnpackBound(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	const window = 2048
	var blocks []forgedBlock
	id := uint32(1)
	for b := 0; b < 12; b++ {
		raw := binary.LittleEndian.AppendUint32(nil, id)
		raw = binary.LittleEndian.AppendUint32(raw, pagesPerP)
		page := bytes.Repeat([]byte{byte(b + 1)}, pageSize)
		for i := 0; i < pagesPerP; i++ {
			page[0] = byte(i)
			page[1] = byte(i >> 8)
			raw = append(raw, page...)
		}
		raw = append(raw, make([]byte, pagesPerP)...)
		blocks = append(blocks, forgedBlock{kindPages, raw})
		blocks = append(blocks, forgedBlock{kindSkeleton, skel(nil).words(pagesPerP).op(runNew, pagesPerP)})
		id += pagesPerP
	}
	lit := make([]byte, 4<<20)
	for b := 0; b < 24; b++ {
		blocks = append(blocks, forgedBlock{kindSkeleton, append(skel(nil).op(opLiteral, uint32(len(lit))), lit...)})
	}
	idx := binary.LittleEndian.AppendUint32(nil, 12)
	for b := uint32(0); b < 12; b++ {
		idx = binary.LittleEndian.AppendUint32(idx, 1+b*pagesPerP)
		idx = binary.LittleEndian.AppendUint32(idx, pagesPerP)
	}
	idx = binary.LittleEndian.AppendUint64(idx, 12*pagesPerP)
	for i := 0; i < 12*pagesPerP; i++ {
		idx = append(idx, 0, 0, 1) // same round, next PFN, next id
	}
	blocks = append(blocks, forgedBlock{kindIndex, idx})
	f := forge(t, window, blocks...)
	var err error
	start := time.Now()
	peak := peakHeap(func() { err = Unpack(slowWriter{}, bytes.NewReader(f)) })
	t.Logf("Unpack took %v", time.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	// The documented bound: window pages plus a page block at each edge,
	// the read-ahead budget, and 2 MiB of buffers and decoder state.
	// The collector, made eager (GC percent 10), still lets garbage (the
	// blocks just written) reach a tenth of the heap and more while it
	// runs: a fifth is allowed.
	bound := (uint64(window+2*pagesPerP)*(pageSize+1) + aheadBudget + uint64(len(f)) + 2<<20) * 12 / 10
	t.Logf("Unpack of a %d-byte file (window %d): heap peak %d bytes, bound %d", len(f), window, peak, bound)
	if peak > bound {
		t.Fatalf("Unpack heap peak %d bytes, bound %d", peak, bound)
	}

	// NonPage holds one skeleton block at a time (4 MiB raw here, plus
	// its compressed bytes), whatever the number of blocks.
	pf, err := Open(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	peak = peakHeap(func() { err = pf.NonPage(slowWriter{}) })
	if err != nil {
		t.Fatal(err)
	}
	bound = (uint64(len(lit)) + uint64(len(f)) + 2<<20) * 11 / 10
	t.Logf("NonPage: heap peak %d bytes, bound %d", peak, bound)
	if peak > bound {
		t.Fatalf("NonPage heap peak %d bytes, bound %d", peak, bound)
	}
}

// slowWriter takes 10 ns a byte (100 MB/s), so the reader gets ahead.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Duration(len(p)) * 10 * time.Nanosecond)
	return len(p), nil
}
