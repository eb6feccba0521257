package hypercall

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// TestPVLayoutsAgainstC compares the PV hypercalls' numbers and offsets with
// libxen-dev's headers.
func TestPVLayoutsAgainstC(t *testing.T) {
	cheader.Compare(t, map[string]uint64{
		"DOMID_XEN": DomidXen, "XEN_DOMCTL_getvcpuinfo": domctlGetVCPUInfo, "XEN_DOMCTL_get_address_size": domctlGetAddressSize,
		"XEN_DOMCTL_get_ext_vcpucontext": domctlGetExtVCPUContext, "XEN_DOMCTL_getvcpuextstate": domctlGetVCPUExtState,
		"XEN_DOMCTL_get_vcpu_msrs": domctlGetVCPUMSRs, "XENMEM_maximum_ram_page": xenmemMaximumRAMPage,
		"XENMEM_machphys_mfn_list":                                xenmemMachphysMFNList,
		"offsetof(struct xen_domctl_getvcpuinfo, vcpu)":           vcpuInfoVCPU,
		"offsetof(struct xen_domctl_getvcpuinfo, online)":         vcpuInfoOnline,
		"offsetof(struct xen_domctl_address_size, size)":          addrSizeSize,
		"offsetof(struct xen_domctl_ext_vcpucontext, vcpu)":       extVCPUVCPU,
		"offsetof(struct xen_domctl_ext_vcpucontext, size)":       extVCPUSize,
		"offsetof(struct xen_domctl_vcpuextstate, vcpu)":          extStateVCPU,
		"offsetof(struct xen_domctl_vcpuextstate, xfeature_mask)": extStateXFeatureMask,
		"offsetof(struct xen_domctl_vcpuextstate, size)":          extStateSize,
		"offsetof(struct xen_domctl_vcpuextstate, buffer)":        extStateBuffer,
		"offsetof(struct xen_domctl_vcpu_msrs, vcpu)":             vcpuMSRsVCPU,
		"offsetof(struct xen_domctl_vcpu_msrs, msr_count)":        vcpuMSRsCount,
		"offsetof(struct xen_domctl_vcpu_msrs, msrs)":             vcpuMSRsMSRs,
		"sizeof(xen_domctl_vcpu_msr_t)":                           vcpuMSRSize,
		"sizeof(struct xen_machphys_mfn_list)":                    machphysListSize,
		"offsetof(struct xen_machphys_mfn_list, max_extents)":     machphysListMaxExtents,
		"offsetof(struct xen_machphys_mfn_list, extent_start)":    machphysListExtentStart,
		"offsetof(struct xen_machphys_mfn_list, nr_extents)":      machphysListNrExtents,
	})
}

// pvFake answers the PV queries as Xen 4.17 does: the MSR and XSAVE
// queries in two calls (a size query, then the data), writing through the
// buffer addresses it is given.
type pvFake struct {
	a      *fakeAlloc
	msrs   int // MSRs in use
	xsave  int // bytes of XSAVE state (0: none)
	chunks []uint64
}

func (f *pvFake) Hypercall(op uint64, args [5]uint64) (uint64, error) {
	switch op {
	case OpMemory:
		switch args[0] {
		case xenmemMaximumRAMPage:
			return 0x12345, nil
		case xenmemMachphysMFNList:
			a := f.a.mem(args[1], machphysListSize)
			max := int(le.Uint32(a[machphysListMaxExtents:]))
			n := min(max, len(f.chunks))
			ext := f.a.mem(le.Uint64(a[machphysListExtentStart:]), 8*max)
			for i := 0; i < n; i++ {
				le.PutUint64(ext[8*i:], f.chunks[i])
			}
			le.PutUint32(a[machphysListNrExtents:], uint32(n))
			return 0, nil
		}
	case OpDomctl:
		m := f.a.mem(args[0], domctlSize)
		u := m[domctlUnion:]
		switch le.Uint32(m[0:]) {
		case domctlGetAddressSize:
			le.PutUint32(u[addrSizeSize:], 64)
		case domctlGetVCPUInfo:
			u[vcpuInfoOnline] = byte(1 - le.Uint32(u[vcpuInfoVCPU:])) // vCPU 0 online, 1 not
		case domctlGetExtVCPUContext:
			le.PutUint32(u[extVCPUSize:], 64)
			u[8] = 0xaa
		case domctlGetVCPUMSRs:
			h := le.Uint64(u[vcpuMSRsMSRs:])
			if h == 0 {
				le.PutUint32(u[vcpuMSRsCount:], 8) // the maximum
				return 0, nil
			}
			if int(le.Uint32(u[vcpuMSRsCount:])) < f.msrs {
				return 0, syscall.ENOBUFS
			}
			b := f.a.mem(h, f.msrs*vcpuMSRSize)
			for i := range b {
				b[i] = byte(i)
			}
			le.PutUint32(u[vcpuMSRsCount:], uint32(f.msrs))
		case domctlGetVCPUExtState:
			h := le.Uint64(u[extStateBuffer:])
			if h == 0 {
				if f.xsave > 0 {
					le.PutUint64(u[extStateXFeatureMask:], 7)
				}
				le.PutUint64(u[extStateSize:], uint64(f.xsave))
				return 0, nil
			}
			b := f.a.mem(h, f.xsave)
			for i := range b {
				b[i] = 0x5a
			}
		default:
			return 0, syscall.ENOSYS
		}
		return 0, nil
	}
	return 0, syscall.ENOSYS
}

func TestPVQueriesOnFake(t *testing.T) {
	a := &fakeAlloc{pinned: true}
	f := &pvFake{a: a, msrs: 3, xsave: 832, chunks: []uint64{0x100, 0x900}}
	x := New(f, NewPool(a))
	defer func() {
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	if r, err := x.MaximumRAMPage(); r != 0x12345 || err != nil {
		t.Fatalf("MaximumRAMPage = %#x %v", r, err)
	}
	if c, err := x.MachphysMFNList(8); err != nil || len(c) != 2 || c[1] != 0x900 {
		t.Fatalf("MachphysMFNList = %#x %v", c, err)
	}
	if s, err := x.GetAddressSize(5); s != 64 || err != nil {
		t.Fatalf("GetAddressSize = %d %v", s, err)
	}
	for v, want := range []bool{true, false} {
		if on, err := x.VCPUOnline(5, uint32(v)); on != want || err != nil {
			t.Fatalf("VCPUOnline(%d) = %v %v", v, on, err)
		}
	}
	if e, err := x.GetExtVCPUContext(5, 0); err != nil || len(e) != 64 || e[8] != 0xaa {
		t.Fatalf("GetExtVCPUContext = %d bytes %v", len(e), err)
	}
	m, err := x.GetVCPUMSRs(5, 0)
	if err != nil || len(m) != 3*16 || m[47] != 47 {
		t.Fatalf("GetVCPUMSRs = %d bytes %v", len(m), err)
	}
	xs, err := x.GetVCPUExtState(5, 0)
	if err != nil || !bytes.Equal(xs, bytes.Repeat([]byte{0x5a}, 832)) {
		t.Fatalf("GetVCPUExtState = %d bytes %v", len(xs), err)
	}
	// A vCPU with no MSRs in use and no XSAVE state: no bytes, no error.
	f.msrs, f.xsave = 0, 0
	if m, err := x.GetVCPUMSRs(5, 0); m != nil || err != nil {
		t.Fatalf("no MSRs: %d bytes %v", len(m), err)
	}
	if xs, err := x.GetVCPUExtState(5, 0); xs != nil || err != nil {
		t.Fatalf("no XSAVE: %d bytes %v", len(xs), err)
	}
	// More MSRs than the maximum Xen announced: the error comes back.
	f.msrs = 9
	if _, err := x.GetVCPUMSRs(5, 0); err == nil {
		t.Fatal("GetVCPUMSRs with more MSRs than slots: no error")
	}
}
