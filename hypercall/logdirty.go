package hypercall

import "math/bits"

// A DirtyBitmap has one bit per guest frame: set when the frame was written
// (or must be sent again). It is the bitmap of log-dirty CLEAN/PEEK, and
// other trackers (package grant) merge their frames into it.
type DirtyBitmap struct {
	Words []uint64
}

// NewDirtyBitmap returns a bitmap for frames 0..n-1.
func NewDirtyBitmap(n uint64) *DirtyBitmap { return &DirtyBitmap{Words: make([]uint64, (n+63)/64)} }

// Len returns the number of frames the bitmap covers.
func (d *DirtyBitmap) Len() uint64 { return uint64(len(d.Words)) * 64 }

// Set marks frame pfn; frames beyond the bitmap grow it.
func (d *DirtyBitmap) Set(pfn uint64) {
	for pfn/64 >= uint64(len(d.Words)) {
		d.Words = append(d.Words, 0)
	}
	d.Words[pfn/64] |= 1 << (pfn % 64)
}

// Test reports whether frame pfn is marked.
func (d *DirtyBitmap) Test(pfn uint64) bool {
	return pfn/64 < uint64(len(d.Words)) && d.Words[pfn/64]&(1<<(pfn%64)) != 0
}

// Count returns the number of marked frames.
func (d *DirtyBitmap) Count() int {
	n := 0
	for _, w := range d.Words {
		n += bits.OnesCount64(w)
	}
	return n
}

// Clear unmarks every frame.
func (d *DirtyBitmap) Clear() { clear(d.Words) }

// Or marks every frame marked in o.
func (d *DirtyBitmap) Or(o *DirtyBitmap) {
	for len(d.Words) < len(o.Words) {
		d.Words = append(d.Words, 0)
	}
	for i, w := range o.Words {
		d.Words[i] |= w
	}
}

// ForEach calls fn for every marked frame in ascending order until fn
// returns false.
func (d *DirtyBitmap) ForEach(fn func(pfn uint64) bool) {
	for i, w := range d.Words {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			if !fn(uint64(i)*64 + uint64(b)) {
				return
			}
			w &= w - 1
		}
	}
}

// Shadow operations (XEN_DOMCTL_SHADOW_OP_*).
const (
	shadowOpOff            = 0
	shadowOpEnableLogDirty = 2
	shadowOpClean          = 11
	shadowOpPeek           = 12
)

// LogDirtyStats are the counters a CLEAN or PEEK returns.
type LogDirtyStats struct {
	FaultCount uint32
	DirtyCount uint32
	Pages      uint64 // frames the bitmap covered
}

// EnableLogDirty starts log-dirty tracking of a domain (HAP for PVH/HVM
// guests; PV guests need shadow paging, which Debian's Xen lacks).
func (x *Xen) EnableLogDirty(dom uint32) error {
	return x.domctl("shadow_op enable_logdirty", domctlShadowOp, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[shadowOp:], shadowOpEnableLogDirty)
	}, nil)
}

// DisableLogDirty stops log-dirty tracking (SHADOW_OP_OFF).
func (x *Xen) DisableLogDirty(dom uint32) error {
	return x.domctl("shadow_op off", domctlShadowOp, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[shadowOp:], shadowOpOff)
	}, nil)
}

// CleanDirty copies the dirty bitmap into bm (covering bm.Len() frames) and
// clears Xen's. It consumes state, so an EFAULT is never retried.
func (x *Xen) CleanDirty(dom uint32, bm *DirtyBitmap) (LogDirtyStats, error) {
	return x.dirtyOp("shadow_op clean", shadowOpClean, dom, bm, Unsafe)
}

// PeekDirty copies the dirty bitmap into bm without clearing it.
func (x *Xen) PeekDirty(dom uint32, bm *DirtyBitmap) (LogDirtyStats, error) {
	return x.dirtyOp("shadow_op peek", shadowOpPeek, dom, bm, Safe)
}

func (x *Xen) dirtyOp(name string, op uint32, dom uint32, bm *DirtyBitmap, safe Safety) (LogDirtyStats, error) {
	var st LogDirtyStats
	buf, err := Get[uint64](x.Pool, len(bm.Words), Out)
	if err != nil {
		return st, err
	}
	defer buf.Free()
	err = x.domctl(name, domctlShadowOp, dom, safe, func(u []byte) {
		le.PutUint32(u[shadowOp:], op)
		le.PutUint64(u[shadowBitmap:], buf.Addr())
		le.PutUint64(u[shadowPages:], bm.Len())
	}, func(u []byte) {
		st.Pages = le.Uint64(u[shadowPages:])
		st.FaultCount = le.Uint32(u[shadowStats:])
		st.DirtyCount = le.Uint32(u[shadowStats+4:])
	})
	if err == nil {
		copy(bm.Words, buf.Slice())
	}
	return st, err
}
