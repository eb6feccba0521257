//go:build linux

package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestHugeHeap: hugeHeap leaves its stretch of the heap eligible for
// transparent huge pages (THPeligible in /proc/self/smaps), where the next
// large allocations (as a zstd encoder's history buffer) usually land; it
// logs whether a 16 MiB allocation did (the runtime does not promise it:
// in one CI run of 2026-12-02 it did not). Run in a fresh process, whose
// heap holds nothing else.
func TestHugeHeap(t *testing.T) {
	if os.Getenv("XSRPACK_HUGEHEAP_CHILD") == "1" {
		lo := hugeHeap()
		eligible, found := thpEligible(t, lo)
		if !found || !eligible {
			t.Fatalf("hugeHeap's stretch at %#x: in smaps %v, eligible for huge pages %v", lo, found, eligible)
		}
		b := make([]byte, 16<<20)
		at := uintptr(unsafe.Pointer(&b[0]))
		eligible, found = thpEligible(t, at)
		t.Logf("a 16 MiB allocation after hugeHeap: at %#x (stretch at %#x), eligible %v (mapping found %v)", at, lo, eligible, found)
		return
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || bytes.Contains(mode, []byte("[never]")) {
		t.Skipf("SKIP: transparent huge pages are off here (%q, %v): hugeHeap's advice has no effect to check", mode, err)
	}
	if bytes.Contains(mode, []byte("[always]")) {
		t.Skipf("SKIP: transparent huge pages are %q here: all memory is eligible, with hugeHeap or without", mode)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHugeHeap$", "-test.v")
	cmd.Env = append(os.Environ(), "XSRPACK_HUGEHEAP_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// thpEligible reports whether the mapping of this process that holds
// address at may be backed by transparent huge pages.
func thpEligible(t *testing.T, at uintptr) (eligible, found bool) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("SKIP: %v", err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := mappingRange(line); ok {
			if in {
				return false, true // the mapping had no THPeligible line
			}
			in = lo <= at && at < hi
			continue
		}
		if in && strings.HasPrefix(line, "THPeligible:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "THPeligible:")) == "1", true
		}
	}
	return false, in
}

// mappingRange parses the first line of a mapping in smaps
// ("start-end perms ...").
func mappingRange(line string) (lo, hi uintptr, ok bool) {
	r, _, ok := strings.Cut(line, " ")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(r, "-")
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 16, 64)
	y, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uintptr(x), uintptr(y), true
}
