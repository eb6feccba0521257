package migrate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xensr/xensr/hypercall"
)

// fakeDomain is an in-memory HVM domain for the engine's tests.
type fakeDomain struct {
	info     hypercall.DomainInfo
	maxgpfn  uint64
	mem      map[uint64][]byte // populated frames
	params   map[uint32]uint64
	ctx      []byte
	cpuid    []byte
	msr      []byte
	tsc      hypercall.TSCInfo
	logDirty bool
	dirty    *hypercall.DirtyBitmap

	// guest activity: called at every CleanDirty while the domain runs.
	onClean func(f *fakeDomain, call int)
	cleans  int

	suspendErr   error  // Suspend fails with this
	suspendAnywy bool   // ... but the domain suspends anyway
	mapErrPFN    uint64 // MapPages reports an error for this frame (if mapErr)
	mapErr       error
	contiguous   bool // MapPages hands out a contiguousMap, like privcmd
	resumes      int
	destroyed    bool
	maps, unmaps int
}

func newFakeDomain(pages int) *fakeDomain {
	f := &fakeDomain{
		info: hypercall.DomainInfo{Domain: 7, Flags: hypercall.DomainHVM | hypercall.DomainHAP, TotPages: uint64(pages), MaxPages: uint64(pages)},
		mem:  map[uint64][]byte{},
		params: map[uint32]uint64{hypercall.HVMParamStorePFN: 0xfeffc, hypercall.HVMParamConsolePFN: 0xfefff,
			hypercall.HVMParamIdentPT: 0xfeffd000, hypercall.HVMParamCallbackIRQ: 0x123, hypercall.HVMParamStoreEvtchn: 5},
		ctx:     bytes.Repeat([]byte{0xc7}, 2504),
		cpuid:   bytes.Repeat([]byte{0x11}, 24*3),
		msr:     bytes.Repeat([]byte{0x22}, 16*2),
		tsc:     hypercall.TSCInfo{Mode: 0, KHz: 2596141, ElapsedNsec: 24587628242, Incarnation: 1},
		maxgpfn: 0xfefff,
	}
	// RAM below, a hole at 16, special pages at the top, as a real PVH guest.
	for p := uint64(0); p < uint64(pages); p++ {
		if p == 16 {
			continue
		}
		f.setPage(p, byte(p), 0)
	}
	for p := f.maxgpfn - 7; p <= f.maxgpfn; p++ {
		f.setPage(p, 0xee, 0)
	}
	return f
}

// setPage fills frame p with a recognisable pattern (version v) and, like
// real hardware under log-dirty, marks it dirty.
func (f *fakeDomain) setPage(p uint64, seed byte, v uint32) {
	pg := f.mem[p]
	if pg == nil {
		pg = make([]byte, PageSize)
		f.mem[p] = pg
	}
	for i := range pg {
		pg[i] = seed + byte(i)
	}
	binary.LittleEndian.PutUint64(pg, p)
	binary.LittleEndian.PutUint32(pg[8:], v)
	if f.logDirty {
		f.dirty.Set(p)
	}
}

func (f *fakeDomain) Info() (hypercall.DomainInfo, error) { return f.info, nil }
func (f *fakeDomain) MaxGPFN() (uint64, error)            { return f.maxgpfn, nil }

func (f *fakeDomain) Suspend() error {
	if f.suspendErr != nil {
		if f.suspendAnywy {
			f.setShutdown(hypercall.ShutdownSuspend)
		}
		return f.suspendErr
	}
	f.setShutdown(hypercall.ShutdownSuspend)
	return nil
}

// setShutdown marks the domain shut down for reason, as Xen's domain info
// flags carry it.
func (f *fakeDomain) setShutdown(reason uint32) {
	f.info.Flags = f.info.Flags&^(0xff<<16) | hypercall.DomainShutdown | reason<<16
}

// clearShutdown marks the domain running again.
func (f *fakeDomain) clearShutdown() {
	f.info.Flags &^= hypercall.DomainShutdown | 0xff<<16
}

func (f *fakeDomain) Resume() error {
	if !f.info.Suspended() {
		return errors.New("fake: resume of a domain that is not suspended")
	}
	f.clearShutdown()
	f.resumes++
	return nil
}

func (f *fakeDomain) EnableLogDirty() error {
	f.logDirty = true
	f.dirty = hypercall.NewDirtyBitmap(f.maxgpfn + 1)
	return nil
}

func (f *fakeDomain) DisableLogDirty() error { f.logDirty = false; return nil }

func (f *fakeDomain) CleanDirty(bm *hypercall.DirtyBitmap) (uint64, error) {
	if !f.logDirty {
		return 0, errors.New("fake: log-dirty is off")
	}
	if !f.info.Suspended() && f.onClean != nil {
		f.onClean(f, f.cleans)
	}
	f.cleans++
	copy(bm.Words, f.dirty.Words)
	n := uint64(f.dirty.Count())
	f.dirty.Clear()
	return n, nil
}

func (f *fakeDomain) PageTypes(pfns []uint64, types []uint32) error {
	for i, p := range pfns {
		if f.mem[p] == nil {
			types[i] = hypercall.PageTypeXTab
		} else {
			types[i] = hypercall.PageTypeNone
		}
	}
	return nil
}

type fakeMap struct {
	f     *fakeDomain
	pages [][]byte
	errs  []error
}

func (m *fakeMap) Page(i int) ([]byte, error) { return m.pages[i], m.errs[i] }
func (m *fakeMap) Unmap() error               { m.f.unmaps++; return nil }

func (f *fakeDomain) MapPages(pfns []uint64) (PageMap, error) {
	f.maps++
	m := &fakeMap{f: f, pages: make([][]byte, len(pfns)), errs: make([]error, len(pfns))}
	for i, p := range pfns {
		if f.mapErr != nil && p == f.mapErrPFN {
			m.errs[i] = f.mapErr
			continue
		}
		pg := f.mem[p]
		if pg == nil {
			m.errs[i] = fmt.Errorf("fake: pfn %#x not populated", p)
			continue
		}
		m.pages[i] = pg
	}
	if f.contiguous {
		c := &fakeContig{fakeMap: m, mem: make([]byte, 0, len(pfns)*PageSize)}
		for i, pg := range m.pages {
			if pg == nil {
				pg = make([]byte, PageSize) // an unmapped hole in a real mapping
			}
			c.mem = append(c.mem, pg...)
			m.pages[i] = c.mem[i*PageSize : (i+1)*PageSize]
		}
		return c, nil
	}
	return m, nil
}

// fakeContig is a fakeMap whose pages lie in one slice.
type fakeContig struct {
	*fakeMap
	mem []byte
}

func (c *fakeContig) Contiguous() []byte { return c.mem }

func (f *fakeDomain) HVMContext() ([]byte, error)         { return f.ctx, nil }
func (f *fakeDomain) HVMParam(idx uint32) (uint64, error) { return f.params[idx], nil }
func (f *fakeDomain) CPUPolicy() ([]byte, []byte, error)  { return f.cpuid, f.msr, nil }
func (f *fakeDomain) TSCInfo() (hypercall.TSCInfo, error) { return f.tsc, nil }
func (f *fakeDomain) Destroy() error                      { f.destroyed = true; return nil }
