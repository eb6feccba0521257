package liveupdate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// domainStream writes a small valid HVM libxc stream whose pages carry seed.
func domainStream(t testing.TB, seed byte, pages int) []byte {
	var b bytes.Buffer
	w := libxc.NewWriter(&b)
	w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: libxc.PageShift, XenMajor: 4, XenMinor: 17})
	w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{Leaf: 1}}})
	w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{Index: 0xce}}})
	w.WriteRecord(&libxc.StaticDataEnd{})
	p := &libxc.PageData{Data: bytes.Repeat([]byte{seed}, pages*libxc.PageSize)}
	for i := 0; i < pages; i++ {
		p.Entries = append(p.Entries, libxc.PFNEntry(uint64(i), libxc.PageNormal))
	}
	w.WriteRecord(p)
	w.WriteRecord(&libxc.HVMContext{Data: []byte{seed}})
	w.Close()
	return b.Bytes()
}

// scattered lays data out over random distinct MFNs of a RAM image, away
// from the bootmem region and the MFN array.
func scattered(t testing.TB, data []byte, rng *rand.Rand) ([]byte, Region) {
	const ramPages = 512
	ram := make([]byte, ramPages*PageSize)
	bootmem := Region{Start: 16 * PageSize, Len: 2 * PageSize}
	arr := uint64(32 * PageSize)
	n := (len(data) + PageSize - 1) / PageSize
	var mfns []uint64
	for _, m := range rng.Perm(ramPages) {
		if len(mfns) == n {
			break
		}
		if m >= 16 && m < 18 || m >= 32 && m < 32+(n*8+PageSize-1)/PageSize {
			continue
		}
		mfns = append(mfns, uint64(m))
	}
	if _, err := Layout(ram, bootmem, arr, mfns, data); err != nil {
		t.Fatal(err)
	}
	return ram, bootmem
}

func TestReassembleDomainsByteIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	doms := [][]byte{domainStream(t, 0xa1, 3), domainStream(t, 0xb2, 5), domainStream(t, 0xc3, 1)}
	data := bytes.Join(doms, nil)
	ram, bootmem := scattered(t, data, rng)
	s, err := Open(bytes.NewReader(ram), uint64(len(ram)), bootmem)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s.Reader())
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reassembled %d bytes (want %d), %v", len(got), len(data), err)
	}
	// The per-domain streams decode one after another from the one reader.
	r := s.Reader()
	off := int64(0)
	for i := range doms {
		rd := libxc.NewReaderAt(r, off)
		n := 0
		for {
			_, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("domain %d: %v", i, err)
			}
			n++
		}
		off = rd.Offset()
		if n != 6 {
			t.Fatalf("domain %d: %d records", i, n)
		}
	}
	if off != int64(len(data)) {
		t.Fatalf("streams end at %d of %d", off, len(data))
	}
}

func TestRejectsInconsistencies(t *testing.T) {
	data := domainStream(t, 1, 2)
	good, bootmem := scattered(t, data, rand.New(rand.NewPCG(3, 4)))
	bc := func(ram []byte) Breadcrumb {
		b, _ := ParseBreadcrumb(ram[bootmem.Start:], bootmem.Start)
		return b
	}
	mut := func(f func(ram []byte, b Breadcrumb)) []byte {
		ram := bytes.Clone(good)
		f(ram, bc(ram))
		return ram
	}
	put := func(ram []byte, b Breadcrumb) { copy(ram[bootmem.Start:], b.Append(nil)) }
	setMFN := func(ram []byte, b Breadcrumb, i int, mfn uint64) {
		binary.LittleEndian.PutUint64(ram[b.MFNArray+uint64(i)*8:], mfn)
	}
	for _, tc := range []struct {
		name  string
		ram   []byte
		want  error
		field string
	}{
		{"wrong region", mut(func(ram []byte, b Breadcrumb) { ram[bootmem.Start] = 'Y' }), ErrMagic, "magic"},
		{"version", mut(func(ram []byte, b Breadcrumb) { b.Version = 2; put(ram, b) }), ErrVersion, "version"},
		{"flags", mut(func(ram []byte, b Breadcrumb) { b.Flags = 1; put(ram, b) }), ErrReserved, "flags"},
		{"count mismatch", mut(func(ram []byte, b Breadcrumb) { b.NrPages += 2; put(ram, b) }), ErrCount, "length"},
		{"array outside", mut(func(ram []byte, b Breadcrumb) { b.MFNArray = uint64(len(ram)) - 4; put(ram, b) }), ErrRange, "mfn_array"},
		{"array in bootmem", mut(func(ram []byte, b Breadcrumb) { b.MFNArray = bootmem.Start + 64; put(ram, b) }), ErrOverlap, "mfn_array"},
		{"mfn out of range", mut(func(ram []byte, b Breadcrumb) { setMFN(ram, b, 1, 1<<40) }), ErrRange, "mfn[1]"},
		{"mfn in bootmem", mut(func(ram []byte, b Breadcrumb) { setMFN(ram, b, 0, bootmem.Start/PageSize) }), ErrOverlap, "mfn[0]"},
		{"mfn twice", mut(func(ram []byte, b Breadcrumb) {
			setMFN(ram, b, 1, binary.LittleEndian.Uint64(ram[b.MFNArray:]))
		}), ErrOverlap, "mfn[1]"},
	} {
		_, err := Open(bytes.NewReader(tc.ram), uint64(len(tc.ram)), bootmem)
		var e *stream.FormatError
		if !errors.Is(err, tc.want) || !errors.As(err, &e) || e.Field != tc.field {
			t.Errorf("%s: %v, want %v in %s", tc.name, err, tc.want, tc.field)
		}
	}
	// A memory image cut short inside the last page.
	s, err := Open(bytes.NewReader(good), uint64(len(good)), bootmem)
	if err != nil {
		t.Fatal(err)
	}
	last := s.MFNs[len(s.MFNs)-1] * PageSize
	short := good[:last+10]
	s.ram = bytes.NewReader(short)
	if _, err := io.ReadAll(s.Reader()); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated image: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	data := domainStream(f, 7, 1)
	ram, bootmem := scattered(f, data, rand.New(rand.NewPCG(5, 6)))
	f.Add(ram[bootmem.Start:bootmem.Start+BreadcrumbSize], ram[32*PageSize:32*PageSize+16])
	f.Fuzz(func(t *testing.T, crumb, arr []byte) {
		img := make([]byte, 64*PageSize)
		copy(img[PageSize:], crumb)
		copy(img[8*PageSize:], arr)
		s, err := Open(bytes.NewReader(img), uint64(len(img)), Region{PageSize, PageSize})
		if err != nil {
			return
		}
		b, err := io.ReadAll(s.Reader())
		if err != nil || uint64(len(b)) != s.Breadcrumb.Length {
			t.Fatalf("valid layout read %d of %d bytes: %v", len(b), s.Breadcrumb.Length, err)
		}
	})
}
