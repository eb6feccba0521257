package hypercall

import "fmt"

// DomidXen is DOMID_XEN: the pseudo-domain owning Xen's own frames, among
// them the machine-to-physical table a privileged domain may map read-only.
const DomidXen = 0x7ff2

// M2PChunkShift is log2 of the size of one chunk of the machine-to-physical
// table as XENMEM_machphys_mfn_list lists them (2 MiB: 512 frames, the
// first of which the list names; the others follow it).
const M2PChunkShift = 21

// PV-only domctls, memory ops and their structures (public/domctl.h,
// public/memory.h).
const (
	domctlGetVCPUInfo        = 14
	domctlGetAddressSize     = 36
	domctlGetExtVCPUContext  = 43
	domctlGetVCPUExtState    = 63
	domctlGetVCPUMSRs        = 72
	xenmemMaximumRAMPage     = 2
	xenmemMachphysMFNList    = 5
	vcpuInfoVCPU             = 0
	vcpuInfoOnline           = 4
	addrSizeSize             = 0
	extVCPUVCPU              = 0
	extVCPUSize              = 4
	extStateVCPU             = 0
	extStateXFeatureMask     = 8
	extStateSize             = 16
	extStateBuffer           = 24
	vcpuMSRsVCPU             = 0
	vcpuMSRsCount            = 4
	vcpuMSRsMSRs             = 8
	vcpuMSRSize              = 16
	machphysListSize         = 24
	machphysListMaxExtents   = 0
	machphysListExtentStart  = 8
	machphysListNrExtents    = 16
	extVCPUContextMaxSize    = 128
	machphysMaxChunksPerCall = 1 << 16
)

// MaximumRAMPage returns the highest machine frame number of the host
// (XENMEM_maximum_ram_page), the bound of the machine-to-physical table.
func (x *Xen) MaximumRAMPage() (uint64, error) {
	r, err := x.Call(OpMemory, [5]uint64{xenmemMaximumRAMPage, 0}, Safe)
	if err != nil {
		return 0, &Error{Op: "maximum_ram_page", Domain: DomidXen, Err: err}
	}
	return r, nil
}

// MachphysMFNList returns the machine frames of the first max chunks of
// the machine-to-physical table (XENMEM_machphys_mfn_list): entry i is
// the first of the 512 contiguous frames of chunk i.
func (x *Xen) MachphysMFNList(max int) ([]uint64, error) {
	if max <= 0 || max > machphysMaxChunksPerCall {
		return nil, &Error{Op: "machphys_mfn_list", Domain: DomidXen, Err: fmt.Errorf("%d chunks asked, want 1 to %d", max, machphysMaxChunksPerCall)}
	}
	ext, err := Get[uint64](x.Pool, max, Out)
	if err != nil {
		return nil, err
	}
	defer ext.Free()
	arg, err := x.Pool.Get(machphysListSize, InOut)
	if err != nil {
		return nil, err
	}
	defer arg.Free()
	a := arg.Bytes()
	le.PutUint32(a[machphysListMaxExtents:], uint32(max))
	le.PutUint64(a[machphysListExtentStart:], ext.Addr())
	if _, err := x.Call(OpMemory, [5]uint64{xenmemMachphysMFNList, arg.Addr()}, Safe); err != nil {
		return nil, &Error{Op: "machphys_mfn_list", Domain: DomidXen, Err: err}
	}
	n := int(le.Uint32(a[machphysListNrExtents:]))
	if n > max {
		return nil, &Error{Op: "machphys_mfn_list", Domain: DomidXen, Err: fmt.Errorf("%d chunks returned for %d slots", n, max)}
	}
	return append([]uint64(nil), ext.Slice()[:n]...), nil
}

// GetAddressSize returns a PV guest's address size in bits, 32 or 64
// (XEN_DOMCTL_get_address_size); its width in bytes is a quarter of it.
func (x *Xen) GetAddressSize(dom uint32) (uint32, error) {
	var size uint32
	err := x.domctl("get_address_size", domctlGetAddressSize, dom, Safe, nil, func(u []byte) {
		size = le.Uint32(u[addrSizeSize:])
	})
	return size, err
}

// VCPUOnline reports whether a vCPU is up (XEN_DOMCTL_getvcpuinfo's
// online).
func (x *Xen) VCPUOnline(dom, vcpu uint32) (bool, error) {
	var online bool
	err := x.domctl("getvcpuinfo", domctlGetVCPUInfo, dom, Safe, func(u []byte) {
		le.PutUint32(u[vcpuInfoVCPU:], vcpu)
	}, func(u []byte) { online = u[vcpuInfoOnline] != 0 })
	return online, err
}

// GetExtVCPUContext returns a PV vCPU's extended context
// (XEN_DOMCTL_get_ext_vcpucontext): struct xen_domctl_ext_vcpucontext as
// long as Xen says it is (its size field), empty when Xen has none.
func (x *Xen) GetExtVCPUContext(dom, vcpu uint32) ([]byte, error) {
	var out []byte
	var bad uint32
	err := x.domctl("get_ext_vcpucontext", domctlGetExtVCPUContext, dom, Safe, func(u []byte) {
		le.PutUint32(u[extVCPUVCPU:], vcpu)
	}, func(u []byte) {
		n := le.Uint32(u[extVCPUSize:])
		if n > extVCPUContextMaxSize || int(n) > len(u) {
			bad = n
			return
		}
		out = append([]byte(nil), u[:n]...)
	})
	if err == nil && bad != 0 {
		err = &Error{Op: "get_ext_vcpucontext", Domain: dom, Err: fmt.Errorf("size %d beyond %d bytes", bad, extVCPUContextMaxSize)}
	}
	return out, err
}

// GetVCPUExtState returns a vCPU's XSAVE state (XEN_DOMCTL_getvcpuextstate):
// one call for the feature mask and size, one for the data. It returns nil
// when the vCPU has no extended state (a zero mask or size).
func (x *Xen) GetVCPUExtState(dom, vcpu uint32) ([]byte, error) {
	var mask, size uint64
	err := x.domctl("getvcpuextstate", domctlGetVCPUExtState, dom, Safe, func(u []byte) {
		le.PutUint32(u[extStateVCPU:], vcpu)
	}, func(u []byte) {
		mask, size = le.Uint64(u[extStateXFeatureMask:]), le.Uint64(u[extStateSize:])
	})
	if err != nil || mask == 0 || size == 0 {
		return nil, err
	}
	if size > 1<<20 {
		return nil, &Error{Op: "getvcpuextstate", Domain: dom, Err: fmt.Errorf("state of %d bytes", size)}
	}
	buf, err := x.Pool.Get(int(size), Out)
	if err != nil {
		return nil, err
	}
	defer buf.Free()
	err = x.domctl("getvcpuextstate", domctlGetVCPUExtState, dom, Safe, func(u []byte) {
		le.PutUint32(u[extStateVCPU:], vcpu)
		le.PutUint64(u[extStateXFeatureMask:], mask)
		le.PutUint64(u[extStateSize:], size)
		le.PutUint64(u[extStateBuffer:], buf.Addr())
	}, func(u []byte) { size = le.Uint64(u[extStateSize:]) })
	if err != nil {
		return nil, err
	}
	if size > uint64(len(buf.Bytes())) {
		return nil, &Error{Op: "getvcpuextstate", Domain: dom, Err: fmt.Errorf("state grew to %d bytes", size)}
	}
	return append([]byte(nil), buf.Bytes()[:size]...), nil
}

// GetVCPUMSRs returns the MSRs Xen keeps for a PV vCPU
// (XEN_DOMCTL_get_vcpu_msrs): xen_domctl_vcpu_msr_t entries of 16 bytes
// (index, flags, value), only those in use; nil when none.
func (x *Xen) GetVCPUMSRs(dom, vcpu uint32) ([]byte, error) {
	var count uint32
	err := x.domctl("get_vcpu_msrs", domctlGetVCPUMSRs, dom, Safe, func(u []byte) {
		le.PutUint32(u[vcpuMSRsVCPU:], vcpu)
	}, func(u []byte) { count = le.Uint32(u[vcpuMSRsCount:]) })
	if err != nil || count == 0 {
		return nil, err
	}
	if count > 4096 {
		return nil, &Error{Op: "get_vcpu_msrs", Domain: dom, Err: fmt.Errorf("%d MSRs", count)}
	}
	buf, err := x.Pool.Get(int(count)*vcpuMSRSize, Out)
	if err != nil {
		return nil, err
	}
	defer buf.Free()
	max := count
	err = x.domctl("get_vcpu_msrs", domctlGetVCPUMSRs, dom, Safe, func(u []byte) {
		le.PutUint32(u[vcpuMSRsVCPU:], vcpu)
		le.PutUint32(u[vcpuMSRsCount:], max)
		le.PutUint64(u[vcpuMSRsMSRs:], buf.Addr())
	}, func(u []byte) { count = le.Uint32(u[vcpuMSRsCount:]) })
	if err != nil {
		return nil, err
	}
	if count > max {
		return nil, &Error{Op: "get_vcpu_msrs", Domain: dom, Err: fmt.Errorf("%d MSRs written for %d slots", count, max)}
	}
	if count == 0 {
		return nil, nil
	}
	return append([]byte(nil), buf.Bytes()[:count*vcpuMSRSize]...), nil
}
