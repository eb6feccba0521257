package migrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/pv"
)

// fakePVBuilder is fakeBuilder able to build PV domains: populate hands
// out scattered MFNs (the fake domain's memory is keyed by them).
type fakePVBuilder struct {
	*fakeBuilder
	nextMFN  uint64
	m2p      map[uint64]uint64 // mfn -> pfn, as Xen's M2P after populate
	vcpus    map[uint32][]byte
	ext      map[uint32][]byte
	msrs     map[uint32][]byte
	pins     []hypercall.MMUExtOp
	addrSize uint32
}

const fakeShinfoMFN = 0x7000

func newFakePVBuilder() *fakePVBuilder {
	return &fakePVBuilder{fakeBuilder: newFakeBuilder(), nextMFN: 0x40000, m2p: map[uint64]uint64{},
		vcpus: map[uint32][]byte{}, ext: map[uint32][]byte{}, msrs: map[uint32][]byte{}}
}

func (f *fakePVBuilder) SetAddressSize(dom, bits uint32) error {
	_, err := f.op("set_address_size", dom)
	f.addrSize = bits
	return err
}

func (f *fakePVBuilder) PopulatePV(dom uint32, pfns []uint64) ([]uint64, error) {
	d, err := f.op("populate_physmap", dom)
	if err != nil {
		return nil, err
	}
	if uint64(len(d.mem)+len(pfns))*4 > d.maxMemKB {
		return nil, &hypercall.Error{Op: "populate_physmap", Domain: dom, Err: errors.New("ENOMEM")}
	}
	out := make([]uint64, len(pfns))
	for i, p := range pfns {
		for _, ok := f.m2p[f.nextMFN]; ok; _, ok = f.m2p[f.nextMFN] {
			f.nextMFN += 7
		}
		out[i] = f.nextMFN
		f.m2p[f.nextMFN] = p
		d.mem[f.nextMFN] = make([]byte, PageSize)
		f.nextMFN += 7
	}
	return out, nil
}

func (f *fakePVBuilder) SharedInfoFrame(dom uint32) (uint64, error) {
	d, err := f.op("getdomaininfo", dom)
	if err != nil {
		return 0, err
	}
	if d.mem[fakeShinfoMFN] == nil {
		d.mem[fakeShinfoMFN] = bytes.Repeat([]byte{0x33}, PageSize)
	}
	return fakeShinfoMFN, nil
}

func (f *fakePVBuilder) SetVCPUContext(dom, vcpu uint32, ctx []byte) error {
	_, err := f.op("setvcpucontext", dom)
	f.vcpus[vcpu] = append([]byte(nil), ctx...)
	return err
}
func (f *fakePVBuilder) SetExtVCPUContext(dom uint32, ctx []byte) error {
	_, err := f.op("set_ext_vcpucontext", dom)
	f.ext[0] = ctx
	return err
}
func (f *fakePVBuilder) SetVCPUExtState(dom, vcpu uint32, s []byte) error {
	_, err := f.op("setvcpuextstate", dom)
	return err
}
func (f *fakePVBuilder) SetVCPUMSRs(dom, vcpu uint32, m []byte) error {
	_, err := f.op("set_vcpu_msrs", dom)
	f.msrs[vcpu] = m
	return err
}
func (f *fakePVBuilder) PinTables(dom uint32, ops []hypercall.MMUExtOp) error {
	_, err := f.op("pin", dom)
	f.pins = append(f.pins, ops...)
	return err
}

const pvRestoreConfig = `{"c_info":{"type":"pv","name":"guest1","uuid":"6a1b7c2d-0e3f-4a5b-8c9d-aabbccddee01"},
 "b_info":{"max_vcpus":2,"avail_vcpus":[0],"max_memkb":1024,"target_memkb":1024,"tsc_mode":"default"}}`

// pvImageForRestore saves the fake PV guest for a restore.
func pvImageForRestore(t *testing.T) (*fakePV, []byte) {
	t.Helper()
	f := newFakePV()
	var buf bytes.Buffer
	if _, err := NewSaver(f, SaveOptions{Config: []byte(pvRestoreConfig), XenMajor: 4, XenMinor: 17}).Save(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return f, buf.Bytes()
}

// TestPVRestoreRoundTrip restores a Go save of the fake PV guest into the
// fake builder: every page back at its PFN, page tables naming the new
// MFNs of the same PFNs, the guest's P2M rewritten, start info with the
// new rings and event channels, vCPU 0 in MFN form, page tables pinned.
func TestPVRestoreRoundTrip(t *testing.T) {
	src, img := pvImageForRestore(t)
	b, ts := newFakePVBuilder(), newFakeToolstack()
	r, err := Restore(context.Background(), b, ts, bytes.NewReader(img), RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := b.doms[r.Domid]
	if d.paused || d.create.Flags&hypercall.CreateHVM != 0 || b.addrSize != 64 {
		t.Fatalf("paused %v, create flags %#x, address size %d", d.paused, d.create.Flags, b.addrSize)
	}
	// The new P2M, from the guest's own P2M frame.
	newMFN := map[uint64]uint64{}
	for mfn, pfn := range b.m2p {
		newMFN[pfn] = mfn
	}
	leaf := d.mem[newMFN[fpvLeaf]]
	for p := uint64(0); p < src.npfn; p++ {
		got := binary.LittleEndian.Uint64(leaf[p*8:])
		want, ok := newMFN[p]
		if !ok {
			want = invalidMFN
		}
		if got != want {
			t.Errorf("guest P2M[%d] = %#x, want %#x", p, got, want)
		}
	}
	toPFN := func(pg []byte, m func(uint64) (uint64, bool)) []uint64 {
		var out []uint64
		for i := 0; i < 512; i++ {
			pte := binary.LittleEndian.Uint64(pg[i*8:])
			if pte&1 != 0 {
				pfn, ok := m(pteFrame(pte))
				if !ok {
					pfn = 1 << 63
				}
				out = append(out, pfn, pte&^pteFrameMask)
			} else {
				out = append(out, pte, 0)
			}
		}
		return out
	}
	srcM2P := func(m uint64) (uint64, bool) {
		for p := uint64(0); p < src.npfn; p++ {
			if fpvMFN(p) == m {
				return p, true
			}
		}
		return 0, false
	}
	newM2P := func(m uint64) (uint64, bool) { p, ok := b.m2p[m]; return p, ok }
	for p := uint64(0); p < src.npfn; p++ {
		orig := src.mem[fpvMFN(p)]
		got := d.mem[newMFN[p]]
		switch {
		case p == fpvHole:
			if _, ok := newMFN[p]; ok {
				t.Errorf("the hole at pfn %d was populated", p)
			}
		case got == nil:
			t.Errorf("pfn %d not restored", p)
		case p == fpvL4:
			// Xen's slots come back empty; the rest names the same PFNs.
			o, g := toPFN(orig, srcM2P), toPFN(got, newM2P)
			for i := l4XenFirst * 2; i <= l4XenLast*2+1; i++ {
				o[i] = 0
			}
			if !slicesEqual(o, g) {
				t.Errorf("L4 at pfn %d does not name the same PFNs", p)
			}
		case p == fpvL3 || p == fpvL2 || p == fpvL1:
			if !slicesEqual(toPFN(orig, srcM2P), toPFN(got, newM2P)) {
				t.Errorf("page table at pfn %d does not name the same PFNs", p)
			}
		case p == fpvLeaf, p == fpvStartInfo:
		default:
			if !bytes.Equal(orig, got) {
				t.Errorf("pfn %d differs", p)
			}
		}
	}
	c, err := pv.Decode(b.vcpus[0], 8)
	if err != nil {
		t.Fatal(err)
	}
	v0 := c.(*pv.Context64)
	if v0.UserRegs.RDX != newMFN[fpvStartInfo] || v0.CtrlReg[3] != newMFN[fpvL4]<<12 || v0.CtrlReg[1] != newMFN[fpvL4]<<12 ||
		v0.GDTFrames[0] != newMFN[fpvGDT] || !v0.Online() {
		t.Errorf("vCPU 0: rdx %#x cr3 %#x cr1 %#x gdt %#x online %v", v0.UserRegs.RDX, v0.CtrlReg[3], v0.CtrlReg[1], v0.GDTFrames[0], v0.Online())
	}
	if len(b.pins) != 1 || b.pins[0] != (hypercall.MMUExtOp{Cmd: hypercall.MMUExtPinL4, MFN: newMFN[fpvL4]}) {
		t.Errorf("pins %+v, want the L4 at %#x", b.pins, newMFN[fpvL4])
	}
	sh := d.mem[fakeShinfoMFN]
	if binary.LittleEndian.Uint64(sh[pv.SharedInfoArch64:]) != src.npfn || sh[pv.SharedInfoEvtchnMask64] != 0xff || sh[pv.SharedInfoEvtchnPending64] != 0 {
		t.Error("shared info: arch not copied, or events not masked and cleared")
	}
	if !d.seeded || d.gnt[0].Frame != uint32(newMFN[fpvConsole]) || d.gnt[1].Frame != uint32(newMFN[fpvStore]) {
		t.Error("grant table not seeded")
	}
	si := d.mem[newMFN[fpvStartInfo]]
	if binary.LittleEndian.Uint64(si[pv.StartInfoStoreMFN:]) != newMFN[fpvStore] || binary.LittleEndian.Uint64(si[pv.StartInfoConsoleMFN:]) != newMFN[fpvConsole] ||
		binary.LittleEndian.Uint64(si[pv.StartInfoSharedInfo:]) != fakeShinfoMFN<<12 || binary.LittleEndian.Uint64(si[pv.StartInfoNrPages:]) != src.npfn {
		t.Errorf("start info: store %#x console %#x shared info %#x nr_pages %d", binary.LittleEndian.Uint64(si[pv.StartInfoStoreMFN:]),
			binary.LittleEndian.Uint64(si[pv.StartInfoConsoleMFN:]), binary.LittleEndian.Uint64(si[pv.StartInfoSharedInfo:]), binary.LittleEndian.Uint64(si[pv.StartInfoNrPages:]))
	}
	if in, ok := ts.introduced[r.Domid]; !ok || in[0] != newMFN[fpvStore] {
		t.Errorf("xenstore introduce %v, want the store ring's new MFN %#x", in, newMFN[fpvStore])
	}
}

// TestPVRestoreRefusesPTEBeyondP2M: a page-table entry naming a PFN past
// the P2M is refused with the PFN, the entry and the record named, and the
// domain never runs (it is destroyed, no vCPU was loaded).
func TestPVRestoreRefusesPTEBeyondP2M(t *testing.T) {
	_, img := pvImageForRestore(t)
	good := make([]byte, 8)
	binary.LittleEndian.PutUint64(good, fpvData<<12|0x8000000000000067)
	if bytes.Count(img, good) != 1 {
		t.Fatalf("the data PTE appears %d times in the image", bytes.Count(img, good))
	}
	bad := make([]byte, 8)
	binary.LittleEndian.PutUint64(bad, 0x5000<<12|0x8000000000000067)
	corrupt := bytes.Replace(img, good, bad, 1)
	b, ts := newFakePVBuilder(), newFakeToolstack()
	_, err := Restore(context.Background(), b, ts, bytes.NewReader(corrupt), RestoreOptions{})
	var fe *stream.FormatError
	var re *RestoreError
	if !errors.As(err, &fe) || !errors.As(err, &re) || !strings.Contains(err.Error(), "0x5000") ||
		!strings.Contains(err.Error(), "L1[100]") || !strings.Contains(err.Error(), "PAGE_DATA") {
		t.Fatalf("err %v", err)
	}
	if !re.Cleaned || len(b.vcpus) != 0 || len(b.live()) != 0 {
		t.Fatalf("cleaned %v, vCPUs loaded %d, live domains %v", re.Cleaned, len(b.vcpus), b.live())
	}
	for _, op := range b.ops {
		if op == "unpause" {
			t.Fatal("the domain was unpaused")
		}
	}
	// The control: the same image unchanged restores.
	if _, err := Restore(context.Background(), newFakePVBuilder(), newFakeToolstack(), bytes.NewReader(img), RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
}
