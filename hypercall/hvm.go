package hypercall

import "fmt"

// GetHVMContext returns a domain's HVM context blob
// (XEN_DOMCTL_gethvmcontext): one call for the size, one for the data.
func (x *Xen) GetHVMContext(dom uint32) ([]byte, error) {
	var size uint32
	err := x.domctl("gethvmcontext", domctlGetHVMContext, dom, Safe, nil, func(u []byte) {
		size = le.Uint32(u[hvmctxSize:])
	})
	if err != nil {
		return nil, err
	}
	buf, err := x.Pool.Get(int(size), Out)
	if err != nil {
		return nil, err
	}
	defer buf.Free()
	err = x.domctl("gethvmcontext", domctlGetHVMContext, dom, Safe, func(u []byte) {
		le.PutUint32(u[hvmctxSize:], size)
		le.PutUint64(u[hvmctxBuffer:], buf.Addr())
	}, func(u []byte) { size = le.Uint32(u[hvmctxSize:]) })
	if err != nil {
		return nil, err
	}
	if int(size) > len(buf.Bytes()) {
		return nil, &Error{Op: "gethvmcontext", Domain: dom, Err: fmt.Errorf("context grew to %d bytes", size)}
	}
	return append([]byte(nil), buf.Bytes()[:size]...), nil
}

// SetHVMContext loads an HVM context blob into a domain.
func (x *Xen) SetHVMContext(dom uint32, ctx []byte) error {
	buf, err := x.Pool.Get(len(ctx), In)
	if err != nil {
		return err
	}
	defer buf.Free()
	copy(buf.Bytes(), ctx)
	return x.domctl("sethvmcontext", domctlSetHVMContext, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[hvmctxSize:], uint32(len(ctx)))
		le.PutUint64(u[hvmctxBuffer:], buf.Addr())
	}, nil)
}

// GetHVMParam returns one HVM parameter (HVMOP_get_param).
func (x *Xen) GetHVMParam(dom uint32, index uint32) (uint64, error) {
	buf, err := x.Pool.Get(hvmParamSize, InOut)
	if err != nil {
		return 0, err
	}
	defer buf.Free()
	m := buf.Bytes()
	le.PutUint16(m[hvmParamDomid:], uint16(dom))
	le.PutUint32(m[hvmParamIndex:], index)
	if _, err := x.Call(OpHVM, [5]uint64{hvmopGetParam, buf.Addr()}, Safe); err != nil {
		return 0, &Error{Op: fmt.Sprintf("hvm get_param %d", index), Domain: dom, Err: err}
	}
	return le.Uint64(m[hvmParamValue:]), nil
}

// GetPageFrameInfo3 replaces each PFN in pfns with its type in bits 28-31
// shifted as XEN_DOMCTL_PFINFO_* (PV guests).
func (x *Xen) GetPageFrameInfo3(dom uint32, pfns []uint64) error {
	buf, err := Get[uint64](x.Pool, len(pfns), InOut)
	if err != nil {
		return err
	}
	defer buf.Free()
	copy(buf.Slice(), pfns)
	err = x.domctl("getpageframeinfo3", domctlGetPageFrameInfo3, dom, Safe, func(u []byte) {
		le.PutUint64(u[gpfi3Num:], uint64(len(pfns)))
		le.PutUint64(u[gpfi3Array:], buf.Addr())
	}, nil)
	if err == nil {
		copy(pfns, buf.Slice())
	}
	return err
}

// TSCInfo is struct xen_domctl_tsc_info.
type TSCInfo struct {
	Mode, KHz, Incarnation uint32
	ElapsedNsec            uint64
}

// decode reads struct xen_domctl_tsc_info from u.
func (t *TSCInfo) decode(u []byte) {
	*t = TSCInfo{Mode: le.Uint32(u[tscMode:]), KHz: le.Uint32(u[tscKHz:]),
		Incarnation: le.Uint32(u[tscIncarnation:]), ElapsedNsec: le.Uint64(u[tscElapsedNsec:])}
}

// encode writes t as struct xen_domctl_tsc_info into u.
func (t TSCInfo) encode(u []byte) {
	le.PutUint32(u[tscMode:], t.Mode)
	le.PutUint32(u[tscKHz:], t.KHz)
	le.PutUint32(u[tscIncarnation:], t.Incarnation)
	le.PutUint64(u[tscElapsedNsec:], t.ElapsedNsec)
}

// GetTSCInfo returns a domain's TSC mode and state (XEN_DOMCTL_gettscinfo).
func (x *Xen) GetTSCInfo(dom uint32) (TSCInfo, error) {
	var t TSCInfo
	err := x.domctl("gettscinfo", domctlGetTSCInfo, dom, Safe, nil, t.decode)
	return t, err
}

// GetCPUPolicy returns a domain's CPUID leaves and MSR entries as the raw
// arrays of xen_cpuid_leaf_t (24 bytes each) and xen_msr_entry_t (16 bytes
// each), the bodies of the X86_CPUID_POLICY and X86_MSR_POLICY records.
func (x *Xen) GetCPUPolicy(dom uint32) (leaves, msrs []byte, err error) {
	var nl, nm uint32
	err = x.domctl("get_cpu_policy", domctlGetCPUPolicy, dom, Safe, nil, func(u []byte) {
		nl, nm = le.Uint32(u[cpuPolNrLeaves:]), le.Uint32(u[cpuPolNrMSRs:])
	})
	if err != nil {
		return nil, nil, err
	}
	lb, err := x.Pool.Get(int(nl)*cpuidLeafSize, Out)
	if err != nil {
		return nil, nil, err
	}
	defer lb.Free()
	mb, err := x.Pool.Get(int(nm)*msrEntrySize, Out)
	if err != nil {
		return nil, nil, err
	}
	defer mb.Free()
	err = x.domctl("get_cpu_policy", domctlGetCPUPolicy, dom, Safe, func(u []byte) {
		le.PutUint32(u[cpuPolNrLeaves:], nl)
		le.PutUint32(u[cpuPolNrMSRs:], nm)
		le.PutUint64(u[cpuPolLeaves:], lb.Addr())
		le.PutUint64(u[cpuPolMSRs:], mb.Addr())
	}, func(u []byte) { nl, nm = le.Uint32(u[cpuPolNrLeaves:]), le.Uint32(u[cpuPolNrMSRs:]) })
	if err != nil {
		return nil, nil, err
	}
	return append([]byte(nil), lb.Bytes()[:int(nl)*cpuidLeafSize]...), append([]byte(nil), mb.Bytes()[:int(nm)*msrEntrySize]...), nil
}
