package memtest

import "testing"

var sink []byte

func TestAllocated(t *testing.T) {
	if n := Allocated(func() { sink = make([]byte, 1<<20) }); n < 1<<20 || n > 2<<20 {
		t.Fatalf("a 1 MiB allocation measured as %d bytes", n)
	}
	if n, _ := AllocatedErr(func() error { return nil }); n > 64<<10 {
		t.Fatalf("nothing measured as %d bytes", n)
	}
}
