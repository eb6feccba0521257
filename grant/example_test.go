package grant_test

import (
	"context"
	"fmt"

	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/hypercall"
)

// memMapper stands in for grant.Device (/dev/xen/gntdev) outside dom0.
type memMapper struct{ next uint64 }

func (m *memMapper) Map(g []grant.Grant, w bool) (grant.Mapping, error) {
	m.next++
	return grant.Mapping{Handle: m.next, Mem: make([]byte, 4096*len(g))}, nil
}
func (m *memMapper) Unmap(grant.Mapping) error { return nil }

// A backend maps through a Tracker; before the last dirty-bitmap pass the
// save loop quiesces it and sends the frames it reports again.
func Example() {
	tr := grant.NewTracker(&memMapper{}, nil)
	tr.Map(grant.Request{Grants: []grant.Grant{{Domid: 5, Ref: 8}}, Frames: []uint64{0x2345}, Writable: true, Holder: "blkback ring"})
	tr.Map(grant.Request{Grants: []grant.Grant{{Domid: 5, Ref: 9}}, Frames: []uint64{0x2346}, Holder: "read-only data"})

	frames, _ := tr.Quiesce(context.Background())
	dirty := hypercall.NewDirtyBitmap(0x10000)
	grant.MergeDirty(dirty, 5, frames)
	fmt.Println(frames, dirty.Count(), len(tr.Held()))
	// Output: [{5 9029}] 1 0
}
