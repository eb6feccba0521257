package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// streamOnly hides every method but Read: the walker must read it all.
type streamOnly struct{ io.Reader }

// walkResult is what a walk saw: its items (without bodies), summary,
// error and the bytes it did not read.
type walkResult struct {
	items   []Item
	sum     Summary
	err     error
	skipped int64
	unkept  int  // items marked Unkept
	relaxed bool // Options.Relaxed
}

func walkWith(r io.Reader, opt Options) walkResult {
	return walkOf(NewWalker(r, opt), opt)
}

// walkOf walks w, made with opt, to its end or first error.
func walkOf(w *Walker, opt Options) walkResult {
	res := walkResult{relaxed: opt.Relaxed}
	for {
		it, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			res.err = err
			break
		}
		c := *it
		if c.Unkept {
			res.unkept++
		}
		c.Body, c.Libxc, c.Pages, c.Unkept = nil, nil, nil, false
		c.XL, c.Libxl, c.LibxcImage, c.LibxcDomain = nil, nil, nil, nil
		res.items = append(res.items, c)
	}
	res.sum, res.skipped = w.Summary(), w.SkippedBytes()
	return res
}

// fourWays walks in as a stream, and with SkipPages as a stream, from a
// *bytes.Reader and from a regular file.
func fourWays(t *testing.T, in []byte, opt Options) (str, skipStr, mem, file walkResult) {
	t.Helper()
	str = walkWith(streamOnly{bytes.NewReader(in)}, opt)
	opt.SkipPages = true
	skipStr = walkWith(streamOnly{bytes.NewReader(in)}, opt)
	mem = walkWith(bytes.NewReader(in), opt)
	path := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(path, in, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file = walkWith(f, opt)
	return str, skipStr, mem, file
}

// sameVerdict fails t unless the skipping walk saw what the plain walk
// saw: the same items, the same error (text and every FormatError field),
// and the same summary but for the page contents it did not read (or, from
// a stream, read and counted without keeping: counted).
func sameVerdict(t *testing.T, what string, str, skip walkResult, counted bool) {
	t.Helper()
	if (str.err == nil) != (skip.err == nil) || (str.err != nil && str.err.Error() != skip.err.Error()) {
		t.Fatalf("%s: streaming walk: %v; skipping walk: %v", what, str.err, skip.err)
	}
	var fs, fk *stream.FormatError
	if errors.As(str.err, &fs) != errors.As(skip.err, &fk) || (fs != nil && !reflect.DeepEqual(*fs, *fk)) {
		t.Fatalf("%s: FormatErrors differ:\nstream %#v\nskip   %#v", what, fs, fk)
	}
	if !reflect.DeepEqual(str.items, skip.items) {
		t.Fatalf("%s: items differ: %d streaming, %d skipping", what, len(str.items), len(skip.items))
	}
	a, b := str.sum, skip.sum
	switch {
	case skip.err != nil:
	case skip.relaxed:
		// A relaxed walk hands out a PAGE_DATA record that does not
		// decode as *libxc.Raw: its window was kept out, but it has no
		// page statistics.
	case counted && (b.Pages.Unread != 0 || b.Pages.ZeroPages != a.Pages.ZeroPages || b.Pages.DataPages*libxc.PageSize != skip.skipped):
		t.Errorf("%s: from a stream: %d unread, %d zero pages (want 0 and %d), %d bytes kept out for %d data pages", what, b.Pages.Unread, b.Pages.ZeroPages, a.Pages.ZeroPages, skip.skipped, b.Pages.DataPages)
	case !counted && b.Pages.Unread*libxc.PageSize != skip.skipped:
		t.Errorf("%s: %d unread pages but %d bytes not read", what, b.Pages.Unread, skip.skipped)
	}
	a.Pages.ZeroPages, a.Pages.Unread = 0, 0
	b.Pages.ZeroPages, b.Pages.Unread = 0, 0
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s: summaries differ:\nstream %+v\nskip   %+v", what, a, b)
	}
}

// TestSkipPagesSameWalk: on every valid fixture, a walk that keeps the page
// contents out of its buffers sees the items and summary of a walk that
// keeps them, and passes over exactly the data pages (from a file, not
// reading them; from a stream, reading and counting them).
func TestSkipPagesSameWalk(t *testing.T) {
	for _, f := range validFixtures {
		t.Run(f.name, func(t *testing.T) {
			in := fixture(t, f.name)
			opt := Options{Checkpointed: f.checkpoints > 0}
			str, skipStr, mem, file := fourWays(t, in, opt)
			if str.err != nil {
				t.Fatal(str.err)
			}
			sameVerdict(t, "stream", str, skipStr, true)
			sameVerdict(t, "bytes.Reader", str, mem, false)
			sameVerdict(t, "file", str, file, false)
			p := file.sum.Pages
			if p.DataPages == 0 || p.Unread != p.DataPages || p.ZeroPages != 0 || str.sum.Pages.Unread != 0 {
				t.Fatalf("pages: streaming %+v, skipping %+v", str.sum.Pages, p)
			}
			if str.unkept != 0 || skipStr.unkept == 0 || file.unkept != skipStr.unkept {
				t.Fatalf("items marked Unkept: %d plain, %d stream, %d file", str.unkept, skipStr.unkept, file.unkept)
			}
			t.Logf("%d bytes, %d data pages: %d bytes not read", len(in), p.DataPages, file.skipped)
		})
	}
}

// pageRecords returns the PAGE_DATA records of in, in order.
func pageRecords(t *testing.T, in []byte) []Item {
	t.Helper()
	var recs []Item
	_, err := Walk(bytes.NewReader(in), Options{}, func(it *Item) error {
		if it.Layer == libxc.Layer && it.Type == uint32(libxc.TypePageData) {
			c := *it
			c.Body, c.Libxc, c.Pages = nil, nil, ptr(*it.Pages)
			recs = append(recs, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestSkipPagesSameErrors breaks records around a PAGE_DATA record whose
// page contents a skipping walk passes over: the record after it, the
// record itself, and truncations everywhere. Streaming and skipping (from
// memory and from a file) must fail at the same place with the same typed
// error, or both pass.
func TestSkipPagesSameErrors(t *testing.T) {
	for _, name := range []string{"guest3-pvh.xl", "guest1-pv.xl"} {
		in := fixture(t, name)
		recs := pageRecords(t, in)
		// A: a PAGE_DATA record with data followed by another PAGE_DATA
		// record (B), so that B's head comes right after skipped bytes.
		a, b := adjacentPageRecords(t, name, recs, 1)
		le := binary.LittleEndian
		count := int64(le.Uint32(in[a.Offset+8:]))
		payload := a.Offset + 16 + 8*count // A's page contents start here
		mut := func(f func(b []byte)) []byte {
			c := append([]byte(nil), in...)
			f(c)
			return c
		}
		cases := []struct {
			name string
			in   []byte
			want error // nil: the image stays valid
		}{
			{"B type unknown", mut(func(c []byte) { c[b.Offset] = 0x40 }), stream.ErrUnknownType},
			{"B length past the cap", mut(func(c []byte) { le.PutUint32(c[b.Offset+4:], 0xfffffff0) }), stream.ErrTooLarge},
			{"B length one more", mut(func(c []byte) { c[b.Offset+4]++ }), errAny}, // ErrLength or ErrPadding: whichever the bytes after give
			{"B count one more", mut(func(c []byte) { c[b.Offset+8]++ }), stream.ErrLength},
			{"B reserved", mut(func(c []byte) { c[b.Offset+12] = 1 }), stream.ErrReserved},
			{"B pfn reserved bits", mut(func(c []byte) { c[b.Offset+16+6] |= 0x80 }), stream.ErrReserved},
			{"B pfn reserved type", mut(func(c []byte) { c[b.Offset+16+7] = 0x50 }), stream.ErrValue},
			{"A count one less", mut(func(c []byte) { le.PutUint32(c[a.Offset+8:], uint32(count-1)) }), stream.ErrLength},
			{"A length a page less", mut(func(c []byte) { le.PutUint32(c[a.Offset+4:], le.Uint32(c[a.Offset+4:])-libxc.PageSize) }), stream.ErrLength},
			{"A length a page more", mut(func(c []byte) { le.PutUint32(c[a.Offset+4:], le.Uint32(c[a.Offset+4:])+libxc.PageSize) }), stream.ErrLength},
			{"A last entry without data", mut(func(c []byte) {
				e := payload - 8
				c[e+7] = c[e+7]&0x0f | uint8(libxc.PageXTab)<<4
			}), stream.ErrLength},
			{"A page contents changed", mut(func(c []byte) { c[payload+100] ^= 0xff }), nil},
			{"cut in A's PFN list", in[:a.Offset+20], stream.ErrTruncated},
			{"cut at A's page contents", in[:payload], stream.ErrTruncated},
			{"cut in A's page contents", in[:payload+5000], stream.ErrTruncated},
			{"cut a byte short of B", in[:b.Offset-1], stream.ErrTruncated},
			{"cut in B's header", in[:b.Offset+4], stream.ErrTruncated},
			{"cut at B", in[:b.Offset], libxc.ErrNoEnd},
			{"cut a byte short of the end", in[:len(in)-1], stream.ErrTruncated},
		}
		for _, c := range cases {
			what := name + ": " + c.name
			str, skipStr, mem, file := fourWays(t, c.in, Options{})
			if c.want == nil && str.err != nil || c.want == errAny && str.err == nil || c.want != nil && c.want != errAny && !errors.Is(str.err, c.want) {
				t.Errorf("%s: streaming walk: %v, want %v", what, str.err, c.want)
				continue
			}
			sameVerdict(t, what+" (stream)", str, skipStr, true)
			sameVerdict(t, what+" (bytes.Reader)", str, mem, false)
			sameVerdict(t, what+" (file)", str, file, false)
			if c.in[a.Offset+4] == in[a.Offset+4] && c.in[a.Offset+8] == in[a.Offset+8] && int64(len(c.in)) >= a.Offset+a.Size && file.skipped == 0 {
				t.Errorf("%s: the skipping walk read A's page contents", what)
			}
		}
	}
}

// errAny stands for any error in a table of cases.
var errAny = errors.New("any error")

// TestSkipPagesRandomDamage: random byte changes outside page contents and
// random truncations of the PVH fixture get the same verdict and the same
// error streaming and skipping.
func TestSkipPagesRandomDamage(t *testing.T) {
	in := fixture(t, "guest3-pvh.xl")
	// The byte ranges a skipping walk does not read: changing them must
	// not change a verdict, and a test of them tells nothing.
	var holes [][2]int64
	for _, r := range pageRecords(t, in) {
		if r.Pages.DataPages > 0 {
			holes = append(holes, [2]int64{r.Offset + r.Size - r.Pages.DataPages*libxc.PageSize, r.Offset + r.Size})
		}
	}
	inHole := func(off int64) bool {
		for _, h := range holes {
			if off >= h[0] && off < h[1] {
				return true
			}
		}
		return false
	}
	rng := rand.New(rand.NewSource(16))
	n := 150
	if testing.Short() {
		n = 30
	}
	failed := 0
	for i := 0; i < n; i++ {
		c := append([]byte(nil), in...)
		var what string
		if i%3 == 2 {
			cut := rng.Int63n(int64(len(in)))
			c = c[:cut]
			what = "cut at " + strconv.FormatInt(cut, 10)
		} else {
			off := rng.Int63n(int64(len(in)))
			for inHole(off) {
				off = rng.Int63n(int64(len(in)))
			}
			c[off] ^= byte(1 + rng.Intn(255))
			what = "byte " + strconv.FormatInt(off, 10)
		}
		str := walkWith(streamOnly{bytes.NewReader(c)}, Options{})
		mem := walkWith(bytes.NewReader(c), Options{SkipPages: true})
		skipStr := walkWith(streamOnly{bytes.NewReader(c)}, Options{SkipPages: true})
		if str.err != nil {
			failed++
		}
		sameVerdict(t, what, str, mem, false)
		sameVerdict(t, what+" (stream)", str, skipStr, true)
	}
	t.Logf("%d damaged images, %d refused, same verdicts", n, failed)
}

// FuzzSkipPages: on any input, keeping page contents out of the buffers
// (from memory, and from a stream) gives the verdict, items, error and
// summary of a plain walk.
func FuzzSkipPages(f *testing.F) {
	f.Add(smallImage(f, 0), false)
	f.Add(smallImage(f, 1), true)
	img := smallImage(f, 2)
	f.Add(img[:len(img)-20], false)
	f.Fuzz(func(t *testing.T, in []byte, relaxed bool) {
		opt := Options{Relaxed: relaxed, Checkpointed: true, MaxRecordSize: 1 << 20}
		str := walkWith(streamOnly{bytes.NewReader(in)}, opt)
		opt.SkipPages = true
		mem := walkWith(bytes.NewReader(in), opt)
		skipStr := walkWith(streamOnly{bytes.NewReader(in)}, opt)
		sameVerdict(t, "bytes.Reader", str, mem, false)
		sameVerdict(t, "stream", str, skipStr, true)
	})
}

// shortReads hands out what it holds, and then blocks (as a live stream
// whose sender waits for an answer) instead of reporting the end.
type shortReads struct {
	b     []byte
	block chan struct{}
}

func (s *shortReads) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		<-s.block
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// TestSkipPagesReadsNoFurther: from a stream, SkipPages waits for no byte
// the walker would not read: a stream that stops right after the libxc
// END record (8 bytes, less than a PAGE_DATA head) still yields END.
func TestSkipPagesReadsNoFurther(t *testing.T) {
	img := smallImage(t, 0)
	var endAt int64 = -1
	Walk(bytes.NewReader(img), Options{}, func(it *Item) error {
		if it.Layer == libxc.Layer && it.Kind == KindRecord && it.Type == uint32(libxc.TypeEnd) {
			endAt = it.Offset + it.Size
		}
		return nil
	})
	if endAt < 0 {
		t.Fatal("no libxc END")
	}
	in := &shortReads{b: img[:endAt], block: make(chan struct{})}
	defer close(in.block)
	w := NewWalker(in, Options{SkipPages: true})
	got := make(chan bool, 1)
	go func() {
		for {
			it, err := w.Next()
			if err != nil {
				got <- false
				return
			}
			if it.Layer == libxc.Layer && it.Kind == KindRecord && it.Type == uint32(libxc.TypeEnd) {
				got <- true
				return
			}
		}
	}()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("walk failed before the libxc END")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the walk waited for bytes after the libxc END record")
	}
}

// adjacentPageRecords returns the first PAGE_DATA record of recs with at
// least minData data pages that another PAGE_DATA record (returned second)
// follows directly; it fails t when fixture name has none.
func adjacentPageRecords(t *testing.T, name string, recs []Item, minData int64) (a, b Item) {
	t.Helper()
	for i := 0; i+1 < len(recs); i++ {
		if recs[i].Pages.DataPages >= minData && recs[i+1].Offset == recs[i].Offset+recs[i].Size {
			return recs[i], recs[i+1]
		}
	}
	t.Fatalf("%s: no PAGE_DATA record with data followed by another", name)
	return
}
