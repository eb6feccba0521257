package hypercall_test

import (
	"fmt"

	"github.com/xensr/xensr/hypercall"
)

// memAllocator stands in for privcmd.BufferDevice outside dom0.
type memAllocator struct{}

func (memAllocator) Alloc(n int) ([]byte, error) { return make([]byte, n), nil }
func (memAllocator) Free([]byte) error           { return nil }
func (memAllocator) Pinned() bool                { return true }

// Typed buffers come from a pool by size class; the hot path allocates
// nothing. In dom0, hypercall.Open() returns a Xen whose pool maps pinned
// pages from /dev/xen/hypercall.
func Example() {
	pool := hypercall.NewPool(memAllocator{})
	pfns, _ := hypercall.Get[uint64](pool, 3, hypercall.InOut)
	copy(pfns.Slice(), []uint64{0x10, 0x11, 0x12})
	fmt.Println(len(pfns.Bytes()), pfns.Slice()[2], pool.Outstanding())
	pfns.Free()
	fmt.Println(pool.Outstanding(), pool.Close())

	bm := hypercall.NewDirtyBitmap(128)
	bm.Set(3)
	bm.Set(100)
	fmt.Println(bm.Count(), bm.Test(100))
	// Output:
	// 24 18 1
	// 0 <nil>
	// 2 true
}
