//go:build linux

package migrate

import (
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// cLayout lists every offset, size and number package migrate writes by hand
// (the rest is package hypercall's, checked there), as C expressions over
// Xen's public headers, with the value the Go code uses.
var cLayout = []struct {
	expr string
	goes int
}{
	{"offsetof(vcpu_guest_context_t, user_regs) + offsetof(struct cpu_user_regs, rax)", vcpuContextRAX},
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
