package hypercall

import (
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// TestLayoutsAgainstC compares every offset, size and number this package
// encodes with the C headers of Debian's libxen-dev (Xen 4.17).
func TestLayoutsAgainstC(t *testing.T) {
	ours := map[string]uint64{
		"sizeof(struct xen_domctl)": domctlSize, "offsetof(struct xen_domctl, u)": domctlUnion,
		"sizeof(struct xen_sysctl)": sysctlSize, "offsetof(struct xen_sysctl, u)": sysctlUnion,
		"XEN_DOMCTL_destroydomain": domctlDestroyDomain, "XEN_DOMCTL_resumedomain": domctlResumeDomain,
		"XEN_DOMCTL_getvcpucontext": domctlGetVCPUContext, "XEN_DOMCTL_setvcpucontext": domctlSetVCPUContext,
		"offsetof(struct xen_domctl_vcpucontext, vcpu)": vcpuctxVCPU, "offsetof(struct xen_domctl_vcpucontext, ctxt)": vcpuctxCtxt,
		"sizeof(vcpu_guest_context_t)": VCPUContextSize,
		"XEN_DOMCTL_pausedomain":       domctlPauseDomain, "XEN_DOMCTL_unpausedomain": domctlUnpauseDomain,
		"XEN_DOMCTL_getdomaininfo": domctlGetDomainInfo, "XEN_DOMCTL_shadow_op": domctlShadowOp,
		"XEN_DOMCTL_gethvmcontext": domctlGetHVMContext, "XEN_DOMCTL_sethvmcontext": domctlSetHVMContext,
		"XEN_DOMCTL_gettscinfo": domctlGetTSCInfo, "XEN_DOMCTL_getpageframeinfo3": domctlGetPageFrameInfo3,
		"XEN_DOMCTL_get_cpu_policy": domctlGetCPUPolicy, "XEN_SYSCTL_getdomaininfolist": sysctlGetDomainInfoList,
		"XEN_DOMCTL_SHADOW_OP_OFF": shadowOpOff, "XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY": shadowOpEnableLogDirty,
		"XEN_DOMCTL_SHADOW_OP_CLEAN": shadowOpClean, "XEN_DOMCTL_SHADOW_OP_PEEK": shadowOpPeek,
		"__HYPERVISOR_memory_op": OpMemory, "__HYPERVISOR_xen_version": OpXenVersion,
		"__HYPERVISOR_hvm_op": OpHVM, "__HYPERVISOR_sysctl": OpSysctl, "__HYPERVISOR_domctl": OpDomctl,
		"XENMEM_maximum_gpfn": xenmemMaximumGPFN, "HVMOP_get_param": hvmopGetParam, "XENVER_version": 0, "XENVER_extraversion": 1, "XENVER_capabilities": 3,
		"XEN_DOMINF_dying": DomainDying, "XEN_DOMINF_hvm_guest": DomainHVM, "XEN_DOMINF_shutdown": DomainShutdown,
		"XEN_DOMINF_paused": DomainPaused, "XEN_DOMINF_blocked": DomainBlocked, "XEN_DOMINF_running": DomainRunning,
		"XEN_DOMINF_debugged": DomainDebugged, "XEN_DOMINF_xs_domain": DomainXenstore, "XEN_DOMINF_hap": DomainHAP,
		"sizeof(struct xen_domctl_getdomaininfo)": gdiSize,
		"sizeof(struct xen_hvm_param)":            hvmParamSize, "offsetof(struct xen_hvm_param, domid)": hvmParamDomid,
		"offsetof(struct xen_hvm_param, index)": hvmParamIndex, "offsetof(struct xen_hvm_param, value)": hvmParamValue,
		"sizeof(struct xen_domctl_tsc_info)": tscInfoSize, "sizeof(xen_cpuid_leaf_t)": cpuidLeafSize, "sizeof(xen_msr_entry_t)": msrEntrySize,
	}
	for field, off := range map[string]uint64{"domain": gdiDomain, "flags": gdiFlags, "tot_pages": gdiTotPages, "max_pages": gdiMaxPages,
		"outstanding_pages": gdiOutstanding, "shr_pages": gdiShrPages, "paged_pages": gdiPagedPages, "shared_info_frame": gdiSharedInfoFrame,
		"cpu_time": gdiCPUTime, "nr_online_vcpus": gdiOnlineVCPUs, "max_vcpu_id": gdiMaxVCPUID, "ssidref": gdiSSIDRef, "handle": gdiHandle,
		"cpupool": gdiCPUPool, "gpaddr_bits": gdiGPAddrBits, "arch_config": gdiArchConfig} {
		ours["offsetof(struct xen_domctl_getdomaininfo, "+field+")"] = off
	}
	for field, off := range map[string]uint64{"first_domain": gdilFirstDomain, "max_domains": gdilMaxDomains, "buffer": gdilBuffer, "num_domains": gdilNumDomains} {
		ours["offsetof(struct xen_sysctl_getdomaininfolist, "+field+")"] = off
	}
	for field, off := range map[string]uint64{"op": shadowOp, "mode": shadowMode, "mb": shadowMB, "dirty_bitmap": shadowBitmap, "pages": shadowPages, "stats": shadowStats} {
		ours["offsetof(struct xen_domctl_shadow_op, "+field+")"] = off
	}
	for field, off := range map[string]uint64{"tsc_mode": 0, "gtsc_khz": 4, "incarnation": 8, "elapsed_nsec": 16} {
		ours["offsetof(struct xen_domctl_tsc_info, "+field+")"] = off
	}
	for expr, off := range map[string]uint64{
		"offsetof(struct xen_domctl_hvmcontext, size)": hvmctxSize, "offsetof(struct xen_domctl_hvmcontext, buffer)": hvmctxBuffer,
		"offsetof(struct xen_domctl_getpageframeinfo3, num)": gpfi3Num, "offsetof(struct xen_domctl_getpageframeinfo3, array)": gpfi3Array,
		"offsetof(struct xen_domctl_cpu_policy, nr_leaves)": cpuPolNrLeaves, "offsetof(struct xen_domctl_cpu_policy, nr_msrs)": cpuPolNrMSRs,
		"offsetof(struct xen_domctl_cpu_policy, leaves)": cpuPolLeaves, "offsetof(struct xen_domctl_cpu_policy, msrs)": cpuPolMSRs,
	} {
		ours[expr] = off
	}
	for name, v := range map[string]uint64{
		"CALLBACK_IRQ": HVMParamCallbackIRQ, "STORE_PFN": HVMParamStorePFN, "STORE_EVTCHN": HVMParamStoreEvtchn,
		"PAE_ENABLED": HVMParamPAEEnabled, "IOREQ_PFN": HVMParamIOREQPFN, "BUFIOREQ_PFN": HVMParamBufIOREQPFN,
		"VIRIDIAN": HVMParamViridian, "TIMER_MODE": HVMParamTimerMode, "HPET_ENABLED": HVMParamHPETEnabled,
		"IDENT_PT": HVMParamIdentPT, "ACPI_S_STATE": HVMParamACPISState, "VM86_TSS": HVMParamVM86TSS,
		"VPT_ALIGN": HVMParamVPTAlign, "CONSOLE_PFN": HVMParamConsolePFN, "CONSOLE_EVTCHN": HVMParamConsoleEvtchn,
		"ACPI_IOPORTS_LOCATION": HVMParamACPIIOPortsLocation, "NESTEDHVM": HVMParamNestedHVM,
		"PAGING_RING_PFN": HVMParamPagingRingPFN, "MONITOR_RING_PFN": HVMParamMonitorRingPFN,
		"SHARING_RING_PFN": HVMParamSharingRingPFN, "TRIPLE_FAULT_REASON": HVMParamTripleFaultReason,
		"IOREQ_SERVER_PFN": HVMParamIOREQServerPFN, "NR_IOREQ_SERVER_PAGES": HVMParamNrIOREQServerPages,
		"VM_GENERATION_ID_ADDR": HVMParamVMGenerationIDAddr, "ALTP2M": HVMParamAltp2m,
		"X87_FIP_WIDTH": HVMParamX87FIPWidth, "VM86_TSS_SIZED": HVMParamVM86TSSSized, "MCA_CAP": HVMParamMCACap,
	} {
		ours["HVM_PARAM_"+name] = v
	}
	for name, v := range map[string]uint32{"NOTAB": PageTypeNone, "L1TAB": PageTypeL1Tab, "L2TAB": PageTypeL2Tab,
		"L3TAB": PageTypeL3Tab, "L4TAB": PageTypeL4Tab, "LPINTAB": PageTypePinned, "BROKEN": PageTypeBroken,
		"XALLOC": PageTypeXAlloc, "XTAB": PageTypeXTab, "LTAB_MASK": PageTypeMask} {
		ours["XEN_DOMCTL_PFINFO_"+name] = uint64(v)
	}
	for name, v := range map[string]uint64{"poweroff": ShutdownPoweroff, "reboot": ShutdownReboot, "suspend": ShutdownSuspend,
		"crash": ShutdownCrash, "watchdog": ShutdownWatchdog, "soft_reset": ShutdownSoftReset} {
		ours["SHUTDOWN_"+name] = v
	}
	// The interface versions and struct xen_domctl_createdomain differ
	// between releases: TestVersionLayoutsAgainstC checks them.
	ours["offsetof(struct xen_arch_domainconfig, emulation_flags)"] = archEmulationFlags
	ours["offsetof(struct xen_arch_domainconfig, misc_flags)"] = archMiscFlags
	for name, v := range map[string]uint64{
		"XEN_DOMCTL_createdomain": domctlCreateDomain, "XEN_DOMCTL_max_mem": domctlMaxMem, "XEN_DOMCTL_max_vcpus": domctlMaxVCPUs,
		"XEN_DOMCTL_settscinfo": domctlSetTSCInfo, "XEN_DOMCTL_set_cpu_policy": domctlSetCPUPolicy,
		"XEN_DOMCTL_set_paging_mempool_size":                  domctlSetPagingMempoolSize,
		"offsetof(struct xen_domctl_max_vcpus, max)":          maxVCPUsMax,
		"offsetof(struct xen_domctl_max_mem, max_memkb)":      maxMemKB,
		"offsetof(struct xen_domctl_paging_mempool, size)":    pagingMempoolSize,
		"offsetof(struct xen_domctl_cpu_policy, err_leaf)":    cpuPolErrLeaf,
		"offsetof(struct xen_domctl_cpu_policy, err_subleaf)": cpuPolErrSubleaf,
		"offsetof(struct xen_domctl_cpu_policy, err_msr)":     cpuPolErrMSR,
		"XEN_DOMCTL_CDF_hvm":                                  CreateHVM, "XEN_DOMCTL_CDF_hap": CreateHAP, "XEN_DOMCTL_CDF_s3_integrity": CreateS3Integrity,
		"XEN_DOMCTL_CDF_oos_off": CreateOOSOff, "XEN_DOMCTL_CDF_xs_domain": CreateXSDomain, "XEN_DOMCTL_CDF_iommu": CreateIOMMU,
		"XEN_DOMCTL_CDF_nested_virt": CreateNestedVirt, "XEN_DOMCTL_CDF_vpmu": CreateVPMU,
		"XEN_X86_EMU_LAPIC": EmuLAPIC, "XEN_X86_EMU_HPET": EmuHPET, "XEN_X86_EMU_PM": EmuPM, "XEN_X86_EMU_RTC": EmuRTC,
		"XEN_X86_EMU_IOAPIC": EmuIOAPIC, "XEN_X86_EMU_PIC": EmuPIC, "XEN_X86_EMU_VGA": EmuVGA, "XEN_X86_EMU_IOMMU": EmuIOMMU,
		"XEN_X86_EMU_PIT": EmuPIT, "XEN_X86_EMU_USE_PIRQ": EmuUsePIRQ, "XEN_X86_EMU_VPCI": EmuVPCI, "XEN_X86_MSR_RELAXED": MiscMSRRelaxed,
		"DOMID_FIRST_RESERVED": DomidFirstReserved,
		"HVMOP_set_param":      hvmopSetParam, "XENMEM_populate_physmap": xenmemPopulatePhysmap,
		"sizeof(struct xen_memory_reservation)": memResSize, "offsetof(struct xen_memory_reservation, extent_start)": memResExtentStart,
		"offsetof(struct xen_memory_reservation, nr_extents)": memResNrExtents, "offsetof(struct xen_memory_reservation, extent_order)": memResExtentOrder,
		"offsetof(struct xen_memory_reservation, mem_flags)": memResMemFlags, "offsetof(struct xen_memory_reservation, domid)": memResDomid,
		"__HYPERVISOR_event_channel_op": OpEvtchn, "EVTCHNOP_alloc_unbound": evtchnopAllocUnbound,
		"sizeof(struct evtchn_alloc_unbound)": evtchnAllocSize, "offsetof(struct evtchn_alloc_unbound, dom)": evtchnAllocDom,
		"offsetof(struct evtchn_alloc_unbound, remote_dom)": evtchnAllocRemote, "offsetof(struct evtchn_alloc_unbound, port)": evtchnAllocPort,
		"XENMEM_resource_grant_table": ResourceGrantTable, "XENMEM_resource_grant_table_id_shared": ResourceGrantTableIDShared,
		"GNTTAB_RESERVED_CONSOLE": GrantRefConsole, "GNTTAB_RESERVED_XENSTORE": GrantRefXenstore,
		"XEN_DOMCTL_setvcpuaffinity": domctlSetVCPUAffinity, "XEN_VCPUAFFINITY_HARD": vcpuAffinityHard, "XEN_VCPUAFFINITY_SOFT": vcpuAffinitySoft,
		"offsetof(struct xen_domctl_vcpuaffinity, vcpu)": vcpuAffVCPU, "offsetof(struct xen_domctl_vcpuaffinity, flags)": vcpuAffFlags,
		"offsetof(struct xen_domctl_vcpuaffinity, cpumap_hard)": vcpuAffHard, "offsetof(struct xen_domctl_vcpuaffinity, cpumap_soft)": vcpuAffSoft,
		"offsetof(struct xenctl_bitmap, bitmap)": ctlBitmapBuf, "offsetof(struct xenctl_bitmap, nr_bits)": ctlBitmapNrBits,
	} {
		ours[name] = v
	}
	cheader.Compare(t, ours)
	t.Logf("%d layout facts agree with the C headers", len(ours))
}
