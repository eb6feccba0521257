package hypercall

import "fmt"

// OpMMUExtOp is __HYPERVISOR_mmuext_op.
const OpMMUExtOp = 26

// MMUEXT commands a PV restore uses: pinning a page table of each level
// makes Xen validate and type it once, as the guest had it.
const (
	MMUExtPinL1 = 0
	MMUExtPinL2 = 1
	MMUExtPinL3 = 2
	MMUExtPinL4 = 3
)

const (
	domctlSetAddressSize    = 35
	domctlSetExtVCPUContext = 42
	domctlSetVCPUExtState   = 62
	domctlSetVCPUMSRs       = 73
	mmuextOpSize            = 24
	mmuextOpCmd             = 0
	mmuextOpArg1            = 8
	maxMMUExtOps            = 1024
)

// SetAddressSize sets a PV domain's address size in bits, 32 or 64
// (XEN_DOMCTL_set_address_size), before anything is loaded into it.
func (x *Xen) SetAddressSize(dom, bits uint32) error {
	return x.domctl("set_address_size", domctlSetAddressSize, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[addrSizeSize:], bits)
	}, nil)
}

// SetExtVCPUContext loads a struct xen_domctl_ext_vcpucontext as the save
// got it (its vcpu and size fields included), at most 128 bytes
// (XEN_DOMCTL_set_ext_vcpucontext).
func (x *Xen) SetExtVCPUContext(dom uint32, ctx []byte) error {
	if len(ctx) < 8 || len(ctx) > extVCPUContextMaxSize {
		return &Error{Op: "set_ext_vcpucontext", Domain: dom, Err: fmt.Errorf("context of %d bytes, want 8 to %d", len(ctx), extVCPUContextMaxSize)}
	}
	return x.domctl("set_ext_vcpucontext", domctlSetExtVCPUContext, dom, Unsafe, func(u []byte) { copy(u, ctx) }, nil)
}

// SetVCPUExtState loads a vCPU's XSAVE state (XEN_DOMCTL_setvcpuextstate).
func (x *Xen) SetVCPUExtState(dom, vcpu uint32, state []byte) error {
	if len(state) == 0 {
		return nil
	}
	buf, err := x.Pool.Get(len(state), In)
	if err != nil {
		return err
	}
	defer buf.Free()
	copy(buf.Bytes(), state)
	return x.domctl("setvcpuextstate", domctlSetVCPUExtState, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[extStateVCPU:], vcpu)
		le.PutUint64(u[extStateSize:], uint64(len(state)))
		le.PutUint64(u[extStateBuffer:], buf.Addr())
	}, nil)
}

// SetVCPUMSRs loads a vCPU's MSRs, 16 bytes each (XEN_DOMCTL_set_vcpu_msrs).
func (x *Xen) SetVCPUMSRs(dom, vcpu uint32, msrs []byte) error {
	if len(msrs) == 0 {
		return nil
	}
	if len(msrs)%vcpuMSRSize != 0 {
		return &Error{Op: "set_vcpu_msrs", Domain: dom, Err: fmt.Errorf("%d bytes is not a whole number of MSRs", len(msrs))}
	}
	buf, err := x.Pool.Get(len(msrs), In)
	if err != nil {
		return err
	}
	defer buf.Free()
	copy(buf.Bytes(), msrs)
	return x.domctl("set_vcpu_msrs", domctlSetVCPUMSRs, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[vcpuMSRsVCPU:], vcpu)
		le.PutUint32(u[vcpuMSRsCount:], uint32(len(msrs)/vcpuMSRSize))
		le.PutUint64(u[vcpuMSRsMSRs:], buf.Addr())
	}, nil)
}

// An MMUExtOp is one struct mmuext_op whose first argument is a frame.
type MMUExtOp struct {
	Cmd uint32
	MFN uint64
}

// MMUExtOps issues ops on behalf of domain dom (HYPERVISOR_mmuext_op with
// dom as the foreign domain), in batches.
func (x *Xen) MMUExtOps(dom uint32, ops []MMUExtOp) error {
	for start := 0; start < len(ops); start += maxMMUExtOps {
		part := ops[start:min(len(ops), start+maxMMUExtOps)]
		buf, err := x.Pool.Get(len(part)*mmuextOpSize, In)
		if err != nil {
			return err
		}
		m := buf.Bytes()
		for i, op := range part {
			le.PutUint32(m[i*mmuextOpSize+mmuextOpCmd:], op.Cmd)
			le.PutUint64(m[i*mmuextOpSize+mmuextOpArg1:], op.MFN)
		}
		_, err = x.Call(OpMMUExtOp, [5]uint64{buf.Addr(), uint64(len(part)), 0, uint64(dom)}, Unsafe)
		buf.Free()
		if err != nil {
			return &Error{Op: fmt.Sprintf("mmuext_op (%d ops from %d, first cmd %d mfn %#x)", len(part), start, part[0].Cmd, part[0].MFN), Domain: dom, Err: err}
		}
	}
	return nil
}

// PopulatePhysmapPV allocates one page at each PFN of a PV domain
// (XENMEM_populate_physmap) and returns the machine frames Xen gave them:
// for a PV domain Xen writes each page's MFN back over its PFN.
func (x *Xen) PopulatePhysmapPV(dom uint32, pfns []uint64) ([]uint64, error) {
	if len(pfns) == 0 {
		return nil, nil
	}
	arr, err := Get[uint64](x.Pool, len(pfns), InOut)
	if err != nil {
		return nil, err
	}
	defer arr.Free()
	copy(arr.Slice(), pfns)
	res, err := x.Pool.Get(memResSize, In)
	if err != nil {
		return nil, err
	}
	defer res.Free()
	m := res.Bytes()
	le.PutUint64(m[memResExtentStart:], arr.Addr())
	le.PutUint64(m[memResNrExtents:], uint64(len(pfns)))
	le.PutUint16(m[memResDomid:], uint16(dom))
	n, err := x.Call(OpMemory, [5]uint64{xenmemPopulatePhysmap, res.Addr()}, Unsafe)
	if err != nil {
		return nil, &Error{Op: "populate_physmap", Domain: dom, Err: err}
	}
	if n != uint64(len(pfns)) {
		return nil, &Error{Op: "populate_physmap", Domain: dom, Err: fmt.Errorf("%d of %d frames populated", n, len(pfns))}
	}
	return append([]uint64(nil), arr.Slice()...), nil
}
