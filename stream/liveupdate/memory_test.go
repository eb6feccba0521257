package liveupdate

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xensr/xensr/internal/memtest"
)

// forged is a memory image of any size computed on the fly: a breadcrumb
// at bootmem, an MFN array naming distinct pages after it, zeros elsewhere.
type forged struct {
	crumb    []byte
	bootmem  uint64
	array    uint64
	nr       uint64
	firstMFN uint64
}

func (f *forged) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		a := uint64(off) + uint64(i)
		switch {
		case a >= f.bootmem && a < f.bootmem+uint64(len(f.crumb)):
			p[i] = f.crumb[a-f.bootmem]
		case a >= f.array && a < f.array+8*f.nr:
			k := (a - f.array) / 8
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], f.firstMFN+k)
			p[i] = w[(a-f.array)%8]
		default:
			p[i] = 0
		}
	}
	return len(p), nil
}

// TestMemoryBound checks the package doc's bound: Open of a breadcrumb with
// MaxPages pages allocates about 24 bytes a page; one page more is refused
// before any allocation.
func TestMemoryBound(t *testing.T) {
	measure := func(nr uint64) (uint64, error) {
		f := &forged{bootmem: PageSize, array: 2 * PageSize, nr: nr}
		f.firstMFN = (f.array+8*nr)/PageSize + 1
		f.crumb = Breadcrumb{Version: Version, NrPages: nr, MFNArray: f.array, Length: nr * PageSize}.Append(nil)
		size := (f.firstMFN + nr) * PageSize
		return memtest.AllocatedErr(func() error {
			_, err := Open(f, size, Region{Start: f.bootmem, Len: PageSize})
			return err
		})
	}
	d, err := measure(MaxPages)
	t.Logf("Open with MaxPages (%d) pages: %.1f MiB", MaxPages, float64(d)/(1<<20))
	if err != nil || d > 24*MaxPages+(1<<20) {
		t.Errorf("MaxPages: %v, allocated %d MiB, want at most %d MiB", err, d>>20, (24*MaxPages+(1<<20))>>20)
	}
	d, err = measure(MaxPages + 1)
	if !errors.Is(err, ErrCount) || d > 64<<10 {
		t.Errorf("MaxPages+1: %v, allocated %d bytes", err, d)
	}
}
