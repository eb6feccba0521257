// Package memtest measures what a piece of code allocates, for the tests
// that hold each decoder to its documented memory bound.
package memtest

import "runtime"

// Allocated returns the bytes fn allocates (runtime.MemStats.TotalAlloc
// across the call), after a collection so that earlier garbage is not
// counted.
func Allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// AllocatedErr is Allocated for a function that returns an error.
func AllocatedErr(fn func() error) (uint64, error) {
	var err error
	n := Allocated(func() { err = fn() })
	return n, err
}
