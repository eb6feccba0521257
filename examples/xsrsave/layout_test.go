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

// cLayout lists every offset, size and number xsrsave still writes by hand
// (the domctls package hypercall does not wrap yet, in xendomain_linux.go),
// as C expressions over Xen's public headers, with the value the Go code
// uses.
var cLayout = []struct {
	expr string
	goes int
}{
	{"sizeof(struct xen_domctl)", domctlSize},
	{"offsetof(struct xen_domctl, interface_version)", 4},
	{"offsetof(struct xen_domctl, domain)", 8},
	{"offsetof(struct xen_domctl, u)", domctlUnion},
	{"offsetof(struct xen_domctl_vcpucontext, vcpu)", 0},
	{"offsetof(struct xen_domctl_vcpucontext, ctxt)", vcpuCtxtPtr},
	{"sizeof(vcpu_guest_context_t)", vcpuContextSize},
	{"offsetof(vcpu_guest_context_t, user_regs) + offsetof(struct cpu_user_regs, rax)", vcpuContextRAX},
	{"XEN_DOMCTL_destroydomain", domctlDestroyDomain},
	{"XEN_DOMCTL_setvcpucontext", domctlSetVCPUContext},
	{"XEN_DOMCTL_getvcpucontext", domctlGetVCPUContext},
	{"XEN_DOMCTL_resumedomain", domctlResumeDomain},
	{"HVM_PARAM_CALLBACK_IRQ", hvmParamCallbackIRQ},
	{"HVM_PARAM_STORE_PFN", int(ringParams[0])},
	{"HVM_PARAM_CONSOLE_PFN", int(ringParams[1])},
	{"SHUTDOWN_suspend", ShutdownSuspend},
	{"XEN_DOMCTL_PFINFO_XTAB", int(PageTypeXTab)},
	{"XEN_DOMCTL_PFINFO_BROKEN", int(PageTypeBroken)},
	{"XEN_DOMCTL_PFINFO_XALLOC", int(PageTypeXAlloc)},
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
#include <xen/sched.h>
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
