package hypercall

// HVM parameter indices (public/hvm/params.h), for GetHVMParam and
// SetHVMParam.
const (
	HVMParamCallbackIRQ         = 0
	HVMParamStorePFN            = 1
	HVMParamStoreEvtchn         = 2
	HVMParamPAEEnabled          = 4
	HVMParamIOREQPFN            = 5
	HVMParamBufIOREQPFN         = 6
	HVMParamViridian            = 9
	HVMParamTimerMode           = 10
	HVMParamHPETEnabled         = 11
	HVMParamIdentPT             = 12
	HVMParamACPISState          = 14
	HVMParamVM86TSS             = 15
	HVMParamVPTAlign            = 16
	HVMParamConsolePFN          = 17
	HVMParamConsoleEvtchn       = 18
	HVMParamACPIIOPortsLocation = 19
	HVMParamNestedHVM           = 24
	HVMParamPagingRingPFN       = 27
	HVMParamMonitorRingPFN      = 28
	HVMParamSharingRingPFN      = 29
	HVMParamTripleFaultReason   = 31
	HVMParamIOREQServerPFN      = 32
	HVMParamNrIOREQServerPages  = 33
	HVMParamVMGenerationIDAddr  = 34
	HVMParamAltp2m              = 35
	HVMParamX87FIPWidth         = 36
	HVMParamVM86TSSSized        = 37
	HVMParamMCACap              = 38
)

// Page types as XEN_DOMCTL_getpageframeinfo3 reports them
// (XEN_DOMCTL_PFINFO_*): the upper nibble of the 32-bit type, returned in
// bits 28-31 of each entry. A PAGE_DATA record carries the same nibble in
// bits 60-63 of its PFN entries.
const (
	PageTypeNone   uint32 = 0x0 << 28 // an ordinary page
	PageTypeL1Tab  uint32 = 0x1 << 28 // PV page-table levels 1-4
	PageTypeL2Tab  uint32 = 0x2 << 28
	PageTypeL3Tab  uint32 = 0x3 << 28
	PageTypeL4Tab  uint32 = 0x4 << 28
	PageTypePinned uint32 = 0x8 << 28 // a pinned PV page table (flag)
	PageTypeBroken uint32 = 0xd << 28 // a broken page: no data
	PageTypeXAlloc uint32 = 0xe << 28 // allocate-only: no data
	PageTypeXTab   uint32 = 0xf << 28 // not populated: no data
	PageTypeMask   uint32 = 0xf << 28
)

// PageHasData reports whether a page of type t (PageType*) carries its
// 4096 bytes in a migration stream.
func PageHasData(t uint32) bool {
	switch t & PageTypeMask {
	case PageTypeBroken, PageTypeXAlloc, PageTypeXTab:
		return false
	}
	return true
}

// Shutdown reasons (SHUTDOWN_* of public/sched.h), as
// DomainInfo.ShutdownReason reports them.
const (
	ShutdownPoweroff  = 0
	ShutdownReboot    = 1
	ShutdownSuspend   = 2
	ShutdownCrash     = 3
	ShutdownWatchdog  = 4
	ShutdownSoftReset = 5
)
