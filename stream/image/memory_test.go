package image

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/internal/memtest"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// TestMemoryBound checks the package doc's bound with forged sizes: the
// walker adds nothing per record to what the layers' readers hold, so a
// PAGE_DATA at the cap costs what it costs package libxc (less than three
// caps), and one just past the cap fails before its body is allocated.
func TestMemoryBound(t *testing.T) {
	const limit = 8 << 20
	build := func(entries int) []byte {
		var b bytes.Buffer
		w := libxc.NewWriter(&b)
		w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: libxc.PageShift, XenMajor: 4, XenMinor: 17})
		w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{Leaf: 1}}})
		w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{Index: 0xce}}})
		w.WriteRecord(&libxc.StaticDataEnd{})
		p := &libxc.PageData{Entries: make([]uint64, entries)}
		for i := range p.Entries {
			p.Entries[i] = libxc.PFNEntry(uint64(i), libxc.PageXTab)
		}
		w.WriteRecord(p)
		w.WriteRecord(&libxc.HVMContext{Data: []byte{1}})
		w.Close()
		return b.Bytes()
	}
	measure := func(in []byte) (uint64, error) {
		return memtest.AllocatedErr(func() error {
			_, err := Walk(bytes.NewReader(in), Options{MaxRecordSize: limit}, nil)
			return err
		})
	}
	d, err := measure(build((limit - 8) / 8))
	t.Logf("PAGE_DATA at an 8 MiB cap: %.1f MiB", float64(d)/(1<<20))
	if err != nil || d >= 3*limit+(1<<20) {
		t.Errorf("at the cap: %v, allocated %d MiB, want < %d MiB", err, d>>20, (3*limit+(1<<20))>>20)
	}
	if d, err := measure(build((limit-8)/8 + 1)); !errors.Is(err, stream.ErrTooLarge) || d > 128<<10 {
		t.Errorf("past the cap: %v, allocated %d bytes", err, d)
	}
}
