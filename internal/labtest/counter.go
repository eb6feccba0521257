package labtest

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"
)

var counterRE = regexp.MustCompile(`counter=(\d+)`)

// CountersAfter returns the guest counters ("XENLAB-DOMU counter=N") in the
// complete lines of console log log after byte offset off. A line still
// being written is left out: "counter=5" read while xenconsoled has written
// only the first digit of 57 would look like a reboot. An offset past the
// end (the log was truncated) reads the whole log.
func CountersAfter(log string, off int64) []int {
	b, _ := os.ReadFile(log)
	if off > int64(len(b)) || off < 0 {
		off = 0
	}
	b = b[off:]
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	var cs []int
	for _, m := range counterRE.FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		cs = append(cs, n)
	}
	return cs
}

// LogSize is the size of log in bytes, 0 if it does not exist.
func LogSize(log string) int64 {
	st, err := os.Stat(log)
	if err != nil {
		return 0
	}
	return st.Size()
}

// Replay is how far back a guest counter may step after a save or a
// migration: the console ring page travels with the guest, and lines the
// old xenconsoled had not consumed when the ring was copied are printed
// again by the new one.
const Replay = 5

// GoesOn checks that the guest carried on from counter last: the counters
// printed into log after off start within Replay of last (no more than 5
// ahead), never step back more than Replay nor forward more than 5 (a
// reboot restarts at 1; lost time jumps), and pass both last+3 and end+2,
// where end is the last counter in the log when GoesOn is called, so the
// copy now running is the one counting. It waits up to two minutes.
func GoesOn(t testing.TB, log string, last int, off int64, what string) {
	t.Helper()
	end := last + 1
	if cs := CountersAfter(log, off); len(cs) > 0 {
		end = max(end, cs[len(cs)-1])
	}
	deadline := time.Now().Add(2 * time.Minute)
	var cs []int
	for {
		cs = CountersAfter(log, off)
		if len(cs) > 0 && cs[len(cs)-1] > end+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s shows %v after offset %d (last before %d, at the start %d): the guest does not carry on", what, log, cs, off, last, end)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := checkCounters(cs, last); err != "" {
		t.Fatalf("%s: %s (%v)", what, err, cs)
	}
	t.Logf("%s: counter went on %d -> %v", what, last, cs)
}

// checkCounters is GoesOn's rule on a sequence, "" when cs goes on from last.
func checkCounters(cs []int, last int) string {
	if len(cs) == 0 {
		return "no counter"
	}
	if cs[0] < last-Replay || cs[0] > last+5 {
		return "first counter is " + strconv.Itoa(cs[0]) + "; want it to go on from " + strconv.Itoa(last)
	}
	for i := 1; i < len(cs); i++ {
		if cs[i] < cs[i-1]-Replay || cs[i] > cs[i-1]+5 {
			return "counters jump " + strconv.Itoa(cs[i-1]) + " -> " + strconv.Itoa(cs[i])
		}
	}
	return ""
}
