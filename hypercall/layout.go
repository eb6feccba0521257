package hypercall

// Layouts of the Xen 4.17 public structures this package encodes, as byte
// offsets. layout_test.go compares every one with offsetof/sizeof from the
// C headers.

// struct xen_domctl / xen_sysctl.
const (
	domctlSize  = 144
	domctlUnion = 16
	sysctlSize  = 136
	sysctlUnion = 8
)

// Domctl and sysctl commands.
const (
	domctlCreateDomain         = 1
	domctlMaxMem               = 11
	domctlMaxVCPUs             = 15
	domctlSetTSCInfo           = 60
	domctlSetCPUPolicy         = 83
	domctlSetPagingMempoolSize = 86
	domctlDestroyDomain        = 2
	domctlSetVCPUContext       = 12
	domctlGetVCPUContext       = 13
	domctlResumeDomain         = 27
	domctlPauseDomain          = 3
	domctlUnpauseDomain        = 4
	domctlGetDomainInfo        = 5
	domctlShadowOp             = 10
	domctlGetHVMContext        = 33
	domctlSetHVMContext        = 34
	domctlGetTSCInfo           = 59
	domctlGetPageFrameInfo3    = 61
	domctlGetCPUPolicy         = 82
	sysctlGetDomainInfoList    = 6
)

// struct xen_domctl_vcpucontext, and the size of vcpu_guest_context_t.
const (
	vcpuctxVCPU = 0
	vcpuctxCtxt = 8
	// VCPUContextSize is sizeof(vcpu_guest_context_t) on x86-64.
	VCPUContextSize = 5168
)

// struct xen_domctl_getdomaininfo.
const (
	gdiSize            = 112
	gdiDomain          = 0
	gdiFlags           = 4
	gdiTotPages        = 8
	gdiMaxPages        = 16
	gdiOutstanding     = 24
	gdiShrPages        = 32
	gdiPagedPages      = 40
	gdiSharedInfoFrame = 48
	gdiCPUTime         = 56
	gdiOnlineVCPUs     = 64
	gdiMaxVCPUID       = 68
	gdiSSIDRef         = 72
	gdiHandle          = 76
	gdiCPUPool         = 92
	gdiGPAddrBits      = 96
	gdiArchConfig      = 104
)

// struct xen_sysctl_getdomaininfolist.
const (
	gdilFirstDomain = 0
	gdilMaxDomains  = 4
	gdilBuffer      = 8
	gdilNumDomains  = 16
)

// struct xen_domctl_shadow_op.
const (
	shadowOp     = 0
	shadowMode   = 4
	shadowMB     = 8
	shadowBitmap = 16
	shadowPages  = 24
	shadowStats  = 32
)

// struct xen_domctl_hvmcontext, xen_domctl_getpageframeinfo3,
// xen_domctl_tsc_info, xen_domctl_cpu_policy, xen_hvm_param.
const (
	hvmctxSize     = 0
	hvmctxBuffer   = 8
	gpfi3Num       = 0
	gpfi3Array     = 8
	tscInfoSize    = 24
	cpuPolNrLeaves = 0
	cpuPolNrMSRs   = 4
	cpuPolLeaves   = 8
	cpuPolMSRs     = 16
	hvmParamSize   = 16
	hvmParamDomid  = 0
	hvmParamIndex  = 4
	hvmParamValue  = 8
	cpuidLeafSize  = 24
	msrEntrySize   = 16

	cpuPolErrLeaf    = 24
	cpuPolErrSubleaf = 28
	cpuPolErrMSR     = 32
	tscMode          = 0
	tscKHz           = 4
	tscIncarnation   = 8
	tscElapsedNsec   = 16
)

// struct xen_arch_domainconfig (x86). struct xen_domctl_createdomain
// differs between interface versions: createDomainLayout in version.go.
const (
	archEmulationFlags = 0
	archMiscFlags      = 4
)

// struct xen_domctl_max_vcpus, xen_domctl_max_mem,
// xen_domctl_paging_mempool.
const (
	maxVCPUsMax       = 0
	maxMemKB          = 0
	pagingMempoolSize = 0
)

// HVMOP, XENMEM and EVTCHNOP sub-operations, struct
// xen_memory_reservation and struct evtchn_alloc_unbound.
const (
	hvmopSetParam         = 0
	hvmopGetParam         = 1
	xenmemPopulatePhysmap = 6
	xenmemMaximumGPFN     = 14
	memResSize            = 32
	memResExtentStart     = 0
	memResNrExtents       = 8
	memResExtentOrder     = 16
	memResMemFlags        = 20
	memResDomid           = 24
	evtchnopAllocUnbound  = 6
	evtchnAllocSize       = 8
	evtchnAllocDom        = 0
	evtchnAllocRemote     = 2
	evtchnAllocPort       = 4
)
