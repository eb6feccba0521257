package libxc

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/internal/memtest"
	"github.com/xensr/xensr/stream"
)

// allocated is what fn allocates.
var allocated = memtest.Allocated

// TestMemoryBound checks the package doc's bound with forged sizes at an
// 8 MiB cap: the largest PAGE_DATA (all entries without data) and the
// largest X86_PV_P2M_FRAMES, and records just past the cap.
func TestMemoryBound(t *testing.T) {
	const limit = 8 << 20
	read := func(b []byte) (err error) {
		rd := NewReader(bytes.NewReader(b))
		rd.SetMaxRecordSize(limit)
		for err == nil {
			_, err = rd.Next()
		}
		return err
	}
	// PAGE_DATA at the cap: (cap-8)/8 XTAB entries.
	n := (limit - 8) / 8
	page := &PageData{Entries: make([]uint64, n)}
	for i := range page.Entries {
		page.Entries[i] = PFNEntry(uint64(i), PageXTab)
	}
	hvm := validHVM()
	pages := encode(t, 3, DomainX86HVM, append(hvm[:3:3], append([]Record{page}, hvm[3:]...)...)...)
	// The record buffer (< 2 caps while it grows) and the entries (1 cap).
	d := allocated(func() { read(pages) })
	t.Logf("PAGE_DATA at an 8 MiB cap: %.1f MiB allocated", float64(d)/(1<<20))
	if d >= 3*limit+(1<<20) {
		t.Errorf("PAGE_DATA at the cap: allocated %d MiB, want < %d MiB", d>>20, (3*limit+(1<<20))>>20)
	}
	// X86_PV_P2M_FRAMES at the cap: (cap-8)/8 frames, all naming PFN 0
	// (so the stream stays short); it fails at END, after the checker
	// kept the frame list (1 cap) and its sorted set.
	frames := &X86PVP2MFrames{EndPFN: uint32(n*512 - 1), Frames: make([]uint64, n)}
	pv := validPV()
	pv[4] = frames
	p2m := encode(t, 3, DomainX86PV, pv...)
	var err error
	// Record buffer (< 2 caps), decoded frames (1 cap), frame list (1
	// cap), its sorted clone (1 cap) and states (1/8 cap).
	d = allocated(func() { err = read(p2m) })
	t.Logf("P2M_FRAMES at an 8 MiB cap: %.1f MiB allocated", float64(d)/(1<<20))
	if d >= 5*limit+limit/8+(1<<20) {
		t.Errorf("P2M_FRAMES at the cap: %v, allocated %d MiB, want < %d MiB", err, d>>20, (5*limit+limit/8+(1<<20))>>20)
	}
	// Just past the cap: refused before the body is allocated.
	page.Entries = append(page.Entries, PFNEntry(0, PageXTab))
	past := encode(t, 3, DomainX86HVM, append(hvm[:3:3], page)...)
	if d := allocated(func() { err = read(past) }); !errors.Is(err, stream.ErrTooLarge) || d > 64<<10 {
		t.Errorf("PAGE_DATA past the cap: %v, allocated %d bytes", err, d)
	}
}
