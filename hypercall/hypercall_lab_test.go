//go:build linux

package hypercall_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/labtest"
)

func openXen(t *testing.T) *hypercall.Xen {
	t.Helper()
	x, err := hypercall.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := x.Close(); err != nil {
			t.Errorf("Close: %v", err) // leaked buffers fail the test
		}
	})
	if !x.Pool.Pinned() {
		t.Fatal("lab dom0 has /dev/xen/hypercall, but the pool is not pinned")
	}
	return x
}

func domid(t *testing.T, name string) uint32 {
	id, err := strconv.Atoi(strings.TrimSpace(labtest.Run(t, "xl", "domid", name)))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(id)
}

// TestLabVersionAndDomains compares with xl info and xl list.
func TestLabVersionAndDomains(t *testing.T) {
	labtest.Require(t)
	x := openXen(t)
	name := labtest.CreateGuest(t, labtest.GuestPV2)
	ma, mi, err := x.Version()
	if err != nil {
		t.Fatal(err)
	}
	info := labtest.Run(t, "xl", "info")
	if !strings.Contains(info, "xen_major              : "+strconv.Itoa(int(ma))) || !strings.Contains(info, "xen_minor              : "+strconv.Itoa(int(mi))) {
		t.Fatalf("Version %d.%d disagrees with xl info:\n%s", ma, mi, info)
	}
	caps, err := x.Capabilities()
	if err != nil || !strings.Contains(info, strings.TrimSpace(caps)) {
		t.Fatalf("Capabilities %q (%v) not in xl info", caps, err)
	}
	doms, err := x.GetDomainInfoList(0, 64)
	if err != nil {
		t.Fatal(err)
	}
	id := domid(t, name)
	var found bool
	for _, d := range doms {
		if d.Domain == id {
			found = true
			if d.OnlineVCPUs != 2 || d.TotPages*4096>>20 < 180 || d.TotPages*4096>>20 > 200 {
				t.Errorf("guest2: %d vCPUs, %d MiB; want 2 and ~192", d.OnlineVCPUs, d.TotPages*4096>>20)
			}
			one, err := x.GetDomainInfo(id)
			if err != nil || one.UUID() != d.UUID() {
				t.Errorf("GetDomainInfo: %v, uuid %s vs %s", err, one.UUID(), d.UUID())
			}
			if uuid := labtest.Run(t, "xl", "list", "-l", name); !strings.Contains(uuid, d.UUID()) {
				t.Errorf("uuid %s not in xl list -l", d.UUID())
			}
		}
	}
	if !found || doms[0].Domain != 0 {
		t.Fatalf("domain list %+v lacks dom0 or guest %d", doms, id)
	}
}

// TestLabPauseUnpause pauses a guest with the hypercall and watches xl and
// the guest's counter agree.
func TestLabPauseUnpause(t *testing.T) {
	labtest.Require(t)
	x := openXen(t)
	name := labtest.Guest(t, labtest.GuestPVH)
	id := domid(t, name)
	if err := x.PauseDomain(id); err != nil {
		t.Fatal(err)
	}
	d, err := x.GetDomainInfo(id)
	if err != nil {
		t.Fatal(err)
	}
	xl := labtest.Run(t, "xl", "list", name)
	f := strings.Fields(strings.Split(strings.TrimSpace(xl), "\n")[1])
	if len(f) < 5 || !strings.Contains(f[4], "p") || d.Flags&hypercall.DomainPaused == 0 {
		t.Fatalf("not paused: flags %#x (state %s); xl list:\n%s", d.Flags, d.State(), xl)
	}
	c := labtest.Counter(name)
	time.Sleep(3 * time.Second)
	if c2 := labtest.Counter(name); c2 > c+1 {
		t.Fatalf("paused guest counted on: %d -> %d", c, c2)
	}
	if err := x.UnpauseDomain(id); err != nil {
		t.Fatal(err)
	}
	labtest.WaitCounter(t, name, c+1, time.Minute)
}

// TestLabLogDirtyPVH enables log-dirty on a running PVH guest (HAP) and
// reads a bitmap with dirty pages; it also reads the state a save needs.
func TestLabLogDirtyPVH(t *testing.T) {
	labtest.Require(t)
	x := openXen(t)
	name := labtest.Guest(t, labtest.GuestPVH)
	id := domid(t, name)
	max, err := x.MaximumGPFN(id)
	if err != nil || max == 0 {
		t.Fatalf("MaximumGPFN = %d, %v", max, err)
	}
	if err := x.EnableLogDirty(id); err != nil {
		t.Fatal(err)
	}
	defer x.DisableLogDirty(id)
	bm := hypercall.NewDirtyBitmap(max + 1)
	if _, err := x.CleanDirty(id, bm); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the guest prints, so it dirties pages
	bm.Clear()
	st, err := x.CleanDirty(id, bm)
	if err != nil {
		t.Fatal(err)
	}
	if bm.Count() == 0 {
		t.Fatalf("no dirty pages after 3 s of a running guest (stats %+v)", st)
	}
	t.Logf("LOGDIRTY dirty pages in 3 s: %d of %d frames (stats %+v)", bm.Count(), max+1, st)
	if ctx, err := x.GetHVMContext(id); err != nil || len(ctx) < 64 {
		t.Fatalf("GetHVMContext: %d bytes, %v", len(ctx), err)
	}
	if store, err := x.GetHVMParam(id, 1); err != nil || store == 0 { // HVM_PARAM_STORE_PFN
		t.Fatalf("store pfn %d, %v", store, err)
	}
	leaves, msrs, err := x.GetCPUPolicy(id)
	if err != nil || len(leaves) == 0 || len(msrs) == 0 {
		t.Fatalf("cpu policy: %d/%d bytes, %v", len(leaves), len(msrs), err)
	}
	if _, err := x.GetTSCInfo(id); err != nil {
		t.Fatal(err)
	}
}
