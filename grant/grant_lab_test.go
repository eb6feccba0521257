//go:build linux

package grant_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/labtest"
)

// TestLabTrackerOverGntdev: dom0 grants pages to itself with gntalloc, maps
// them through gntdev with the Tracker, sees writes cross, and Quiesce
// unmaps and reports the writable frames.
func TestLabTrackerOverGntdev(t *testing.T) {
	labtest.Require(t)
	al, err := grant.OpenAlloc()
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	dev, err := grant.OpenDevice()
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	share, err := al.Share(0, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Unshare(share)
	// The "frames" of dom0's pages are stand-ins here (dom0 is the granter);
	// a backend resolves real ones from the guest's grant table.
	tr := grant.NewTracker(dev, func(g grant.Grant) (uint64, error) { return 0x1000 + uint64(g.Ref), nil })
	rw, err := tr.Map(grant.Request{Grants: []grant.Grant{{Domid: 0, Ref: share.Refs[0]}}, Writable: true, Holder: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	ro, err := tr.Map(grant.Request{Grants: []grant.Grant{{Domid: 0, Ref: share.Refs[1]}}, Holder: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	copy(rw.Mapping.Mem, "written through gntdev")
	if !bytes.HasPrefix(share.Mem, []byte("written through gntdev")) {
		t.Fatal("write through the grant mapping not seen by the granter")
	}
	copy(share.Mem[4096:], "granter side")
	if !bytes.HasPrefix(ro.Mapping.Mem, []byte("granter side")) {
		t.Fatal("granter's write not seen through the read-only mapping")
	}
	// A grant copy from the granted page into local memory.
	local := make([]byte, 64)
	segs := []grant.CopySegment{{SrcGrant: grant.Grant{Domid: 0, Ref: share.Refs[0]}, DstLocal: local, Len: 22}}
	if err := tr.Do(func() error { return dev.Copy(segs) }); err != nil || segs[0].Status != 0 || string(local[:22]) != "written through gntdev" {
		t.Fatalf("grant copy: %v status %d %q", err, segs[0].Status, local[:22])
	}
	frames, err := tr.Quiesce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 1 || frames[0].GFN != 0x1000+uint64(share.Refs[0]) {
		t.Fatalf("Quiesce reported %+v, want the one writable frame", frames)
	}
	if len(tr.Held()) != 0 {
		t.Fatal("mappings left after Quiesce")
	}
	bm := hypercall.NewDirtyBitmap(1 << 16)
	if n := grant.MergeDirty(bm, 0, frames); n != 1 || !bm.Test(frames[0].GFN) {
		t.Fatal("frame not merged into the dirty bitmap")
	}
	if _, err := tr.Map(grant.Request{Grants: []grant.Grant{{Domid: 0, Ref: share.Refs[0]}}}); err == nil {
		t.Fatal("mapping allowed while quiesced")
	}
	tr.Resume()
}
