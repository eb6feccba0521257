package pack

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// byteSource hands out the fuzzer's bytes as choices (zero once they are
// used up), so any input names one valid stream.
type byteSource struct{ b []byte }

func (s *byteSource) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *byteSource) take(n int) []byte {
	k := min(n, len(s.b))
	out := s.b[:k]
	s.b = s.b[k:]
	return out
}

// nearLimits are record body sizes around the skeleton's limits that a
// fuzz run can afford (the larger limits are TestLargeRecords').
var nearLimits = []int{skelFlush - 8, skelFlush, skelFlush + 8, skelFlush + pageSize, 2*skelFlush + 16}

// streamFrom builds a valid bare libxc stream (HVM) from the fuzzer's
// bytes with libxc.Writer: checkpoint rounds of PAGE_DATA records (zero,
// repeated and arbitrary pages, page-table and code pages, XTAB entries,
// PFNs in any order), HVM_CONTEXT records of any size and, when chosen,
// records and PFN lists near the skeleton's size limits. It reports
// whether the stream is checkpointed and the window to pack it with.
func streamFrom(data []byte) (img []byte, checkpointed bool, window int) {
	s := &byteSource{data}
	var b bytes.Buffer
	w := newHVMWriter(&b)
	rounds := 1 + int(s.next()%3)
	window = 1 + int(s.next()%8)
	for r := 0; r < rounds; r++ {
		if r > 0 {
			w.WriteRecord(&libxc.Checkpoint{})
		}
		for k := int(s.next() % 5); k > 0; k-- {
			switch c := s.next(); {
			case c < 200: // ordinary PAGE_DATA
				p := &libxc.PageData{}
				for i := 1 + int(s.next()%40); i > 0; i-- {
					typ := libxc.PageNormal
					if s.next()%4 == 0 {
						typ = libxc.PageXTab
					}
					p.Entries = append(p.Entries, libxc.PFNEntry(uint64(s.next())|uint64(s.next()%4)<<8, typ))
					if !typ.HasData() {
						continue
					}
					page := make([]byte, pageSize)
					switch s.next() % 5 {
					case 1:
						page[0] = s.next() % 3 // few values: duplicates
					case 2:
						copy(page, s.take(int(s.next())))
					case 3:
						for i := 0; i+8 <= pageSize; i += 8 { // a page table
							page[i], page[i+1] = byte(i), s.next()%2
						}
					case 4:
						for i := 0; i+5 <= pageSize; i += 37 { // code: calls
							page[i], page[i+1], page[i+4] = 0xe8, s.next(), 0xff
						}
					}
					p.Data = append(p.Data, page...)
				}
				w.WriteRecord(p)
			case c < 230: // a record near a limit
				n := nearLimits[int(s.next())%len(nearLimits)]
				if c%2 == 0 {
					data := make([]byte, n)
					copy(data, s.take(64))
					w.WriteRecord(&libxc.HVMContext{Data: data})
				} else { // a PFN list of XTAB entries: body 8 + 8*count
					p := &libxc.PageData{Entries: make([]uint64, (n-8)/8)}
					for i := range p.Entries {
						p.Entries[i] = libxc.PFNEntry(uint64(i), libxc.PageXTab)
					}
					w.WriteRecord(p)
				}
			default: // HVM_CONTEXT holds at least one byte
				w.WriteRecord(&libxc.HVMContext{Data: append([]byte{s.next()}, s.take(int(s.next()))...)})
			}
		}
		w.WriteRecord(&libxc.HVMContext{Data: []byte{byte(r)}})
	}
	w.Close()
	return b.Bytes(), rounds > 1, window
}

// FuzzRoundTrip: pack then unpack reproduces any valid stream the
// fuzzer's bytes name, records near the skeleton's size limits included,
// and Open and NonPage read the packed file.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 3, 4, 0, 10, 0, 1, 0, 2, 5, 1, 2, 3, 4, 5})
	for i := range nearLimits {
		f.Add([]byte{0, 0, 2, 200, byte(i), 201, byte(i)})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, ckpt, window := streamFrom(data)
		opt := Options{Image: image.Options{Format: image.FormatLibxc, Checkpointed: ckpt}, Window: window}
		var packed bytes.Buffer
		if _, err := Pack(&packed, bytes.NewReader(img), opt); err != nil {
			t.Fatalf("Pack of a valid stream: %v", err)
		}
		var out bytes.Buffer
		if err := Unpack(&out, bytes.NewReader(packed.Bytes())); err != nil {
			t.Fatalf("Unpack: %v", err)
		}
		if !bytes.Equal(out.Bytes(), img) {
			t.Fatalf("round trip differs: %d bytes, want %d", out.Len(), len(img))
		}
		pf, err := Open(bytes.NewReader(packed.Bytes()), int64(packed.Len()))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := pf.NonPage(io.Discard); err != nil {
			t.Fatalf("NonPage: %v", err)
		}
	})
}

// TestWriteFuzzCorpus (re)writes the seed corpus of FuzzUnpack in
// testdata/fuzz from the small real fixtures (packed) and the forged files
// of the limit tests, when XENSR_WRITE_CORPUS=1. Without it, it checks the
// corpus is there.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzUnpack")
	if os.Getenv("XENSR_WRITE_CORPUS") != "1" {
		if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) == 0 {
			t.Fatalf("no seed corpus in %s (XENSR_WRITE_CORPUS=1 writes it)", dir)
		}
		return
	}
	seeds := map[string][]byte{}
	fx := fixtures(t)
	for _, name := range []string{"guest1-pv-migrate-failed.xl.zst", "synthetic-pvh-checkpointed.libxl.zst"} {
		var packed bytes.Buffer
		opt := Options{}
		opt.Image.Checkpointed = name == "synthetic-pvh-checkpointed.libxl.zst"
		img := fx[name]
		if name == "guest1-pv-migrate-failed.xl.zst" {
			// The failed migration stops at a record boundary: end its
			// libxc and libxl streams (END records are 8 zero bytes).
			// It lacks the vCPU records, so it is walked relaxed.
			img = append(bytes.Clone(img), make([]byte, 16)...)
			opt.Image.Relaxed = true
		}
		if _, err := Pack(&packed, bytes.NewReader(img), opt); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		seeds["fixture-"+name[:len(name)-4]] = packed.Bytes()
	}
	seeds["window-past-limit"] = forge(t, MaxWindow+1, forgedBlock{kindSkeleton, skel(nil).op(opLiteral, 1)[:5]}, forgedBlock{kindIndex, zeroIndex(0)})
	seeds["zero-run-bomb"] = forge(t, 1, forgedBlock{kindSkeleton, skel(nil).op(runZero, 1<<26)}, forgedBlock{kindIndex, zeroIndex(0)})
	seeds["run-past-pfns"] = forge(t, 1, forgedBlock{kindSkeleton, skel(nil).words(10).op(runZero, 11)}, forgedBlock{kindIndex, zeroIndex(11)})
	seeds["index-bomb"] = forge(t, 1, forgedBlock{kindSkeleton, skel(nil).words(10).op(runZero, 10)}, forgedBlock{kindIndex, zeroIndex(100000)})
	write(t, dir, seeds)
	// FuzzRoundTrip's seeds: streams with records around the skeleton's
	// limits, of both kinds, over checkpoint rounds.
	rt := map[string][]byte{}
	for i, n := range nearLimits {
		rt[fmt.Sprintf("near-limit-%d", n)] = []byte{byte(i % 3), 0, 2, 200, byte(i), 201, byte(i), 2, 0, 2, 5, 1, 2, 3}
	}
	write(t, filepath.Join("testdata", "fuzz", "FuzzRoundTrip"), rt)
}

// write stores seeds as corpus files of the go fuzzing engine in dir.
func write(t *testing.T, dir string, seeds map[string][]byte) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
