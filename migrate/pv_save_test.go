package migrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

// fakePV is a small 64-bit PV guest on a fake host: its frames live at
// scattered machine frames (fakeDomain.mem is keyed by MFN here, as a PV
// domain's foreign mappings and page types are), with page tables that
// map its linear P2M and some data, a start info page, a GDT frame and
// vCPU 0's state in MFN form, and Xen's M2P.
type fakePV struct {
	*fakeDomain
	npfn       uint64
	types      map[uint64]uint32 // by MFN
	m2p        []byte
	vcpus      [][]byte // contexts by vCPU id (nil: offline)
	shinfoMFN  uint64
	logDirtyNo error // EnableLogDirty fails with this
	suspends   int
	width      int
}

const (
	fpvL4, fpvL3, fpvL2, fpvL1, fpvLeaf = 1, 2, 3, 4, 5 // PFNs of the P2M's page tables and its one leaf
	fpvStartInfo, fpvGDT, fpvData       = 6, 7, 10
	fpvStore, fpvConsole                = 8, 9
	fpvHole                             = 20 // a PFN without memory
	fpvP2MVaddr                         = 0xffffc90000000000
	fpvForeignMFN                       = 0x9999 // an MFN not the guest's
)

// fpvMFN scatters the guest's PFNs over machine frames.
func fpvMFN(pfn uint64) uint64 { return 0x2000 + (63-pfn)*3 }

func pteAt(pg []byte, i int, v uint64) { binary.LittleEndian.PutUint64(pg[i*8:], v) }

func newFakePV() *fakePV {
	f := &fakePV{fakeDomain: newFakeDomain(0), npfn: 64, types: map[uint64]uint32{}, shinfoMFN: 0x9000, width: 8}
	f.info.Flags &^= hypercall.DomainHVM | hypercall.DomainHAP
	f.info.SharedInfoFrame = f.shinfoMFN
	f.info.MaxVCPUID = 1
	f.mem = map[uint64][]byte{}
	for p := uint64(0); p < f.npfn; p++ {
		if p == fpvHole {
			continue
		}
		f.setPage(fpvMFN(p), byte(p), 0)
	}
	for _, p := range []uint64{fpvL4, fpvL3, fpvL2, fpvL1, fpvLeaf} {
		clear(f.mem[fpvMFN(p)])
	}
	// The page tables: vaddr fpvP2MVaddr -> the P2M leaf, and the L1 also
	// maps the data page read-write and keeps a non-present entry with
	// bits that look like a frame (which must pass through untouched).
	l4, l3, l2, l1 := f.mem[fpvMFN(fpvL4)], f.mem[fpvMFN(fpvL3)], f.mem[fpvMFN(fpvL2)], f.mem[fpvMFN(fpvL1)]
	va := uint64(fpvP2MVaddr)
	pteAt(l4, int(va>>39&511), fpvMFN(fpvL3)<<12|0x67)
	pteAt(l3, int(va>>30&511), fpvMFN(fpvL2)<<12|0x67)
	pteAt(l2, int(va>>21&511), fpvMFN(fpvL1)<<12|0x67)
	pteAt(l1, int(va>>12&511), fpvMFN(fpvLeaf)<<12|0x63)
	pteAt(l1, 100, fpvMFN(fpvData)<<12|0x8000000000000067)
	pteAt(l1, 101, 0x1234000) // not present
	// Xen's slots of the L4: present entries naming Xen's frames.
	for i := l4XenFirst; i <= l4XenLast; i++ {
		pteAt(l4, i, fpvForeignMFN<<12|0x63)
	}
	f.types[fpvMFN(fpvL4)] = hypercall.PageTypeL4Tab | hypercall.PageTypePinned
	f.types[fpvMFN(fpvL3)] = hypercall.PageTypeL3Tab
	f.types[fpvMFN(fpvL2)] = hypercall.PageTypeL2Tab
	f.types[fpvMFN(fpvL1)] = hypercall.PageTypeL1Tab
	// The P2M, one page; entries past the guest are invalid.
	leaf := f.mem[fpvMFN(fpvLeaf)]
	for p := uint64(0); p < 512; p++ {
		v := invalidMFN
		if p < f.npfn && p != fpvHole {
			v = fpvMFN(p)
		}
		pteAt(leaf, int(p), v)
	}
	// Start info as a suspended guest leaves it: the rings as PFNs.
	si := f.mem[fpvMFN(fpvStartInfo)]
	pteAt(si[pv.StartInfoStoreMFN:], 0, fpvStore)
	pteAt(si[pv.StartInfoConsoleMFN:], 0, fpvConsole)
	// Shared info (Xen's page).
	sh := make([]byte, PageSize)
	for i := range sh {
		sh[i] = byte(i * 7)
	}
	a := sh[pv.SharedInfoArch64:]
	pteAt(a, 0, f.npfn)
	pteAt(a, 1, 0) // no frame list list
	pteAt(a, 3, fpvMFN(fpvL4)<<12)
	pteAt(a, 4, fpvP2MVaddr)
	pteAt(a, 5, 42)
	f.mem[f.shinfoMFN] = sh
	// M2P: every guest MFN to its PFN, other entries junk.
	f.m2p = bytes.Repeat([]byte{0x55}, 0x10000*8)
	for p := uint64(0); p < f.npfn; p++ {
		pteAt(f.m2p, int(fpvMFN(p)), p)
	}
	// vCPU 0 online in MFN form, vCPU 1 offline.
	c := &pv.Context64{Flags: pv.FlagOnline | pv.FlagInKernel, GDTEnts: 14}
	c.UserRegs.RDX = fpvMFN(fpvStartInfo)
	c.UserRegs.RIP = 0xffffffff81000000
	c.GDTFrames[0] = fpvMFN(fpvGDT)
	c.CtrlReg[3] = fpvMFN(fpvL4) << 12
	c.CtrlReg[1] = fpvMFN(fpvL4)<<12 | 1
	b, _ := pv.Encode(c)
	f.vcpus = [][]byte{b, nil}
	return f
}

func (f *fakePV) GuestWidth() (int, error) { return f.width, nil }
func (f *fakePV) MachToPhys() (*MachToPhys, error) {
	return &MachToPhys{Table: f.m2p, MaxMFN: uint64(len(f.m2p)/8 - 1)}, nil
}
func (f *fakePV) VCPUOnline(v uint32) (bool, error) { return f.vcpus[v] != nil, nil }
func (f *fakePV) VCPUContext(v uint32) ([]byte, error) {
	return append([]byte(nil), f.vcpus[v]...), nil
}
func (f *fakePV) VCPUExtended(v uint32) ([]byte, error) { return bytes.Repeat([]byte{0xe}, 64), nil }
func (f *fakePV) VCPUXSave(v uint32) ([]byte, error)    { return nil, nil }
func (f *fakePV) VCPUMSRs(v uint32) ([]byte, error)     { return bytes.Repeat([]byte{0x4}, 32), nil }
func (f *fakePV) MaxGPFN() (uint64, error) {
	return 0, errors.New("fake: a PV save must not ask for maximum_gpfn")
}
func (f *fakePV) HVMParam(idx uint32) (uint64, error) {
	return 0, errors.New("fake: PV domains have no HVM params")
}
func (f *fakePV) HVMContext() ([]byte, error) {
	return nil, errors.New("fake: PV domains have no HVM context")
}
func (f *fakePV) PageTypes(mfns []uint64, t []uint32) error {
	for i, m := range mfns {
		switch {
		case f.mem[m] == nil || m == f.shinfoMFN:
			t[i] = hypercall.PageTypeXTab
		default:
			t[i] = f.types[m]
		}
	}
	return nil
}
func (f *fakePV) Suspend() error { f.suspends++; return f.fakeDomain.Suspend() }
func (f *fakePV) EnableLogDirty() error {
	if f.logDirtyNo != nil {
		return f.logDirtyNo
	}
	return f.fakeDomain.EnableLogDirty()
}

// pvImage is what a PV image holds, by record.
type pvImage struct {
	info    *libxc.X86PVInfo
	frames  *libxc.X86PVP2MFrames
	pages   map[uint64][]byte
	types   map[uint64]libxc.PageType
	shinfo  []byte
	vcpus   map[libxc.RecordType]map[uint32][]byte
	domType libxc.DomainType
	order   []libxc.RecordType
}

func readPVImage(t *testing.T, img []byte) *pvImage {
	t.Helper()
	im := &pvImage{pages: map[uint64][]byte{}, types: map[uint64]libxc.PageType{}, vcpus: map[libxc.RecordType]map[uint32][]byte{}}
	_, err := image.Walk(bytes.NewReader(img), image.Options{}, func(it *image.Item) error {
		if it.LibxcDomain != nil {
			im.domType = it.LibxcDomain.Type
		}
		if it.Libxc == nil {
			return nil
		}
		typ := it.Libxc.Type()
		if n := len(im.order); n == 0 || im.order[n-1] != typ {
			im.order = append(im.order, typ)
		}
		switch r := it.Libxc.(type) {
		case *libxc.X86PVInfo:
			c := *r
			im.info = &c
		case *libxc.X86PVP2MFrames:
			c := *r
			c.Frames = append([]uint64(nil), r.Frames...)
			im.frames = &c
		case *libxc.PageData:
			r.Pages(func(i int, pfn uint64, pt libxc.PageType, data []byte) bool {
				im.types[pfn] = pt
				if data != nil {
					im.pages[pfn] = append([]byte(nil), data...)
				}
				return true
			})
		case *libxc.SharedInfo:
			im.shinfo = append([]byte(nil), r.Data...)
		case *libxc.VCPUContext:
			if im.vcpus[r.Kind] == nil {
				im.vcpus[r.Kind] = map[uint32][]byte{}
			}
			im.vcpus[r.Kind][r.VCPU] = append([]byte(nil), r.Context...)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("stream/image rejects the PV image: %v", err)
	}
	return im
}

func savePV(t *testing.T, f *fakePV, opt SaveOptions) ([]byte, error) {
	t.Helper()
	opt.Config = []byte(`{"c_info":{"type":"pv","name":"guest1"}}`)
	opt.XenMajor, opt.XenMinor = 4, 17
	var buf bytes.Buffer
	_, err := NewSaver(f, opt).Save(context.Background(), &buf)
	return buf.Bytes(), err
}

// TestPVSaveNonLive saves the fake PV guest and checks the image against
// what libxc writes for it: the records in libxc's order, the P2M frames
// and every page by PFN, page tables in PFN form with Xen's L4 slots
// cleared, vCPU 0's frames as PFNs.
func TestPVSaveNonLive(t *testing.T) {
	f := newFakePV()
	img, err := savePV(t, f, SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f.suspends != 1 || !f.info.Suspended() {
		t.Fatalf("suspends %d, state %s", f.suspends, f.info.State())
	}
	im := readPVImage(t, img)
	if im.domType != libxc.DomainX86PV {
		t.Errorf("domain header type %v", im.domType)
	}
	want := []libxc.RecordType{libxc.TypeX86PVInfo, libxc.TypeX86CPUIDPolicy, libxc.TypeX86MSRPolicy, libxc.TypeStaticDataEnd,
		libxc.TypeX86PVP2MFrames, libxc.TypePageData, libxc.TypeX86TSCInfo, libxc.TypeSharedInfo, libxc.TypeX86PVVCPUBasic,
		libxc.TypeX86PVVCPUExtended, libxc.TypeX86PVVCPUMSRs, libxc.TypeEnd}
	if !slicesEqual(im.order, want) {
		t.Errorf("records %v\nwant    %v", im.order, want)
	}
	if im.info == nil || im.info.GuestWidth != 8 || im.info.PTLevels != 4 {
		t.Errorf("X86_PV_INFO %+v", im.info)
	}
	if im.frames == nil || im.frames.EndPFN != uint32(f.npfn-1) || len(im.frames.Frames) != 1 || im.frames.Frames[0] != fpvLeaf {
		t.Errorf("X86_PV_P2M_FRAMES %+v, want end %#x and frame PFN %d", im.frames, f.npfn-1, fpvLeaf)
	}
	for p := uint64(0); p < f.npfn; p++ {
		got, ok := im.pages[p]
		if p == fpvHole {
			if ok {
				t.Errorf("the hole at pfn %d is in the image", p)
			}
			continue
		}
		if !ok {
			t.Errorf("pfn %d missing", p)
			continue
		}
		wantPage := f.mem[fpvMFN(p)]
		switch p {
		case fpvL4, fpvL3, fpvL2, fpvL1:
			continue // below
		}
		if !bytes.Equal(got, wantPage) {
			t.Errorf("pfn %d differs from the guest's page", p)
		}
	}
	pte := func(pfn uint64, i int) uint64 { return binary.LittleEndian.Uint64(im.pages[pfn][i*8:]) }
	va := uint64(fpvP2MVaddr)
	for _, c := range []struct {
		pfn  uint64
		i    int
		want uint64
	}{
		{fpvL4, int(va >> 39 & 511), fpvL3<<12 | 0x67},
		{fpvL3, int(va >> 30 & 511), fpvL2<<12 | 0x67},
		{fpvL2, int(va >> 21 & 511), fpvL1<<12 | 0x67},
		{fpvL1, int(va >> 12 & 511), fpvLeaf<<12 | 0x63},
		{fpvL1, 100, fpvData<<12 | 0x8000000000000067},
		{fpvL1, 101, 0x1234000},
		{fpvL4, l4XenFirst, 0},
		{fpvL4, l4XenLast, 0},
	} {
		if got := pte(c.pfn, c.i); got != c.want {
			t.Errorf("pfn %d entry %d = %#x, want %#x", c.pfn, c.i, got, c.want)
		}
	}
	if im.types[fpvL4] != libxc.PageL4Pinned || im.types[fpvL1] != libxc.PageL1 || im.types[fpvData] != libxc.PageNormal {
		t.Errorf("types: L4 %v, L1 %v, data %v", im.types[fpvL4], im.types[fpvL1], im.types[fpvData])
	}
	if !bytes.Equal(im.shinfo, f.mem[f.shinfoMFN]) {
		t.Error("SHARED_INFO differs from the shared info page")
	}
	basic := im.vcpus[libxc.TypeX86PVVCPUBasic]
	if len(basic) != 1 || basic[0] == nil {
		t.Fatalf("BASIC records for vCPUs %v, want vCPU 0 only (1 is offline)", basic)
	}
	dc, err := pv.Decode(basic[0], 8)
	if err != nil {
		t.Fatal(err)
	}
	c := dc.(*pv.Context64)
	if c.UserRegs.RDX != fpvStartInfo || c.GDTFrames[0] != fpvGDT || c.CtrlReg[3] != fpvL4<<12 || c.CtrlReg[1] != fpvL4<<12|1 || c.UserRegs.RIP != 0xffffffff81000000 {
		t.Errorf("vCPU 0: rdx %#x gdt %#x cr3 %#x cr1 %#x rip %#x", c.UserRegs.RDX, c.GDTFrames[0], c.CtrlReg[3], c.CtrlReg[1], c.UserRegs.RIP)
	}
	if e := im.vcpus[libxc.TypeX86PVVCPUExtended][0]; len(e) != 64 {
		t.Errorf("EXTENDED of %d bytes", len(e))
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPVSaveTreeMatchesList: a guest that publishes its P2M as the
// three-level frame tree instead of the linear list gives the same image.
func TestPVSaveTreeMatchesList(t *testing.T) {
	list, err := savePV(t, newFakePV(), SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFakePV()
	a := f.mem[f.shinfoMFN][pv.SharedInfoArch64:]
	pteAt(a, 3, 0) // no p2m_cr3
	const fll, fl = 0x8000, 0x8001
	f.mem[fll], f.mem[fl] = make([]byte, PageSize), make([]byte, PageSize)
	pteAt(f.mem[fll], 0, fl)
	pteAt(f.mem[fl], 0, fpvMFN(fpvLeaf))
	pteAt(a, 1, fll)
	treeImg, err := savePV(t, f, SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	li, tr := readPVImage(t, list), readPVImage(t, treeImg)
	if len(li.pages) != len(tr.pages) || tr.frames.Frames[0] != fpvLeaf || tr.frames.EndPFN != li.frames.EndPFN {
		t.Fatalf("tree: %d pages, frames %+v; list: %d pages, frames %+v", len(tr.pages), tr.frames, len(li.pages), li.frames)
	}
	for p, pg := range li.pages {
		if !bytes.Equal(tr.pages[p], pg) {
			t.Errorf("pfn %d differs between the tree and the list saves", p)
		}
	}
	// A frame list list naming a frame past the M2P is refused.
	pteAt(f.mem[fll], 0, 0x7fffffff)
	if _, err := savePV(t, f, SaveOptions{}); !errors.Is(err, ErrPVP2M) {
		t.Fatalf("bad frame list: %v", err)
	}
}

// TestPVSaveRefusesBadTables: a page table naming a frame that is not the
// guest's, or mapping a superpage, fails the save naming the PFN and the
// entry, and the guest is resumed.
func TestPVSaveRefusesBadTables(t *testing.T) {
	for _, c := range []struct {
		name  string
		pfn   uint64
		i     int
		pte   uint64
		want  error
		entry string
	}{
		{"foreign frame", fpvL1, 200, fpvForeignMFN<<12 | 0x63, ErrPVFrame, "L1[200]"},
		{"superpage", fpvL2, 300, fpvMFN(fpvData)<<12 | 0xe3, ErrPVSuperpage, "L2[300]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakePV()
			pteAt(f.mem[fpvMFN(c.pfn)], c.i, c.pte)
			_, err := savePV(t, f, SaveOptions{})
			var se *SaveError
			if !errors.As(err, &se) || !errors.Is(err, c.want) || !se.HasPFN || se.PFN != c.pfn || !strings.Contains(err.Error(), c.entry) {
				t.Fatalf("err %v, want %v naming pfn %d and %s", err, c.want, c.pfn, c.entry)
			}
			if !se.Resumed || f.resumes != 1 || f.info.Suspended() {
				t.Fatalf("resumed %v, resumes %d, state %s", se.Resumed, f.resumes, f.info.State())
			}
		})
	}
	// The control: the same guest without the bad entry saves.
	if _, err := savePV(t, newFakePV(), SaveOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestPVSaveLiveRefusedBeforeSuspend: where Xen refuses log-dirty for the
// PV guest, a live save fails with ErrPVLogDirty before suspending it.
func TestPVSaveLiveRefusedBeforeSuspend(t *testing.T) {
	f := newFakePV()
	f.logDirtyNo = errors.New("fake: EOPNOTSUPP")
	_, err := savePV(t, f, SaveOptions{Live: true})
	var se *SaveError
	if !errors.Is(err, ErrPVLogDirty) || !errors.As(err, &se) || !se.Resumed || f.suspends != 0 || f.info.Suspended() {
		t.Fatalf("err %v, suspends %d, state %s", err, f.suspends, f.info.State())
	}
	// With log-dirty, the live save goes through its rounds and suspends.
	f = newFakePV()
	img, err := savePV(t, f, SaveOptions{Live: true})
	if err != nil || f.suspends != 1 {
		t.Fatalf("live save with log-dirty: %v, suspends %d", err, f.suspends)
	}
	if im := readPVImage(t, img); len(im.pages) != int(f.npfn-1) {
		t.Fatalf("live image: %d pages, want %d", len(im.pages), f.npfn-1)
	}
}

// TestPVSavePausedSnapshot: SaveOptions.Paused saves a paused domain
// without suspending it, and refuses a running one.
func TestPVSavePausedSnapshot(t *testing.T) {
	f := newFakePV()
	if _, err := savePV(t, f, SaveOptions{Paused: true}); !errors.Is(err, ErrNotSuspended) || f.suspends != 0 {
		t.Fatalf("running domain: %v, suspends %d", err, f.suspends)
	}
	f.info.Flags |= hypercall.DomainPaused
	if _, err := savePV(t, f, SaveOptions{Paused: true}); err != nil || f.suspends != 0 {
		t.Fatalf("paused domain: %v, suspends %d", err, f.suspends)
	}
}

// TestPVSave32Refused: a 32-bit guest is refused clearly, before anything.
func TestPVSave32Refused(t *testing.T) {
	f := newFakePV()
	f.width = 4
	if _, err := savePV(t, f, SaveOptions{}); !errors.Is(err, ErrPV32) || f.suspends != 0 {
		t.Fatalf("err %v", err)
	}
}

// TestPVSaveLiveDefersBadTables: in a live round, a page table the guest
// is changing (an entry naming a frame not yet its own) is left out and
// sent in a later round once it normalises; if it never does, the final
// pass fails naming it.
func TestPVSaveLiveDefersBadTables(t *testing.T) {
	for _, fixed := range []bool{true, false} {
		f := newFakePV()
		l1 := f.mem[fpvMFN(fpvL1)]
		pteAt(l1, 200, fpvForeignMFN<<12|0x63)
		f.onClean = func(d *fakeDomain, call int) {
			if call == 0 && fixed {
				pteAt(l1, 200, fpvMFN(fpvData)<<12|0x63)
				d.dirty.Set(fpvL1)
			}
		}
		img, err := savePV(t, f, SaveOptions{Live: true, Policy: RoundsPolicy(2, 0)})
		if !fixed {
			var se *SaveError
			if !errors.Is(err, ErrPVFrame) || !errors.As(err, &se) || se.PFN != fpvL1 || !strings.Contains(err.Error(), "L1[200]") {
				t.Fatalf("never fixed: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		im := readPVImage(t, img)
		if got := binary.LittleEndian.Uint64(im.pages[fpvL1][200*8:]); got != fpvData<<12|0x63 {
			t.Fatalf("L1[200] = %#x after the deferral", got)
		}
	}
}
