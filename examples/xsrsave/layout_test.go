//go:build linux

package main

import (
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// cLayout lists every offset, size and number xsrsave still writes by hand
// (the rest is package hypercall's, checked there), as C expressions over
// Xen's public headers, with the value the Go code uses.
var cLayout = []struct {
	expr string
	goes int
}{
	{"offsetof(vcpu_guest_context_t, user_regs) + offsetof(struct cpu_user_regs, rax)", vcpuContextRAX},
	{"HVM_PARAM_CALLBACK_IRQ", hvmParamCallbackIRQ},
	{"HVM_PARAM_STORE_PFN", int(ringParams[0])},
	{"HVM_PARAM_CONSOLE_PFN", int(ringParams[1])},
	{"SHUTDOWN_suspend", ShutdownSuspend},
	{"XEN_DOMCTL_PFINFO_XTAB", int(PageTypeXTab)},
	{"XEN_DOMCTL_PFINFO_BROKEN", int(PageTypeBroken)},
	{"XEN_DOMCTL_PFINFO_XALLOC", int(PageTypeXAlloc)},
}

// TestLayoutAgainstXenHeaders compares with Xen's public headers (Debian:
// apt-get install libxen-dev); it skips loudly without gcc or the headers.
func TestLayoutAgainstXenHeaders(t *testing.T) {
	want := map[string]uint64{}
	for _, c := range cLayout {
		want[c.expr] = uint64(c.goes)
	}
	cheader.Compare(t, want)
}
