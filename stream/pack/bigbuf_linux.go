//go:build linux

package pack

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on amd64 and arm64 (with
// 4 KiB base pages).
const hugePage = 2 << 20

// A bufArena hands out Pack's large buffers (page blocks, compressed
// blocks, skeleton blocks) from anonymous mappings outside the Go heap,
// advised to be backed by transparent huge pages: on some virtual machines
// the first touch of each 4 KiB page of fresh memory costs 15-20 us, more
// than compressing it, and a buffer touched 2 MiB at a time takes one fault
// where it took 512. (The kernel's THP setting "madvise", common, honours
// the advice; with "never" the buffers are ordinary pages.) Everything is
// unmapped by release, once no goroutine holds a buffer.
type bufArena struct {
	mu   sync.Mutex
	maps [][]byte
}

// alloc returns an empty buffer of capacity at least size.
func (a *bufArena) alloc(size int) []byte {
	if size < hugePage/2 {
		return make([]byte, 0, size)
	}
	n := (size + hugePage - 1) &^ (hugePage - 1)
	// Mapped one huge page longer, so that the buffer can start on a
	// huge-page boundary.
	m, err := unix.Mmap(-1, 0, n+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, 0, size)
	}
	unix.Madvise(m, unix.MADV_HUGEPAGE) // advice: ignored where not supported
	a.mu.Lock()
	a.maps = append(a.maps, m)
	a.mu.Unlock()
	return alignHuge(m, n)
}

// alignHuge returns an empty slice of m of capacity n starting at m's first
// huge-page boundary (m holds n bytes past it). Recent kernels align large
// anonymous mappings themselves; older ones do not.
func alignHuge(m []byte, n int) []byte {
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&m[0])) & (hugePage - 1)); r != 0 {
		skip = hugePage - r
	}
	return m[skip : skip : skip+n]
}

// release unmaps every buffer alloc returned.
func (a *bufArena) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.maps {
		unix.Munmap(m)
	}
	a.maps = nil
}
