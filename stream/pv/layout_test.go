package pv

import (
	"encoding/binary"
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// TestLayoutsAgainstC compares every field offset and size of both context
// layouts with libxen-dev's xen/foreign/x86_64.h and x86_32.h, the layouts
// libxc's save and restore use for guests of each width.
func TestLayoutsAgainstC(t *testing.T) {
	facts := map[string]uint64{
		"sizeof(struct vcpu_guest_context_x86_64)": uint64(binary.Size(Context64{})),
		"sizeof(struct vcpu_guest_context_x86_32)": uint64(binary.Size(Context32{})),
		"sizeof(struct cpu_user_regs_x86_64)":      uint64(binary.Size(UserRegs64{})),
		"sizeof(struct cpu_user_regs_x86_32)":      uint64(binary.Size(UserRegs32{})),
		"sizeof(struct trap_info_x86_64)":          uint64(binary.Size(TrapInfo64{})),
		"sizeof(struct trap_info_x86_32)":          uint64(binary.Size(TrapInfo32{})),
		"VGCF_i387_valid":                          FlagI387Valid,
		"VGCF_in_kernel":                           FlagInKernel,
		"VGCF_failsafe_disables_events":            FlagFailsafeDisablesEvents,
		"VGCF_syscall_disables_events":             FlagSyscallDisablesEvents,
		"VGCF_online":                              FlagOnline,
	}
	cheader.Fields(facts, "struct vcpu_guest_context_x86_64", "", 0, Context64{})
	cheader.Fields(facts, "struct vcpu_guest_context_x86_32", "", 0, Context32{})
	cheader.Fields(facts, "struct cpu_user_regs_x86_64", "", 0, UserRegs64{})
	cheader.Fields(facts, "struct cpu_user_regs_x86_32", "", 0, UserRegs32{})
	cheader.Fields(facts, "struct trap_info_x86_64", "", 0, TrapInfo64{})
	cheader.Fields(facts, "struct trap_info_x86_32", "", 0, TrapInfo32{})
	cheader.Fields(facts, "struct xen_domctl_ext_vcpucontext", "", 0, Extended{})
	cheader.Fields(facts, "struct shared_info_x86_64", "arch.", SharedInfoArch64, ArchSharedInfo{})
	facts["offsetof(struct shared_info_x86_64, evtchn_pending)"] = SharedInfoEvtchnPending64
	facts["offsetof(struct shared_info_x86_64, evtchn_mask)"] = SharedInfoEvtchnMask64
	facts["offsetof(struct shared_info_x86_64, wc_version)"] = SharedInfoWallclock64
	facts["sizeof(struct vcpu_info_x86_64)"] = VCPUInfoSize
	facts["XEN_LEGACY_MAX_VCPUS_X86_64"] = LegacyMaxVCPUs
	facts["FIRST_RESERVED_GDT_ENTRY"] = FirstReservedGDTEntry
	for f, off := range map[string]uint64{"nr_pages": StartInfoNrPages, "shared_info": StartInfoSharedInfo, "flags": StartInfoFlags,
		"store_mfn": StartInfoStoreMFN, "store_evtchn": StartInfoStoreEvtchn, "console.domU.mfn": StartInfoConsoleMFN,
		"console.domU.evtchn": StartInfoConsoleEvtchn} {
		facts["offsetof(struct start_info, "+f+")"] = off
	}
	facts["sizeof(struct xen_domctl_ext_vcpucontext)"] = ExtendedSize
	facts["offsetof(struct xen_domctl_ext_vcpucontext, mcg_cap)"] = 32
	facts["offsetof(struct xen_domctl_ext_vcpucontext, vmce.mcg_ext_ctl)"] = 32 + 24
	cheader.CompareWith(t, "#include <xen/foreign/x86_32.h>\n#include <xen/foreign/x86_64.h>", facts)
	t.Logf("%d layout facts agree with the C headers", len(facts))
}
