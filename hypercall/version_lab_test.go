//go:build linux

package hypercall_test

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/labtest"
)

// TestLabProbe checks Probe on the lab's real Xen: Open found the
// interface versions the release table names for the flavour the harness
// booted (XENSR_LAB_XEN), and the hypervisor itself refuses every other
// known domctl version with EACCES, which is what Probe relies on.
func TestLabProbe(t *testing.T) {
	labtest.Require(t)
	x := openXen(t)
	i := x.Interface()
	rel, ok := hypercall.FindRelease(i.Major, i.Minor)
	if !ok || rel.Domctl != i.Domctl || rel.Sysctl != i.Sysctl {
		t.Fatalf("probed %v; the table says %+v (%v)", i, rel, ok)
	}
	if f := os.Getenv("XENSR_LAB_XEN"); f != "" && f != rel.String() {
		t.Fatalf("the lab booted flavour %s, Open found %v", f, i)
	}
	t.Logf("probed %v", i)
	refused := 0
	for _, r := range hypercall.Releases {
		if r.Domctl == i.Domctl {
			continue
		}
		if err := x.SetInterface(hypercall.Interface{Major: i.Major, Minor: i.Minor, Domctl: r.Domctl, Sysctl: i.Sysctl}); err != nil {
			t.Fatal(err)
		}
		_, err := x.GetDomainInfo(0)
		if !errors.Is(err, syscall.EACCES) || !errors.Is(err, hypercall.ErrInterfaceVersion) {
			t.Fatalf("domctl version %#x on %v: %v, want EACCES", r.Domctl, i, err)
		}
		refused++
	}
	if err := x.SetInterface(i); err != nil {
		t.Fatal(err)
	}
	if d, err := x.GetDomainInfo(0); err != nil || d.Domain != 0 {
		t.Fatalf("back on %v: %+v %v", i, d, err)
	}
	t.Logf("Xen %d.%d refused %d other domctl versions with EACCES", i.Major, i.Minor, refused)
}
