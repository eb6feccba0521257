//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cLayout lists every offset and size the stand-in privcmd layer writes by
// hand (xendomain_linux.go, privcmd_linux.go), as C expressions over Xen's
// public headers, with the value the Go code uses.
var cLayout = []struct {
	expr string
	goes int
}{
	{"sizeof(struct xen_domctl)", 144},
	{"offsetof(struct xen_domctl, interface_version)", 4},
	{"offsetof(struct xen_domctl, domain)", 8},
	{"offsetof(struct xen_domctl, u)", 16},
	{"XEN_DOMCTL_INTERFACE_VERSION", domctlInterfaceVer},
	{"offsetof(struct xen_domctl_getdomaininfo, flags)", 4},
	{"offsetof(struct xen_domctl_getdomaininfo, tot_pages)", 8},
	{"offsetof(struct xen_domctl_getdomaininfo, max_pages)", 16},
	{"offsetof(struct xen_domctl_getdomaininfo, max_vcpu_id)", 68},
	{"offsetof(struct xen_domctl_getdomaininfo, handle)", 76},
	{"XEN_DOMINF_shutdownshift", 16},
	{"_XEN_DOMINF_hap", 8},
	{"offsetof(struct xen_domctl_shadow_op, dirty_bitmap)", 16},
	{"offsetof(struct xen_domctl_shadow_op, pages)", 24},
	{"offsetof(struct xen_domctl_hvmcontext, buffer)", 8},
	{"offsetof(struct xen_domctl_tsc_info, gtsc_khz)", 4},
	{"offsetof(struct xen_domctl_tsc_info, incarnation)", 8},
	{"offsetof(struct xen_domctl_tsc_info, elapsed_nsec)", 16},
	{"offsetof(struct xen_domctl_cpu_policy, leaves)", 8},
	{"offsetof(struct xen_domctl_cpu_policy, msrs)", 16},
	{"sizeof(xen_cpuid_leaf_t)", 24},
	{"sizeof(xen_msr_entry_t)", 16},
	{"offsetof(struct xen_domctl_getpageframeinfo3, array)", 8},
	{"offsetof(struct xen_domctl_vcpucontext, ctxt)", 8},
	{"sizeof(vcpu_guest_context_t)", vcpuContextSize},
	{"offsetof(vcpu_guest_context_t, user_regs) + offsetof(struct cpu_user_regs, rax)", vcpuContextRAX},
	{"offsetof(struct xen_hvm_param, index)", 4},
	{"offsetof(struct xen_hvm_param, value)", 8},
	{"XEN_DOMCTL_getpageframeinfo3", domctlGetPageFrameInfo3},
	{"XEN_DOMCTL_get_cpu_policy", domctlGetCPUPolicy},
	{"XEN_DOMCTL_gettscinfo", domctlGetTSCInfo},
	{"XEN_DOMCTL_resumedomain", domctlResumeDomain},
	{"XEN_DOMCTL_SHADOW_OP_CLEAN", shadowOpClean},
	{"XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY", shadowOpEnableLogDirty},
	{"XENMEM_maximum_gpfn", xenmemMaximumGPFN},
	{"HVM_PARAM_STORE_PFN", int(ringParams[0])},
	{"HVM_PARAM_CONSOLE_PFN", int(ringParams[1])},
	{"XEN_DOMCTL_PFINFO_XTAB", int(PageTypeXTab)},
	{"XEN_DOMCTL_PFINFO_BROKEN", int(PageTypeBroken)},
	{"XEN_DOMCTL_PFINFO_XALLOC", int(PageTypeXAlloc)},
	{"XS_RESUME", xsResume},
	{"XS_ERROR", xsError},
}

// TestLayoutAgainstXenHeaders compiles a C program against Xen's public
// headers (Debian: apt-get install libxen-dev) and compares. It skips
// loudly without gcc or the headers.
func TestLayoutAgainstXenHeaders(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("SKIP: gcc not installed")
	}
	if _, err := os.Stat("/usr/include/xen/domctl.h"); err != nil {
		t.Skip("SKIP: Xen headers missing (apt-get install libxen-dev)")
	}
	var src strings.Builder
	src.WriteString(`#define __XEN_TOOLS__ 1
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/memory.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/xs_wire.h>
int main(void) {
`)
	for _, c := range cLayout {
		src.WriteString("\tprintf(\"%lld\\n\", (long long)(" + c.expr + "));\n")
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "l.c"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-o", filepath.Join(dir, "l"), filepath.Join(dir, "l.c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "l")).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(cLayout) {
		t.Fatalf("%d values for %d expressions", len(lines), len(cLayout))
	}
	for i, c := range cLayout {
		v, _ := strconv.Atoi(lines[i])
		if v != c.goes {
			t.Errorf("%s = %d in C, %d in Go", c.expr, v, c.goes)
		}
	}
}
