//go:build linux

package labtest

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestLabDom0 proves the harness itself: dom0 has the Xen devices and xl
// sees Domain-0.
func TestLabDom0(t *testing.T) {
	Require(t)
	for _, dev := range []string{"/dev/xen/privcmd", "/dev/xen/hypercall", "/dev/xen/xenbus",
		"/dev/xen/gntdev", "/dev/xen/gntalloc", "/dev/xen/evtchn"} {
		if _, err := os.Stat(dev); err != nil {
			t.Errorf("%s: %v", dev, err)
		}
	}
	if out := Run(t, "xl", "list"); !strings.Contains(out, "Domain-0") {
		t.Fatalf("xl list has no Domain-0:\n%s", out)
	}
	if out := Run(t, "xenstore-read", "/xensr-lab/xenstored"); strings.TrimSpace(out) == "" {
		t.Fatal("xenstored flavour not recorded")
	}
}

// TestLabGuests creates the PV and the PVH guest and watches their counters
// rise.
func TestLabGuests(t *testing.T) {
	Require(t)
	for _, cfg := range []string{GuestPV, GuestPVH} {
		t.Run(cfg, func(t *testing.T) {
			name := CreateGuest(t, cfg)
			c := Counter(name)
			if got := WaitCounter(t, name, c, time.Minute); got <= c {
				t.Fatalf("counter of %s did not rise: %d -> %d", name, c, got)
			}
		})
	}
}
