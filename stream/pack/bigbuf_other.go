//go:build !linux

package pack

// A bufArena hands out Pack's large buffers; here from the Go heap.
type bufArena struct{}

// alloc returns an empty buffer of capacity at least size.
func (a *bufArena) alloc(size int) []byte { return make([]byte, 0, size) }

// release lets the buffers go (the collector frees them).
func (a *bufArena) release() {}
