//go:build !linux

package main

// hugeHeap does nothing here (see heap_linux.go).
func hugeHeap() uintptr { return 0 }
