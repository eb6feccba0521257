package hypercall

import (
	"errors"
	"slices"
	"syscall"
	"testing"
)

// buildXen plays the hypervisor for the domain-building wrappers: it keeps
// what each call set, answers createdomain with a fresh id, populates at
// most limit frames, and refuses CPUID leaf 7 naming it.
type buildXen struct {
	a        *fakeAlloc
	created  CreateDomain
	nextID   uint16
	maxvcpus uint32
	maxmemkb uint64
	pool     uint64
	tsc      TSCInfo
	params   map[uint32]uint64
	frames   []uint64
	limit    int
	ports    [][2]uint16
	// affinity: the flags and maps of the last setvcpuaffinity; Xen's
	// effective hard map keeps only CPUs 0-3 (a pool of four).
	affVCPU, affFlags uint32
	affHard, affSoft  []byte
}

func (f *buildXen) Hypercall(op uint64, args [5]uint64) (uint64, error) {
	switch op {
	case OpDomctl:
		m := f.a.mem(args[0], domctlSize)
		u := m[domctlUnion:]
		dom := uint32(le.Uint16(m[8:]))
		switch le.Uint32(m[0:]) {
		case domctlCreateDomain:
			c, l := &f.created, createDomain15 // New speaks 4.17's interface
			c.SSIDRef = le.Uint32(u[l.ssidref:])
			copy(c.Handle[:], u[l.handle:])
			c.Flags = le.Uint32(u[l.flags:])
			c.MaxVCPUs = le.Uint32(u[l.maxVCPUs:])
			c.MaxEvtchnPort = le.Uint32(u[l.maxEvtchnPort:])
			c.MaxGrantFrames = int32(le.Uint32(u[l.maxGrantFrames:]))
			c.MaxMaptrackFrames = int32(le.Uint32(u[l.maxMaptrackFrames:]))
			c.GrantOpts = le.Uint32(u[l.grantOpts:])
			c.EmulationFlags = le.Uint32(u[l.arch+archEmulationFlags:])
			c.MiscFlags = le.Uint32(u[l.arch+archMiscFlags:])
			if dom != 0 {
				return 0, syscall.EEXIST
			}
			le.PutUint16(m[8:], f.nextID)
		case domctlMaxVCPUs:
			f.maxvcpus = le.Uint32(u[maxVCPUsMax:])
		case domctlMaxMem:
			f.maxmemkb = le.Uint64(u[maxMemKB:])
		case domctlSetVCPUAffinity:
			f.affVCPU, f.affFlags = le.Uint32(u[vcpuAffVCPU:]), le.Uint32(u[vcpuAffFlags:])
			f.affHard, f.affSoft = nil, nil
			for _, m := range []struct {
				off  int
				flag uint32
				dst  *[]byte
			}{{vcpuAffHard, vcpuAffinityHard, &f.affHard}, {vcpuAffSoft, vcpuAffinitySoft, &f.affSoft}} {
				if f.affFlags&m.flag == 0 {
					continue
				}
				nbits := int(le.Uint32(u[m.off+ctlBitmapNrBits:]))
				b := f.a.mem(le.Uint64(u[m.off+ctlBitmapBuf:]), (nbits+7)/8)
				*m.dst = append([]byte(nil), b...)
				if m.flag == vcpuAffinityHard {
					b[0] &= 0x0f
					clear(b[1:])
				}
			}
		case domctlSetPagingMempoolSize:
			f.pool = le.Uint64(u[pagingMempoolSize:])
		case domctlSetTSCInfo:
			f.tsc.decode(u)
		case domctlSetCPUPolicy:
			n := int(le.Uint32(u[cpuPolNrLeaves:]))
			leaves := f.a.mem(le.Uint64(u[cpuPolLeaves:]), n*cpuidLeafSize)
			for i := 0; i < n; i++ {
				if le.Uint32(leaves[i*cpuidLeafSize:]) == 7 {
					le.PutUint32(u[cpuPolErrLeaf:], 7)
					le.PutUint32(u[cpuPolErrSubleaf:], le.Uint32(leaves[i*cpuidLeafSize+4:]))
					return 0, syscall.EINVAL
				}
			}
		default:
			return 0, syscall.ENOSYS
		}
		return 0, nil
	case OpHVM:
		m := f.a.mem(args[1], hvmParamSize)
		if args[0] != hvmopSetParam {
			return 0, syscall.ENOSYS
		}
		f.params[le.Uint32(m[hvmParamIndex:])] = le.Uint64(m[hvmParamValue:])
		return 0, nil
	case OpMemory:
		if args[0] != xenmemPopulatePhysmap {
			return 0, syscall.ENOSYS
		}
		m := f.a.mem(args[1], memResSize)
		n := int(le.Uint64(m[memResNrExtents:]))
		if le.Uint32(m[memResExtentOrder:]) != 0 {
			return 0, syscall.EINVAL
		}
		arr := f.a.mem(le.Uint64(m[memResExtentStart:]), n*8)
		done := 0
		for i := 0; i < n && len(f.frames) < f.limit; i++ {
			f.frames = append(f.frames, le.Uint64(arr[i*8:]))
			done++
		}
		return uint64(done), nil
	case OpEvtchn:
		if args[0] != evtchnopAllocUnbound {
			return 0, syscall.ENOSYS
		}
		m := f.a.mem(args[1], evtchnAllocSize)
		f.ports = append(f.ports, [2]uint16{le.Uint16(m[evtchnAllocDom:]), le.Uint16(m[evtchnAllocRemote:])})
		le.PutUint32(m[evtchnAllocPort:], uint32(len(f.ports)))
		return 0, nil
	}
	return 0, syscall.ENOSYS
}

func TestDomainBuildingOnFake(t *testing.T) {
	a := &fakeAlloc{pinned: true}
	f := &buildXen{a: a, nextID: 12, params: map[uint32]uint64{}, limit: 5}
	x := New(f, NewPool(a))
	defer func() {
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	want := CreateDomain{Handle: [16]byte{1, 2, 3, 15: 16}, Flags: CreateHVM | CreateHAP, MaxVCPUs: 2,
		MaxEvtchnPort: 1023, MaxGrantFrames: 64, MaxMaptrackFrames: -1, GrantOpts: 2, EmulationFlags: EmuLAPIC, MiscFlags: MiscMSRRelaxed}
	id, err := x.CreateDomainOp(0, want)
	if err != nil || id != 12 || f.created != want {
		t.Fatalf("CreateDomainOp = %d %v; Xen saw %+v", id, err, f.created)
	}
	var he *Error
	if _, err := x.CreateDomainOp(12, want); !errors.As(err, &he) || !errors.Is(err, syscall.EEXIST) || he.Op != "createdomain" {
		t.Fatalf("taken id: %v", err)
	}
	if err := x.SetMaxVCPUs(12, 2); err != nil || f.maxvcpus != 2 {
		t.Fatal(err)
	}
	if err := x.SetMaxMem(12, 132096); err != nil || f.maxmemkb != 132096 {
		t.Fatal(err)
	}
	if err := x.SetPagingMempoolSize(12, 2<<20); err != nil || f.pool != 2<<20 {
		t.Fatal(err)
	}
	tsc := TSCInfo{Mode: 1, KHz: 2596141, Incarnation: 3, ElapsedNsec: 24587628242}
	if err := x.SetTSCInfo(12, tsc); err != nil || f.tsc != tsc {
		t.Fatalf("SetTSCInfo: %v, Xen saw %+v", err, f.tsc)
	}
	if err := x.SetHVMParam(12, HVMParamStoreEvtchn, 7); err != nil || f.params[HVMParamStoreEvtchn] != 7 {
		t.Fatal(err)
	}
	leaves := make([]byte, 2*cpuidLeafSize)
	le.PutUint32(leaves[cpuidLeafSize:], 7)
	le.PutUint32(leaves[cpuidLeafSize+4:], 1)
	var pe *CPUPolicyError
	if err := x.SetCPUPolicy(12, leaves, make([]byte, msrEntrySize)); !errors.As(err, &pe) || pe.Leaf != 7 || pe.Subleaf != 1 || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("refused policy: %v", err)
	}
	if err := x.SetCPUPolicy(12, leaves[:cpuidLeafSize], nil); err != nil {
		t.Fatalf("accepted policy: %v", err)
	}
	if err := x.SetCPUPolicy(12, leaves[:5], nil); err == nil {
		t.Fatal("partial CPUID entry accepted")
	}
	if err := x.PopulatePhysmap(12, []uint64{0, 1, 2}); err != nil || len(f.frames) != 3 || f.frames[2] != 2 {
		t.Fatalf("populate: %v %v", err, f.frames)
	}
	if err := x.PopulatePhysmap(12, []uint64{0x10, 0x11, 0x12}); err == nil {
		t.Fatal("partial populate not reported")
	}
	p1, err1 := x.AllocUnbound(12, 0)
	p2, err2 := x.AllocUnbound(12, 1)
	if err1 != nil || err2 != nil || p1 != 1 || p2 != 2 || f.ports[1] != [2]uint16{12, 1} {
		t.Fatalf("AllocUnbound: %d %d %v %v %v", p1, p2, err1, err2, f.ports)
	}
}

func TestSetVCPUAffinityOnFake(t *testing.T) {
	a := &fakeAlloc{pinned: true}
	f := &buildXen{a: a, params: map[uint32]uint64{}}
	x := New(f, NewPool(a))
	defer x.Close()
	hard, err := CPUMapOf(1, 9)
	if err != nil {
		t.Fatal(err)
	}
	soft, _ := CPUMapOf(1)
	effHard, effSoft, err := x.SetVCPUAffinity(12, 3, hard, soft)
	if err != nil {
		t.Fatal(err)
	}
	if f.affVCPU != 3 || f.affFlags != vcpuAffinityHard|vcpuAffinitySoft ||
		!slices.Equal(f.affHard, []byte{0x02, 0x02}) || !slices.Equal(f.affSoft, []byte{0x02}) {
		t.Fatalf("Xen saw vcpu %d flags %#x hard %x soft %x", f.affVCPU, f.affFlags, f.affHard, f.affSoft)
	}
	// The effective hard map comes back from Xen's copy: CPU 9 is outside
	// the fake's pool.
	if !slices.Equal(effHard.CPUs(), []int{1}) || !slices.Equal(effSoft.CPUs(), []int{1}) {
		t.Fatalf("effective hard %v soft %v", effHard.CPUs(), effSoft.CPUs())
	}
	// Soft only: the hard map is not sent and stays as it was.
	if _, _, err := x.SetVCPUAffinity(12, 0, nil, soft); err != nil || f.affFlags != vcpuAffinitySoft || f.affHard != nil {
		t.Fatalf("soft only: %v, flags %#x hard %x", err, f.affFlags, f.affHard)
	}
	// Neither: no hypercall.
	f.affFlags = 99
	if h, s, err := x.SetVCPUAffinity(12, 0, nil, nil); err != nil || h != nil || s != nil || f.affFlags != 99 {
		t.Fatalf("no maps: %v %v %v, flags %d", h, s, err, f.affFlags)
	}
}

func TestCPUMap(t *testing.T) {
	for _, c := range [][]int{nil, {0}, {7, 8}, {1, 63, 64}, {MaxCPUMapCPU}} {
		m, err := CPUMapOf(c...)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.CPUs(); !slices.Equal(got, c) {
			t.Errorf("CPUMapOf(%v).CPUs() = %v", c, got)
		}
		if c == nil && (m == nil || len(m) != 0) {
			t.Errorf("CPUMapOf() = %#v, want an empty non-nil map (nil means 'leave as it is')", m)
		}
	}
	if m, _ := CPUMapOf(MaxCPUMapCPU); len(m) != (MaxCPUMapCPU+8)/8 {
		t.Errorf("map of CPU %d is %d bytes", MaxCPUMapCPU, len(m))
	}
	for _, bad := range []int{-1, MaxCPUMapCPU + 1} {
		if _, err := CPUMapOf(bad); err == nil {
			t.Errorf("CPUMapOf(%d) accepted", bad)
		}
	}
}
