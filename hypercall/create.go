package hypercall

import (
	"fmt"
)

// Flags of struct xen_domctl_createdomain (XEN_DOMCTL_CDF_*).
const (
	CreateHVM         = 1 << 0
	CreateHAP         = 1 << 1
	CreateS3Integrity = 1 << 2
	CreateOOSOff      = 1 << 3
	CreateXSDomain    = 1 << 4
	CreateIOMMU       = 1 << 5
	CreateNestedVirt  = 1 << 6
	CreateVPMU        = 1 << 7
)

// Emulation flags of struct xen_arch_domainconfig on x86 (XEN_X86_EMU_*):
// which devices Xen emulates for an HVM container. A PVH guest has the
// local APIC only; an HVM guest everything but vPCI.
const (
	EmuLAPIC   = 1 << 0
	EmuHPET    = 1 << 1
	EmuPM      = 1 << 2
	EmuRTC     = 1 << 3
	EmuIOAPIC  = 1 << 4
	EmuPIC     = 1 << 5
	EmuVGA     = 1 << 6
	EmuIOMMU   = 1 << 7
	EmuPIT     = 1 << 8
	EmuUsePIRQ = 1 << 9
	EmuVPCI    = 1 << 10
)

// MiscMSRRelaxed is XEN_X86_MSR_RELAXED, a misc flag of
// xen_arch_domainconfig (msr_relaxed=1 in the xl config).
const MiscMSRRelaxed = 1 << 0

// CreateDomain is struct xen_domctl_createdomain (x86).
type CreateDomain struct {
	SSIDRef           uint32
	Handle            [16]byte // the domain's UUID
	Flags             uint32   // Create*
	IOMMUOpts         uint32
	MaxVCPUs          uint32
	MaxEvtchnPort     uint32
	MaxGrantFrames    int32  // < 0: Xen's default
	MaxMaptrackFrames int32  // < 0: Xen's default
	GrantOpts         uint32 // the low 4 bits: the highest grant version allowed
	VMTraceSize       uint32
	CPUPoolID         uint32
	EmulationFlags    uint32 // Emu*
	MiscFlags         uint32 // MiscMSRRelaxed
}

// encode writes c into the domctl union in layout l (the interface
// version's, see version.go); altp2m_opts, where l has it, stays zero.
func (c *CreateDomain) encode(l *createDomainLayout, u []byte) {
	le.PutUint32(u[l.ssidref:], c.SSIDRef)
	copy(u[l.handle:l.handle+16], c.Handle[:])
	le.PutUint32(u[l.flags:], c.Flags)
	le.PutUint32(u[l.iommuOpts:], c.IOMMUOpts)
	le.PutUint32(u[l.maxVCPUs:], c.MaxVCPUs)
	le.PutUint32(u[l.maxEvtchnPort:], c.MaxEvtchnPort)
	le.PutUint32(u[l.maxGrantFrames:], uint32(c.MaxGrantFrames))
	le.PutUint32(u[l.maxMaptrackFrames:], uint32(c.MaxMaptrackFrames))
	le.PutUint32(u[l.grantOpts:], c.GrantOpts)
	le.PutUint32(u[l.vmtraceSize:], c.VMTraceSize)
	le.PutUint32(u[l.cpupoolID:], c.CPUPoolID)
	le.PutUint32(u[l.arch+archEmulationFlags:], c.EmulationFlags)
	le.PutUint32(u[l.arch+archMiscFlags:], c.MiscFlags)
}

// CreateDomainOp creates a domain (XEN_DOMCTL_createdomain) and returns its
// id. dom 0 lets Xen choose the id; another value asks for that one (EEXIST
// when taken).
func (x *Xen) CreateDomainOp(dom uint32, c CreateDomain) (uint32, error) {
	l := &x.layout().createDomain
	id, err := x.domctlDom("createdomain", domctlCreateDomain, dom, Unsafe, func(u []byte) { c.encode(l, u) }, nil)
	if err != nil {
		return 0, err
	}
	if id == 0 || id >= DomidFirstReserved {
		return 0, &Error{Op: "createdomain", Domain: dom, Err: fmt.Errorf("Xen answered domain id %d", id)}
	}
	return id, nil
}

// DomidFirstReserved is DOMID_FIRST_RESERVED: ids from here on are not
// ordinary domains.
const DomidFirstReserved = 0x7ff0

// SetMaxVCPUs sets the number of vCPUs of a new domain
// (XEN_DOMCTL_max_vcpus).
func (x *Xen) SetMaxVCPUs(dom, n uint32) error {
	return x.domctl("max_vcpus", domctlMaxVCPUs, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[maxVCPUsMax:], n)
	}, nil)
}

// SetMaxMem sets a domain's memory limit in KiB (XEN_DOMCTL_max_mem).
func (x *Xen) SetMaxMem(dom uint32, kib uint64) error {
	return x.domctl("max_mem", domctlMaxMem, dom, Unsafe, func(u []byte) {
		le.PutUint64(u[maxMemKB:], kib)
	}, nil)
}

// SetPagingMempoolSize sets the size in bytes of the pool Xen takes the
// domain's HAP or shadow page tables from
// (XEN_DOMCTL_set_paging_mempool_size; libxl's shadow_memkb).
func (x *Xen) SetPagingMempoolSize(dom uint32, bytes uint64) error {
	return x.domctl("set_paging_mempool_size", domctlSetPagingMempoolSize, dom, Unsafe, func(u []byte) {
		le.PutUint64(u[pagingMempoolSize:], bytes)
	}, nil)
}

// SetTSCInfo sets a domain's TSC mode and state (XEN_DOMCTL_settscinfo),
// as the X86_TSC_INFO record of a stream carries them.
func (x *Xen) SetTSCInfo(dom uint32, t TSCInfo) error {
	return x.domctl("settscinfo", domctlSetTSCInfo, dom, Unsafe, t.encode, nil)
}

// CPUPolicyError is a set_cpu_policy refusal: Xen names the CPUID leaf and
// subleaf or MSR it objected to (all ones: none).
type CPUPolicyError struct {
	Leaf, Subleaf, MSR uint32
	Err                error
}

func (e *CPUPolicyError) Error() string {
	return fmt.Sprintf("set_cpu_policy: leaf %#x subleaf %#x msr %#x: %v", e.Leaf, e.Subleaf, e.MSR, e.Err)
}

// Unwrap returns the hypercall error.
func (e *CPUPolicyError) Unwrap() error { return e.Err }

// SetCPUPolicy loads a domain's CPUID leaves and MSR entries
// (XEN_DOMCTL_set_cpu_policy), as the arrays GetCPUPolicy returns (the
// bodies of the X86_CPUID_POLICY and X86_MSR_POLICY records). A refusal is
// a *CPUPolicyError.
func (x *Xen) SetCPUPolicy(dom uint32, leaves, msrs []byte) error {
	if len(leaves)%cpuidLeafSize != 0 || len(msrs)%msrEntrySize != 0 {
		return &Error{Op: "set_cpu_policy", Domain: dom, Err: fmt.Errorf("%d CPUID bytes, %d MSR bytes: not whole entries", len(leaves), len(msrs))}
	}
	lb, err := x.Pool.Get(max(len(leaves), 1), In)
	if err != nil {
		return err
	}
	defer lb.Free()
	copy(lb.Bytes(), leaves)
	mb, err := x.Pool.Get(max(len(msrs), 1), In)
	if err != nil {
		return err
	}
	defer mb.Free()
	copy(mb.Bytes(), msrs)
	errLeaf, errSub, errMSR := ^uint32(0), ^uint32(0), ^uint32(0)
	err = x.domctl("set_cpu_policy", domctlSetCPUPolicy, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[cpuPolNrLeaves:], uint32(len(leaves)/cpuidLeafSize))
		le.PutUint32(u[cpuPolNrMSRs:], uint32(len(msrs)/msrEntrySize))
		le.PutUint64(u[cpuPolLeaves:], lb.Addr())
		le.PutUint64(u[cpuPolMSRs:], mb.Addr())
		le.PutUint32(u[cpuPolErrLeaf:], errLeaf)
		le.PutUint32(u[cpuPolErrSubleaf:], errSub)
		le.PutUint32(u[cpuPolErrMSR:], errMSR)
	}, func(u []byte) {
		errLeaf, errSub, errMSR = le.Uint32(u[cpuPolErrLeaf:]), le.Uint32(u[cpuPolErrSubleaf:]), le.Uint32(u[cpuPolErrMSR:])
	})
	if err != nil {
		return &CPUPolicyError{Leaf: errLeaf, Subleaf: errSub, MSR: errMSR, Err: err}
	}
	return nil
}

// SetHVMParam sets one HVM parameter (HVMOP_set_param).
func (x *Xen) SetHVMParam(dom uint32, index uint32, value uint64) error {
	buf, err := x.Pool.Get(hvmParamSize, In)
	if err != nil {
		return err
	}
	defer buf.Free()
	m := buf.Bytes()
	le.PutUint16(m[hvmParamDomid:], uint16(dom))
	le.PutUint32(m[hvmParamIndex:], index)
	le.PutUint64(m[hvmParamValue:], value)
	if _, err := x.Call(OpHVM, [5]uint64{hvmopSetParam, buf.Addr()}, Unsafe); err != nil {
		return &Error{Op: fmt.Sprintf("hvm set_param %d", index), Domain: dom, Err: err}
	}
	return nil
}

// PopulatePhysmap allocates memory to a domain at the guest frames gfns,
// one 4 KiB page each (XENMEM_populate_physmap, extent order 0). A partial
// allocation is an error naming how far it got.
func (x *Xen) PopulatePhysmap(dom uint32, gfns []uint64) error {
	if len(gfns) == 0 {
		return nil
	}
	arr, err := Get[uint64](x.Pool, len(gfns), InOut)
	if err != nil {
		return err
	}
	defer arr.Free()
	copy(arr.Slice(), gfns)
	res, err := x.Pool.Get(memResSize, In)
	if err != nil {
		return err
	}
	defer res.Free()
	m := res.Bytes()
	le.PutUint64(m[memResExtentStart:], arr.Addr())
	le.PutUint64(m[memResNrExtents:], uint64(len(gfns)))
	le.PutUint32(m[memResExtentOrder:], 0)
	le.PutUint32(m[memResMemFlags:], 0)
	le.PutUint16(m[memResDomid:], uint16(dom))
	n, err := x.Call(OpMemory, [5]uint64{xenmemPopulatePhysmap, res.Addr()}, Unsafe)
	if err != nil {
		return &Error{Op: "populate_physmap", Domain: dom, Err: err}
	}
	if n != uint64(len(gfns)) {
		return &Error{Op: "populate_physmap", Domain: dom, Err: fmt.Errorf("%d of %d frames populated (first missing gfn %#x)", n, len(gfns), gfns[min(n, uint64(len(gfns)-1))])}
	}
	return nil
}

// AllocUnbound allocates an event channel port in domain dom that domain
// remote may bind to (EVTCHNOP_alloc_unbound), as a toolstack does for a
// guest's xenstore and console rings.
func (x *Xen) AllocUnbound(dom, remote uint32) (uint32, error) {
	buf, err := x.Pool.Get(evtchnAllocSize, InOut)
	if err != nil {
		return 0, err
	}
	defer buf.Free()
	m := buf.Bytes()
	le.PutUint16(m[evtchnAllocDom:], uint16(dom))
	le.PutUint16(m[evtchnAllocRemote:], uint16(remote))
	if _, err := x.Call(OpEvtchn, [5]uint64{evtchnopAllocUnbound, buf.Addr()}, Unsafe); err != nil {
		return 0, &Error{Op: "evtchn alloc_unbound", Domain: dom, Err: err}
	}
	return le.Uint32(m[evtchnAllocPort:]), nil
}

// Resource types and ids of XENMEM_acquire_resource, for
// privcmd.Device.MmapResource: the grant table's shared frames.
const (
	ResourceGrantTable         = 1
	ResourceGrantTableIDShared = 0
)

// Grant references Xen reserves for the toolstack (GNTTAB_RESERVED_*): a
// restore seeds them with the console and xenstore ring frames.
const (
	GrantRefConsole  = 0
	GrantRefXenstore = 1
)
