package pack

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
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

func fixtures(t *testing.T) map[string][]byte {
	files, _ := filepath.Glob("../testdata/*.zst")
	if len(files) == 0 {
		t.Fatal("no fixtures in stream/testdata")
	}
	dec, _ := zstd.NewReader(nil)
	out := map[string][]byte{}
	for _, f := range files {
		c, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dec.DecodeAll(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// TestRealFixtures packs the trimmed real Xen 4.17 images and checks the
// round trip and random access to every page.
func TestRealFixtures(t *testing.T) {
	for name, img := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			opt := Options{}
			if bytes.Contains([]byte(name), []byte("checkpointed")) {
				opt.Image.Checkpointed = true
			}
			if bytes.Contains([]byte(name), []byte("failed")) {
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
	if len(want) != len(f.pages) {
		t.Fatalf("index has %d (round, pfn) pairs, image %d", len(f.pages), len(want))
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

// genImage draws a bare libxc stream with zero, duplicate and unique pages
// over several checkpoint rounds.
func genImage(t *rapid.T) ([]byte, bool) {
	var b bytes.Buffer
	w := libxc.NewWriter(&b)
	w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: 12})
	w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{Leaf: 1}}})
	w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{Index: 1}}})
	w.WriteRecord(&libxc.StaticDataEnd{})
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
					switch rapid.IntRange(0, 2).Draw(t, "content") {
					case 1:
						page[0] = byte(rapid.IntRange(1, 3).Draw(t, "dup")) // few values: duplicates
					case 2:
						copy(page, rapid.SliceOfN(rapid.Byte(), 1, 64).Draw(t, "unique"))
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

func TestRapidRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		img, ckpt := genImage(rt)
		opt := Options{Image: image.Options{Format: image.FormatLibxc, Checkpointed: ckpt}}
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

func FuzzUnpack(f *testing.F) {
	var packed bytes.Buffer
	b := bytes.NewBuffer(nil)
	w := libxc.NewWriter(b)
	w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: 12})
	w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{}}})
	w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{}}})
	w.WriteRecord(&libxc.StaticDataEnd{})
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
