package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/xensr/xensr/internal/fixture"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"pgregory.net/rapid"
)

func roundTrip(t testing.TB, img []byte, opt Options) ([]byte, Stats) {
	t.Helper()
	var packed bytes.Buffer
	st, err := Pack(&packed, bytes.NewReader(img), opt)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Unpack(&out, bytes.NewReader(packed.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), img) {
		t.Fatalf("unpack(pack(x)) differs: %d bytes vs %d", out.Len(), len(img))
	}
	if st.InBytes != int64(len(img)) || st.OutBytes != int64(packed.Len()) {
		t.Fatalf("stats %+v for %d -> %d bytes", st, len(img), packed.Len())
	}
	return packed.Bytes(), st
}

// fixtures returns a copy of every image in stream/testdata, by file name
// (NAME.zst).
func fixtures(t *testing.T) map[string][]byte {
	dir, err := fixture.Dir()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.zst"))
	if len(files) == 0 {
		t.Fatal("no fixtures in stream/testdata")
	}
	out := map[string][]byte{}
	for _, f := range files {
		name := filepath.Base(f)
		out[name] = bytes.Clone(fixture.Load(t, strings.TrimSuffix(name, ".zst")))
	}
	return out
}

// fixtureOptions returns the Options fixture name packs with and whether
// it is a whole image (the "failed" fixtures are streams cut short).
func fixtureOptions(name string) (opt Options, whole bool) {
	opt.Image.Checkpointed = strings.Contains(name, "checkpointed")
	return opt, !strings.Contains(name, "failed")
}

// TestRealFixtures packs the trimmed real Xen 4.17 images and checks the
// round trip and random access to every page.
func TestRealFixtures(t *testing.T) {
	for name, img := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			opt, whole := fixtureOptions(name)
			if !whole {
				if _, err := Pack(io.Discard, bytes.NewReader(img), opt); err == nil {
					t.Fatal("a truncated stream packed without error")
				}
				return
			}
			packed, st := roundTrip(t, img, opt)
			f, err := Open(bytes.NewReader(packed), int64(len(packed)))
			if err != nil {
				t.Fatal(err)
			}
			checkPages(t, img, opt, f)
			t.Logf("%s: %d -> %d bytes, %d pages (%d zero, %d duplicate, %d unique)", name, st.InBytes, st.OutBytes, st.Pages, st.ZeroPages, st.DupPages, st.UniquePages)
		})
	}
}

// checkPages compares File.Page with every page of the image (last copy of
// each PFN per round).
func checkPages(t *testing.T, img []byte, opt Options, f *File) {
	want := map[[2]uint64][]byte{}
	_, err := image.Walk(bytes.NewReader(img), opt.Image, func(it *image.Item) error {
		if pd, ok := it.Libxc.(*libxc.PageData); ok {
			pd.Pages(func(_ int, pfn uint64, _ libxc.PageType, d []byte) bool {
				if d != nil {
					want[[2]uint64{uint64(it.Round), pfn}] = bytes.Clone(d)
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.once.Do(f.buildTable)
	if len(want) != len(f.table) {
		t.Fatalf("index has %d (round, pfn) pairs, image %d", len(f.table), len(want))
	}
	// Pages lists exactly those pairs, in round then PFN order, and says
	// which are zero pages.
	n, last := 0, PageRef{Round: -1}
	for ref := range f.Pages() {
		d, ok := want[[2]uint64{uint64(ref.Round), ref.PFN}]
		if !ok {
			t.Fatalf("Pages lists round %d pfn %#x, which the image does not hold", ref.Round, ref.PFN)
		}
		if ref.Zero != !slices.ContainsFunc(d, func(b byte) bool { return b != 0 }) {
			t.Fatalf("Pages: round %d pfn %#x zero=%v", ref.Round, ref.PFN, ref.Zero)
		}
		if ref.Round < last.Round || ref.Round == last.Round && ref.PFN <= last.PFN {
			t.Fatalf("Pages out of order: %+v after %+v", ref, last)
		}
		last = ref
		n++
	}
	if n != len(want) {
		t.Fatalf("Pages listed %d pages, the image holds %d", n, len(want))
	}
	for k, d := range want {
		got, err := f.Page(int(k[0]), k[1])
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("Page(%d, %#x): %v", k[0], k[1], err)
		}
	}
	if _, err := f.Page(0, 1<<50); !errors.Is(err, ErrNoPage) {
		t.Fatalf("missing page: %v", err)
	}
	var np bytes.Buffer
	if err := f.NonPage(&np); err != nil || np.Len() == 0 {
		t.Fatalf("NonPage: %d bytes, %v", np.Len(), err)
	}
}

// TestFullImages packs the full lab images when XENSR_IMAGES names them.
func TestFullImages(t *testing.T) {
	dir := os.Getenv("XENSR_IMAGES")
	if dir == "" {
		t.Skip("SKIP-NEEDS-IMAGES: set XENSR_IMAGES to a folder of full lab images")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.save"))
	for _, fn := range files {
		img, err := os.ReadFile(fn)
		if err != nil {
			t.Fatal(err)
		}
		packed, st := roundTrip(t, img, Options{})
		t.Logf("%s: %d -> %d bytes (%.1f%%), %d pages: %d zero, %d duplicate, %d unique", filepath.Base(fn), len(img), len(packed),
			100*float64(len(packed))/float64(len(img)), st.Pages, st.ZeroPages, st.DupPages, st.UniquePages)
	}
}

// newHVMWriter starts a bare HVM libxc stream in b: headers and the static
// records, ready for PAGE_DATA.
func newHVMWriter(b *bytes.Buffer) *libxc.Writer {
	w := libxc.NewWriter(b)
	w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: 12})
	w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{Leaf: 1}}})
	w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{Index: 1}}})
	w.WriteRecord(&libxc.StaticDataEnd{})
	return w
}

// genImage draws a bare libxc stream with zero, duplicate and unique pages
// over several checkpoint rounds.
func genImage(t *rapid.T) ([]byte, bool) {
	var b bytes.Buffer
	w := newHVMWriter(&b)
	rounds := rapid.IntRange(1, 3).Draw(t, "rounds")
	for r := 0; r < rounds; r++ {
		if r > 0 {
			w.WriteRecord(&libxc.Checkpoint{})
		}
		for k := rapid.IntRange(0, 4).Draw(t, "batches"); k > 0; k-- {
			p := &libxc.PageData{}
			for i := rapid.IntRange(1, 40).Draw(t, "n"); i > 0; i-- {
				typ := rapid.SampledFrom([]libxc.PageType{libxc.PageNormal, libxc.PageNormal, libxc.PageXTab}).Draw(t, "type")
				p.Entries = append(p.Entries, libxc.PFNEntry(rapid.Uint64Range(0, 100).Draw(t, "pfn"), typ))
				if typ.HasData() {
					page := make([]byte, libxc.PageSize)
					switch rapid.IntRange(0, 4).Draw(t, "content") {
					case 1:
						page[0] = byte(rapid.IntRange(1, 3).Draw(t, "dup")) // few values: duplicates
					case 2:
						copy(page, rapid.SliceOfN(rapid.Byte(), 1, 64).Draw(t, "unique"))
					case 3:
						copy(page, genCode(t))
					case 4:
						copy(page, genTable(t))
					}
					p.Data = append(p.Data, page...)
				}
			}
			w.WriteRecord(p)
		}
		w.WriteRecord(&libxc.HVMContext{Data: []byte{byte(r)}})
	}
	w.Close()
	return b.Bytes(), rounds > 1
}

// genCode draws bytes dense in E8/E9 opcodes with operands whose top byte
// is 0x00 or 0xFF: what the branch converter rewrites.
func genCode(t *rapid.T) []byte {
	return rapid.SliceOfN(rapid.SampledFrom([]byte{0xe8, 0xe9, 0, 0xff, 1, 0x0f, 0x80}), 256, pageSize).Draw(t, "code")
}

// genTable draws ascending 64-bit words: what looksLikeTable takes for a
// table.
func genTable(t *rapid.T) []byte {
	v := rapid.Uint64().Draw(t, "base")
	step := rapid.Uint64Range(1, 1<<17).Draw(t, "step")
	var b []byte
	for i := rapid.IntRange(1, pageSize/8).Draw(t, "words"); i > 0; i-- {
		b = binary.LittleEndian.AppendUint64(b, v)
		v += step
	}
	return b
}

// TestRapidTransforms: every transform is undone exactly, for any page and
// position, and the branch converter agrees with a byte-at-a-time model.
func TestRapidTransforms(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		page := make([]byte, pageSize)
		switch rapid.IntRange(0, 2).Draw(rt, "kind") {
		case 0:
			copy(page, rapid.SliceOfN(rapid.Byte(), 0, pageSize).Draw(rt, "bytes"))
		case 1:
			copy(page, genCode(rt))
		case 2:
			copy(page, genTable(rt))
		}
		pos := rapid.Uint32().Draw(rt, "pos") &^ (pageSize - 1)
		x := byte(rapid.IntRange(xformNone, xformTable).Draw(rt, "xform"))
		p := bytes.Clone(page)
		applyXform(x, p, p, pos)
		if x == xformBranch {
			want := bytes.Clone(page)
			branchModel(want, pos)
			if !bytes.Equal(p, want) {
				rt.Fatalf("branch converter differs from the model")
			}
		}
		undoXform(x, p, pos)
		if !bytes.Equal(p, page) {
			rt.Fatalf("transform %d not undone", x)
		}
	})
}

// TestBranchExamples: calls to one target from two places become one byte
// string; operands out of ±16 MiB and operands past the page stay as they
// are.
func TestBranchExamples(t *testing.T) {
	p := make([]byte, pageSize)
	copy(p[0x100:], []byte{0xe8, 0xfb, 0xfe, 0xff, 0xff}) // call -0x105: target 0x0 + pos
	copy(p[0x200:], []byte{0xe8, 0xfb, 0xfd, 0xff, 0xff}) // call -0x205: the same target
	copy(p[0x300:], []byte{0xe9, 0x00, 0x00, 0x00, 0x12}) // top byte 0x12: not a near branch
	copy(p[pageSize-4:], []byte{0xe8, 0x01, 0x00, 0x00})  // operand past the page
	orig := bytes.Clone(p)
	applyXform(xformBranch, p, p, 0x5000)
	if !bytes.Equal(p[0x101:0x105], p[0x201:0x205]) || binary.LittleEndian.Uint32(p[0x101:]) != 0x5000 {
		t.Fatalf("converted operands % x and % x, want both 00 50 00 00", p[0x101:0x105], p[0x201:0x205])
	}
	if !bytes.Equal(p[0x300:0x305], orig[0x300:0x305]) || !bytes.Equal(p[pageSize-4:], orig[pageSize-4:]) {
		t.Fatal("converted an operand it should have left alone")
	}
	undoXform(xformBranch, p, 0x5000)
	if !bytes.Equal(p, orig) {
		t.Fatal("not undone")
	}
}

// branchModel is the branch converter written the plain way.
func branchModel(p []byte, pos uint32) {
	for i := 0; i+5 <= len(p); i++ {
		if p[i] != 0xe8 && p[i] != 0xe9 {
			continue
		}
		if p[i+4] == 0 || p[i+4] == 0xff {
			v := int64(int32(binary.LittleEndian.Uint32(p[i+1:]))) + int64(pos) + int64(i) + 5
			v = v & (1<<25 - 1)
			if v >= 1<<24 {
				v -= 1 << 25
			}
			binary.LittleEndian.PutUint32(p[i+1:], uint32(int32(v)))
		}
		i += 4
	}
}

// TestWindow: a page repeated further back than the window is stored again,
// and Unpack's store lets go of blocks no reference can reach.
func TestWindow(t *testing.T) {
	page := func(b byte) []byte { return bytes.Repeat([]byte{b, 1}, pageSize/2) }
	var img bytes.Buffer
	w := newHVMWriter(&img)
	// A B A C D A: with a window of 2, the second A is a reference, the
	// third (after C and D) is stored anew.
	var data []byte
	for _, c := range []byte("ABACDA") {
		data = append(data, page(c)...)
	}
	w.WriteRecord(&libxc.PageData{Entries: []uint64{1, 2, 3, 4, 5, 6}, Data: data})
	w.WriteRecord(&libxc.HVMContext{Data: []byte{1}})
	w.Close()
	_, st := roundTrip(t, img.Bytes(), Options{Image: image.Options{Format: image.FormatLibxc}, Window: 2})
	if st.UniquePages != 5 || st.DupPages != 1 {
		t.Fatalf("window 2: %d unique, %d duplicate pages; want 5 and 1", st.UniquePages, st.DupPages)
	}
	_, st = roundTrip(t, img.Bytes(), Options{Image: image.Options{Format: image.FormatLibxc}})
	if st.UniquePages != 4 || st.DupPages != 2 {
		t.Fatalf("default window: %d unique, %d duplicate pages; want 4 and 2", st.UniquePages, st.DupPages)
	}

	s := pageStore{window: 1, next: 1}
	for i := 0; i < 5; i++ {
		raw := binary.LittleEndian.AppendUint32(nil, s.next)
		raw = binary.LittleEndian.AppendUint32(raw, pagesPerP)
		raw = append(raw, make([]byte, pagesPerP*(pageSize+1))...)
		if err := s.add(block{kind: kindPages, raw: raw}); err != nil {
			t.Fatal(err)
		}
		if len(s.raw) > 2 {
			t.Fatalf("after %d blocks the store holds %d", i+1, len(s.raw))
		}
	}
	if _, err := s.pages(1, 1); err == nil {
		t.Fatal("page 1 still served after it left the window")
	}
	if _, err := s.pages(s.next-1, 1); err != nil {
		t.Fatal(err)
	}
}

func TestRapidRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		img, ckpt := genImage(rt)
		opt := Options{Image: image.Options{Format: image.FormatLibxc, Checkpointed: ckpt}, Window: rapid.IntRange(1, 8).Draw(rt, "window")}
		var packed bytes.Buffer
		if _, err := Pack(&packed, bytes.NewReader(img), opt); err != nil {
			rt.Fatal(err)
		}
		var out bytes.Buffer
		if err := Unpack(&out, bytes.NewReader(packed.Bytes())); err != nil {
			rt.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), img) {
			rt.Fatalf("round trip differs")
		}
	})
}

func TestCorruption(t *testing.T) {
	img := fixtures(t)["guest3-pvh.xl.zst"]
	packed, _ := roundTrip(t, img, Options{})
	flip := bytes.Clone(packed)
	flip[fileHeader+blockHeader+5] ^= 0x40
	var fe *stream.FormatError
	if err := Unpack(io.Discard, bytes.NewReader(flip)); !errors.Is(err, ErrChecksum) || !errors.As(err, &fe) || fe.Offset != int64(fileHeader) {
		t.Fatalf("flipped byte: %v", err)
	}
	for _, n := range []int{0, 5, len(Magic) + 3, len(packed) / 2, len(packed) - 3} {
		err := Unpack(io.Discard, bytes.NewReader(packed[:n]))
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMagic) {
			t.Fatalf("truncated at %d: %v", n, err)
		}
		if _, err := Open(bytes.NewReader(packed[:n]), int64(n)); err == nil {
			t.Fatalf("Open of a file truncated at %d succeeded", n)
		}
	}
}

// failingWriter fails once left bytes are written, and then closes failed.
type failingWriter struct {
	left   int
	failed chan struct{}
}

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		select {
		case <-w.failed:
		default:
			close(w.failed)
		}
		return n, errDiskFull
	}
	w.left -= len(p)
	return len(p), nil
}

// gatedReader holds back everything after its first n bytes until gate is
// closed (or ten seconds have passed).
type gatedReader struct {
	r    io.Reader
	n    int
	gate chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		select {
		case <-g.gate:
		case <-time.After(10 * time.Second):
		}
	} else if len(p) > g.n {
		p = p[:g.n]
	}
	k, err := g.r.Read(p)
	g.n -= k
	return k, err
}

// TestWriteError: a failing output ends Pack with that error, and Pack stops
// reading its input instead of packing the rest for nothing.
func TestWriteError(t *testing.T) {
	var img bytes.Buffer
	w := newHVMWriter(&img)
	var rec []int
	for r := 0; r < 3; r++ {
		pd := &libxc.PageData{}
		for i := 0; i < pagesPerP; i++ {
			pd.Entries = append(pd.Entries, uint64(r*pagesPerP+i))
			page := make([]byte, pageSize)
			binary.LittleEndian.PutUint64(page, uint64(r*pagesPerP+i+1))
			pd.Data = append(pd.Data, page...)
		}
		w.WriteRecord(pd)
		rec = append(rec, img.Len())
	}
	w.Close()
	in := bytes.NewReader(img.Bytes())
	out := &failingWriter{left: 100, failed: make(chan struct{})}
	// The first record fills a page block, whose write fails; the second is
	// held back until then; the third must never be read.
	_, err := Pack(out, &gatedReader{r: in, n: rec[0], gate: out.failed}, Options{Image: image.Options{Format: image.FormatLibxc}})
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Pack to a failing writer: %v", err)
	}
	if read := img.Len() - in.Len(); read > rec[1]+64<<10 {
		t.Fatalf("Pack read %d bytes, past the second record (ends at %d), after the output failed", read, rec[1])
	}
}

// rewriteBlock returns packed with the first block of the given kind
// replaced by edit(raw), recompressed with a valid CRC (a well-formed file
// that lies), and that block's offset.
func rewriteBlock(t *testing.T, packed []byte, kind byte, edit func(raw []byte) []byte) ([]byte, int64) {
	t.Helper()
	off := fileHeader
	for off < int64(len(packed)) {
		b, err := readBlock(bytes.NewReader(packed[off:]), off)
		if err != nil {
			t.Fatal(err)
		}
		if b.kind != kind {
			off += b.size
			continue
		}
		if err := b.decode(false); err != nil {
			t.Fatal(err)
		}
		enc, _ := zstd.NewWriter(nil)
		comp := enc.EncodeAll(edit(b.raw), nil)
		var h [blockHeader]byte
		h[0] = kind
		binary.LittleEndian.PutUint32(h[1:], uint32(len(edit(bytes.Clone(b.raw)))))
		binary.LittleEndian.PutUint32(h[5:], uint32(len(comp)))
		binary.LittleEndian.PutUint32(h[9:], crc32.Checksum(comp, castagnoli))
		out := append(bytes.Clone(packed[:off]), h[:]...)
		out = append(out, comp...)
		return append(out, packed[off+b.size:]...), off
	}
	t.Fatalf("no block of kind %c", kind)
	return nil, 0
}

// TestLyingBlocks: blocks with valid checksums but impossible contents are
// reported as corrupt at their offset, naming what is wrong.
func TestLyingBlocks(t *testing.T) {
	img := fixtures(t)["guest1-pv.xl.zst"]
	packed, _ := roundTrip(t, img, Options{})
	cases := []struct {
		name string
		kind byte
		edit func(raw []byte) []byte
		want string
	}{
		{"transform code", kindPages, func(raw []byte) []byte { raw[len(raw)-1] = 9; return raw }, "transform 9"},
		{"first id", kindPages, func(raw []byte) []byte { raw[0] = 2; return raw }, "starts at id 2"},
		{"page count", kindPages, func(raw []byte) []byte { return raw[:len(raw)-1] }, "page block of"},
		{"forward reference", kindSkeleton, func(raw []byte) []byte {
			return append(raw, 'D', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'R', 1, 0, 0, 0, 0xff, 0xff, 0, 0)
		}, "before it is made"},
		{"unknown op", kindSkeleton, func(raw []byte) []byte { return append(raw, 'Q', 0, 0, 0, 0) }, "op 0x51"},
	}
	for _, c := range cases {
		bad, off := rewriteBlock(t, packed, c.kind, c.edit)
		err := Unpack(io.Discard, bytes.NewReader(bad))
		var fe *stream.FormatError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &fe) || fe.Offset != off || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrCorrupt at offset %d naming %q", c.name, err, off, c.want)
		}
	}
	bad := bytes.Clone(packed)
	binary.LittleEndian.PutUint32(bad[len(Magic):], 0)
	if err := Unpack(io.Discard, bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "window: packed image corrupt: expected 1 to 262144 pages, got 0") {
		t.Errorf("window 0: %v", err)
	}
}

func FuzzUnpack(f *testing.F) {
	var packed bytes.Buffer
	b := bytes.NewBuffer(nil)
	w := newHVMWriter(b)
	w.WriteRecord(&libxc.PageData{Entries: []uint64{1, 2}, Data: append(make([]byte, 4096), bytes.Repeat([]byte{7}, 4096)...)})
	w.Close()
	Pack(&packed, b, Options{})
	f.Add(packed.Bytes())
	f.Fuzz(func(t *testing.T, p []byte) {
		Unpack(io.Discard, bytes.NewReader(p))
		if fl, err := Open(bytes.NewReader(p), int64(len(p))); err == nil {
			fl.Page(0, 1)
			fl.NonPage(io.Discard)
		}
	})
}

// TestLevelsAndConcurrency: every Level packs to a file that unpacks bit
// for bit, whatever the concurrency; an unknown level is refused before
// anything is written.
func TestLevelsAndConcurrency(t *testing.T) {
	img := fixtures(t)["guest1-pv.xl.zst"]
	for _, lv := range []Level{LevelDefault, LevelFastest, LevelBetter, LevelBest} {
		for _, c := range []int{1, 3} {
			var packed, out bytes.Buffer
			if _, err := Pack(&packed, bytes.NewReader(img), Options{Level: lv, Concurrency: c}); err != nil {
				t.Fatalf("level %d concurrency %d: %v", lv, c, err)
			}
			if err := Unpack(&out, &packed); err != nil || !bytes.Equal(out.Bytes(), img) {
				t.Fatalf("level %d concurrency %d: unpack %v, identical %v", lv, c, err, bytes.Equal(out.Bytes(), img))
			}
		}
	}
	var packed bytes.Buffer
	if _, err := Pack(&packed, bytes.NewReader(img), Options{Level: 99}); err == nil || packed.Len() != 0 {
		t.Fatalf("level 99: %v, %d bytes written", err, packed.Len())
	}
}
