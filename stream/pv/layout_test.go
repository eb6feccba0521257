package pv

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// layoutFacts adds, for every field of v's struct type with a `c` tag, the
// C expression offsetof(cType, prefix+tag) and its Go offset (encoding/binary
// lays fields out without padding, so every C padding byte is a Go field).
func layoutFacts(facts map[string]uint64, cType, prefix string, base uint64, v any) {
	t := reflect.TypeOf(v)
	off := base
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("c"); tag != "" {
			facts["offsetof("+cType+", "+prefix+tag+")"] = off
		}
		off += uint64(binary.Size(reflect.New(f.Type).Elem().Interface()))
	}
}

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
	layoutFacts(facts, "struct vcpu_guest_context_x86_64", "", 0, Context64{})
	layoutFacts(facts, "struct vcpu_guest_context_x86_32", "", 0, Context32{})
	layoutFacts(facts, "struct cpu_user_regs_x86_64", "", 0, UserRegs64{})
	layoutFacts(facts, "struct cpu_user_regs_x86_32", "", 0, UserRegs32{})
	layoutFacts(facts, "struct trap_info_x86_64", "", 0, TrapInfo64{})
	layoutFacts(facts, "struct trap_info_x86_32", "", 0, TrapInfo32{})
	layoutFacts(facts, "struct xen_domctl_ext_vcpucontext", "", 0, Extended{})
	layoutFacts(facts, "struct shared_info_x86_64", "arch.", SharedInfoArch64, ArchSharedInfo{})
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
	// cheader's program is main's body: close main, include the foreign
	// headers, and print from a constructor, which runs before main.
	var prints strings.Builder
	names := map[string]string{}
	i := 0
	for expr := range facts {
		name := fmt.Sprintf("v%d", i)
		names[name] = expr
		prints.WriteString(cheader.Print(name, expr))
		i++
	}
	got := cheader.Run(t, "return 0; }\n#include <xen/foreign/x86_32.h>\n#include <xen/foreign/x86_64.h>\n"+
		"__attribute__((constructor)) static int xensr_layout(void) {\n"+prints.String())
	for name, expr := range names {
		if v, ok := got[name]; !ok || v != facts[expr] {
			t.Errorf("%s: Go has %d, C has %d", expr, facts[expr], v)
		}
	}
	t.Logf("%d layout facts agree with the C headers", len(facts))
}
