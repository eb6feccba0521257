//go:build linux

package pack

import (
	"testing"
	"unsafe"
)

// TestBufArena: large buffers start on a huge-page boundary (the advice
// needs whole aligned 2 MiB ranges), hold at least what was asked for, can
// be written to their capacity, and release forgets them; small ones come
// from the heap.
func TestBufArena(t *testing.T) {
	var a bufArena
	for _, size := range []int{hugePage / 2, maxPageBlock, skelCap, 3 * hugePage, 3*hugePage + 1} {
		b := a.alloc(size)
		if len(b) != 0 || cap(b) < size {
			t.Fatalf("alloc(%d): len %d cap %d", size, len(b), cap(b))
		}
		b = b[:cap(b)]
		if at := uintptr(unsafe.Pointer(&b[0])); at%hugePage != 0 {
			t.Errorf("alloc(%d) at %#x: not on a %d-byte boundary", size, at, hugePage)
		}
		b[0], b[len(b)-1] = 1, 2
	}
	if len(a.maps) != 5 {
		t.Errorf("%d mappings, want 5", len(a.maps))
	}
	if b := a.alloc(4096); cap(b) < 4096 || len(a.maps) != 5 {
		t.Errorf("alloc(4096): cap %d, %d mappings (want a heap buffer)", cap(b), len(a.maps))
	}
	a.release()
	if len(a.maps) != 0 {
		t.Errorf("%d mappings after release", len(a.maps))
	}
}

// TestAlignHuge: a mapping that does not start on a huge-page boundary (the
// kernel may align large ones itself, so one is made here by slicing) gives
// a buffer that does.
func TestAlignHuge(t *testing.T) {
	m := make([]byte, 3*hugePage)
	for _, off := range []int{0, 1, 4096, hugePage - 1, hugePage} {
		b := alignHuge(m[off:], hugePage)
		at := uintptr(unsafe.Pointer(&b[:1][0]))
		if at%hugePage != 0 || cap(b) != hugePage {
			t.Errorf("offset %d: buffer at %#x (cap %d), want a %d-byte boundary and cap %d", off, at, cap(b), hugePage, hugePage)
		}
		if start := uintptr(unsafe.Pointer(&m[off])); at < start || at-start >= hugePage {
			t.Errorf("offset %d: buffer at %#x, %d bytes past the start", off, at, at-start)
		}
	}
}
