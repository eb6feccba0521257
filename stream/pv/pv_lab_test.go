//go:build linux

package pv_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xensr/xensr/internal/labtest"
)

// TestLabFullPVImage saves the lab's PV guest with `xl save` and checks
// vCPU0's decoded context against the whole image: CR3 names a PFN the
// image sends as a pinned L4 page table, and every frame the context names
// is in the image.
func TestLabFullPVImage(t *testing.T) {
	labtest.Require(t)
	name := labtest.CreateGuest(t, labtest.GuestPV)
	path := filepath.Join(t.TempDir(), "pv-lab-guest1.save")
	labtest.Run(t, "xl", "save", name, path)
	defer os.Remove(path)
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, in, true)
}
