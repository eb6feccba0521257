// Package labtest is the contract between the project's tests that need real
// Xen and the lab harness (scripts/lab.sh) that boots Xen 4.17 under QEMU and
// runs them inside dom0.
//
// A test that needs real Xen is named TestLab..., lives in a *_lab_test.go
// file and begins with Require(t). Outside the lab it is skipped with a
// message that says how to run it; inside the lab (XENSR_LAB=1, set by the
// harness) a missing Xen device fails it instead of skipping, so a broken lab
// can never pass as green.
package labtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvLab is the environment variable the harness sets to "1" inside dom0.
const EnvLab = "XENSR_LAB"

// EnvOut names the host-shared directory where lab tests may leave artifacts
// (save images, logs) for the host to collect.
const EnvOut = "XENSR_LAB_OUT"

// Guest configurations that the harness installs in dom0.
const (
	GuestPV    = "/lab/guest1.cfg" // PV, 1 vCPU, 128 MiB, name "guest1"
	GuestPV2   = "/lab/guest2.cfg" // PV, 2 vCPUs, 192 MiB, name "guest2"
	GuestPVH   = "/lab/guest3.cfg" // PVH, 1 vCPU, 128 MiB, name "guest3"
	ConsoleDir = "/var/log/xen/console"
)

// InLab reports whether the process runs inside the lab's dom0.
func InLab() bool { return os.Getenv(EnvLab) == "1" }

// Require skips t outside the lab, loudly, and fails it inside the lab when
// the Xen devices the lab promises are missing.
func Require(t testing.TB) {
	t.Helper()
	if !InLab() {
		t.Skipf("SKIP-NEEDS-XEN: %s needs real Xen; run it in the lab with `bash scripts/lab.sh` (%s is not set)", t.Name(), EnvLab)
	}
	for _, dev := range []string{"/dev/xen/privcmd", "/dev/xen/xenbus"} {
		if _, err := os.Stat(dev); err != nil {
			t.Fatalf("lab promised %s: %v", dev, err)
		}
	}
}

// OutDir returns the directory for artifacts that the host collects, or
// t.TempDir() when the harness gave none.
func OutDir(t testing.TB) string {
	if d := os.Getenv(EnvOut); d != "" {
		return d
	}
	return t.TempDir()
}

// Run runs a command in dom0 and returns its combined output; a non-zero
// exit fails t with the output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr runs a command in dom0 with a ten-minute bound and returns its
// combined output and error.
func RunErr(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// GuestName returns the name= value of a guest configuration file.
func GuestName(cfg string) (string, error) {
	b, err := os.ReadFile(cfg)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(k) == "name" {
			return strings.Trim(strings.TrimSpace(v), `"`), nil
		}
	}
	return "", fmt.Errorf("%s: no name=", cfg)
}

// CreateGuest creates the guest of cfg with `xl create`, waits until its
// console counter is above 2, and destroys it when the test ends. It returns
// the guest's name. The test fails if any guest triple-faults meanwhile.
func CreateGuest(t testing.TB, cfg string) string {
	t.Helper()
	name := createGuest(t, cfg)
	t.Cleanup(func() { RunErr("xl", "destroy", name) })
	return name
}

// shared holds the names of the guests Guest created in this process.
var shared sync.Map

// Guest is CreateGuest for tests that leave the guest as they found it:
// running under the same name, unpaused, with log-dirty off. The first
// call in a test binary creates the guest of cfg; later calls reuse it
// while it still runs and counts, which spares a boot (~20 s under TCG).
// The guest is not destroyed when the test ends: the lab's suite destroys
// every guest after each package. The test fails if any guest
// triple-faults meanwhile.
func Guest(t testing.TB, cfg string) string {
	t.Helper()
	name, err := GuestName(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := shared.Load(name); ok {
		if _, err := RunErr("xl", "domid", name); err == nil {
			t.Cleanup(func() { checkTripleFault(t) })
			WaitCounter(t, name, Counter(name), time.Minute)
			return name
		}
	}
	createGuest(t, cfg)
	shared.Store(name, true)
	return name
}

// createGuest is CreateGuest without the destroy at the end.
func createGuest(t testing.TB, cfg string) string {
	t.Helper()
	name, err := GuestName(cfg)
	if err != nil {
		t.Fatal(err)
	}
	shared.Delete(name)
	RunErr("xl", "destroy", name) // a leftover from an earlier test
	os.Remove(ConsoleLog(name))
	RunErr("xl", "dmesg", "-c")
	t0 := time.Now()
	Run(t, "xl", "create", cfg)
	created := time.Since(t0)
	t.Cleanup(func() { checkTripleFault(t) })
	WaitCounter(t, name, 2, 10*time.Minute)
	t.Logf("GUEST %s: xl create %.1f s, counting after %.1f s", name, created.Seconds(), time.Since(t0).Seconds())
	return name
}

// checkTripleFault fails t if Xen's console ring shows a guest's triple
// fault, and empties the ring.
func checkTripleFault(t testing.TB) {
	if m := TripleFault(); m != "" {
		t.Errorf("a guest died during the test%s", m)
	}
	RunErr("xl", "dmesg", "-c")
}

// ConsoleLog is the xenconsoled log file of the named guest.
func ConsoleLog(name string) string {
	return filepath.Join(ConsoleDir, "guest-"+name+".log")
}

// Counter returns the last "XENLAB-DOMU counter=N" value the guest printed,
// or -1 when it printed none.
func Counter(name string) int {
	cs := CountersAfter(ConsoleLog(name), 0)
	if len(cs) == 0 {
		return -1
	}
	return cs[len(cs)-1]
}

// WaitCounter waits until the guest's console counter is above `above`, and
// fails t after timeout. It returns the counter seen.
func WaitCounter(t testing.TB, name string, above int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := Counter(name)
		if c > above {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %s: counter stayed at %d (want > %d) for %v", name, c, above, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
