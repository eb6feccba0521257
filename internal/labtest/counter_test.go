package labtest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCountersAfterCompleteLines(t *testing.T) {
	log := filepath.Join(t.TempDir(), "guest.log")
	// The last line is being written: "counter=5" of 57.
	os.WriteFile(log, []byte("boot\nXENLAB-DOMU counter=55\nXENLAB-DOMU counter=56\nXENLAB-DOMU counter=5"), 0o644)
	if got := CountersAfter(log, 0); !slices.Equal(got, []int{55, 56}) {
		t.Errorf("CountersAfter = %v, want [55 56]", got)
	}
	if got := CountersAfter(log, 28); !slices.Equal(got, []int{56}) {
		t.Errorf("CountersAfter(off 28) = %v, want [56]", got)
	}
	if got := CountersAfter(log, 1<<20); !slices.Equal(got, []int{55, 56}) {
		t.Errorf("CountersAfter past the end = %v, want the whole log", got)
	}
}

func TestCheckCounters(t *testing.T) {
	for _, c := range []struct {
		cs   []int
		last int
		ok   bool
	}{
		{[]int{41, 42, 43, 44}, 40, true},
		{[]int{38, 39, 40, 41, 42}, 40, true},     // console ring replayed
		{[]int{41, 42, 40, 41, 42, 43}, 40, true}, // replay after a few lines
		{[]int{1, 2, 3, 4}, 40, false},            // rebooted
		{[]int{41, 42, 1, 2, 3}, 40, false},       // rebooted later
		{[]int{60, 61}, 40, false},                // time lost
		{[]int{41, 50}, 40, false},                // jump
		{nil, 40, false},
	} {
		if got := checkCounters(c.cs, c.last) == ""; got != c.ok {
			t.Errorf("checkCounters(%v, %d) ok=%v, want %v", c.cs, c.last, got, c.ok)
		}
	}
}
