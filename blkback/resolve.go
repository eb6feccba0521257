package blkback

import (
	"fmt"

	"github.com/xensr/xensr/grant"
)

// entriesPerFrame is how many version-1 grant entries one grant-table frame
// holds.
const entriesPerFrame = 4096 / grant.EntrySizeV1

// TableResolver returns a grant.Resolver that reads the granting domain's
// grant table (version 1, as Linux guests use it): mapFrame maps frame idx
// of domain dom's shared grant table read-only and returns it with a
// function that unmaps it. The entry must permit access; its frame is the
// guest frame behind the grant (a GFN for HVM and PVH guests).
func TableResolver(mapFrame func(dom uint32, idx uint32) ([]byte, func() error, error)) grant.Resolver {
	return func(g grant.Grant) (uint64, error) {
		page, unmap, err := mapFrame(g.Domid, uint32(g.Ref)/entriesPerFrame)
		if err != nil {
			return 0, fmt.Errorf("blkback: grant table frame %d of dom%d: %w", uint32(g.Ref)/entriesPerFrame, g.Domid, err)
		}
		defer unmap()
		off := int(uint32(g.Ref)%entriesPerFrame) * grant.EntrySizeV1
		e := grant.DecodeV1(page[off : off+grant.EntrySizeV1])[0]
		if e.Flags&grant.TypeMask != grant.TypePermitAccess {
			return 0, fmt.Errorf("blkback: dom%d grant %d is %s, not permit_access", g.Domid, g.Ref, grant.FlagsString(e.Flags))
		}
		return uint64(e.Frame), nil
	}
}
