package labtest

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

var (
	tripleRE = regexp.MustCompile(`(d\d+v\d+) Triple fault`)
	ripRE    = regexp.MustCompile(`RIP:\s+[0-9a-f]+:\[<([0-9a-f]+)>\]`)
)

// TripleFault reads Xen's console ring (xl dmesg) for a guest's triple
// fault and names the kernel function at its RIP from dom0's
// /proc/kallsyms (the lab boots the same kernel image in dom0 and the
// guests, neither relocated); "" when there is none. CreateGuest empties
// the ring when it starts and checks it when its test ends.
func TripleFault() string {
	out, err := RunErr("xl", "dmesg")
	if err != nil {
		return ""
	}
	i := tripleRE.FindAllStringIndex(out, -1)
	if i == nil {
		return ""
	}
	last := out[i[len(i)-1][0]:]
	msg := "; Xen: " + tripleRE.FindString(last)
	m := ripRE.FindStringSubmatch(last)
	if m == nil {
		return msg
	}
	rip, _ := strconv.ParseUint(m[1], 16, 64)
	msg += fmt.Sprintf(" at RIP %#x", rip)
	// Only a guest kernel address names a function: Xen dumps its own
	// state (RIP in Xen, CS e008) when the fault left no guest frame.
	const kernelText = 0xffffffff80000000
	ks, err := os.ReadFile("/proc/kallsyms")
	if err != nil || rip < kernelText {
		return msg
	}
	var best uint64
	var sym string
	for _, l := range strings.Split(string(ks), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || a == 0 || a > rip || a < best {
			continue
		}
		best, sym = a, f[2]
	}
	if sym != "" {
		msg += fmt.Sprintf(" = %s+%#x (dom0 kallsyms)", sym, rip-best)
	}
	lines := strings.Split(last, "\n")
	return msg + "\n" + strings.Join(lines[:min(len(lines), 14)], "\n")
}
