//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
)

func labDomid(t *testing.T, name string) int {
	t.Helper()
	out := labtest.Run(t, "xl", "domid", name)
	id, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("xl domid %s: %q", name, out)
	}
	return id
}

// runXsrsave runs the command in-process and returns its exit code and
// stderr.
func runXsrsave(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	rc := run(args, os.Stdout, &stderr)
	t.Logf("xsrsave %s -> %d\n%s", strings.Join(args, " "), rc, stderr.String())
	return rc, stderr.String()
}

// incomingLog is where xenconsoled logs a domain that xl migrate-receive
// created: it opens the log under the temporary name NAME--incoming and
// keeps writing there after the rename.
func incomingLog(name string) string { return labtest.ConsoleLog(name + "--incoming") }

// guestRunning fails t unless the domain id runs (not paused, not shut down).
func guestRunning(t *testing.T, name string, id int) {
	t.Helper()
	if got := labDomid(t, name); got != id {
		t.Fatalf("guest %s is domain %d now, want %d (it was not left in place)", name, got, id)
	}
	out := labtest.Run(t, "xl", "list", strconv.Itoa(id))
	if f := strings.Fields(out); len(f) < 11 || strings.ContainsAny(f[10], "ps") {
		t.Fatalf("domain %d is not running:\n%s", id, out)
	}
}

// roundLines picks the per-round progress and the summary from stderr.
func roundLines(stderr string) string {
	var ls []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "dirty frames") || strings.Contains(l, "xsrsave: saved") || strings.Contains(l, "migrated domain") {
			ls = append(ls, "  "+l)
		}
	}
	return strings.Join(ls, "\n")
}

func timeIt(fn func()) time.Duration {
	t0 := time.Now()
	fn()
	return time.Since(t0)
}

// TestLabXsrsave: a PVH guest saved by xsrsave and restored by real xl;
// failures injected mid-save leave it running; xl save timed against
// xsrsave on the same guest; a live migration into xl migrate-receive.
func TestLabXsrsave(t *testing.T) {
	labtest.Require(t)
	out := labtest.OutDir(t)
	name := labtest.CreateGuest(t, labtest.GuestPVH)
	var report strings.Builder
	rec := func(format string, a ...any) {
		fmt.Fprintf(&report, format+"\n", a...)
		t.Logf(format, a...)
	}
	defer func() { os.WriteFile(filepath.Join(out, "xsrsave-lab-report.txt"), []byte(report.String()), 0o644) }()

	ok := t.Run("InjectedFailureLeavesGuestRunning", func(t *testing.T) {
		for _, live := range []bool{false, true} {
			id := labDomid(t, name)
			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			last, off := labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
			args := []string{"-domid", strconv.Itoa(id), "-o", "/tmp/xsrsave-fail.save"}
			if live {
				args = append(args, "-live")
			}
			injectCloseAfter = 48 << 20
			rc, stderr := runXsrsave(t, args...)
			injectCloseAfter = -1
			os.Remove("/tmp/xsrsave-fail.save")
			if rc == 0 || !strings.Contains(stderr, "domain left running") {
				t.Fatalf("live=%v: rc %d; want a failure that leaves the domain running", live, rc)
			}
			guestRunning(t, name, id)
			labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, fmt.Sprintf("failed save (live=%v)", live))
			rec("injected close at 48 MiB (live=%v): xsrsave failed, domain %d resumed and counting", live, id)
		}
	})
	if !ok {
		return
	}

	ok = t.Run("SaveThenXlRestore", func(t *testing.T) {
		id := labDomid(t, name)
		file := filepath.Join("/tmp", "xsrsave-guest3.save")
		defer os.Remove(file)
		labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
		var rc int
		var stderr string
		d := timeIt(func() { rc, stderr = runXsrsave(t, "-domid", strconv.Itoa(id), "-o", file) })
		last, off := labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
		if rc != 0 {
			t.Fatalf("xsrsave failed")
		}
		if _, err := labtest.RunErr("xl", "domid", name); err == nil {
			t.Fatalf("domain %s still exists after a successful save", name)
		}
		st, _ := os.Stat(file)
		rec("xsrsave save of the 128 MiB PVH guest: %.2f s, %d bytes\n%s", d.Seconds(), st.Size(), roundLines(stderr))
		var rout string
		dr := timeIt(func() { rout = labtest.Run(t, "xl", "restore", file) })
		t.Logf("xl restore:\n%s", rout)
		labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "xl restore of the xsrsave image")
		rec("xl restore of the xsrsave image: %.2f s; counter went on from %d", dr.Seconds(), last)
		// Keep a copy for verify-stream-v2 on the host.
		labtest.Run(t, "cp", file, filepath.Join(out, "xsrsave-guest3.save"))

		// The same guest saved by xl, for the timing comparison.
		labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
		xfile := "/tmp/xl-guest3.save"
		defer os.Remove(xfile)
		dx := timeIt(func() { labtest.Run(t, "xl", "save", name, xfile) })
		last, off = labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
		xst, _ := os.Stat(xfile)
		rec("xl save of the same guest: %.2f s, %d bytes", dx.Seconds(), xst.Size())
		labtest.Run(t, "xl", "restore", xfile)
		labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "xl restore of the xl image")
	})
	if !ok {
		return
	}

	ok = t.Run("SkipZeroSaveThenXlRestore", func(t *testing.T) {
		id := labDomid(t, name)
		file := "/tmp/xsrsave-skipzero.save"
		defer os.Remove(file)
		labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
		var rc int
		var stderr string
		d := timeIt(func() { rc, stderr = runXsrsave(t, "-domid", strconv.Itoa(id), "-skip-zero", "-o", file) })
		last, off := labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
		if rc != 0 {
			t.Fatalf("xsrsave -skip-zero failed")
		}
		st, _ := os.Stat(file)
		var dr time.Duration
		dr = timeIt(func() { labtest.Run(t, "xl", "restore", file) })
		labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "xl restore of a -skip-zero image")
		labtest.RunErr("cp", file, filepath.Join(out, "xsrsave-skipzero.save"))
		rec("xsrsave -skip-zero: %.2f s, %d bytes; xl restore %.2f s, counter went on from %d\n%s", d.Seconds(), st.Size(), dr.Seconds(), last, roundLines(stderr))
	})
	if !ok {
		return
	}

	ok = t.Run("LiveSaveThenXlRestore", func(t *testing.T) {
		id := labDomid(t, name)
		file := "/tmp/xsrsave-live.save"
		defer os.Remove(file)
		labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
		var rc int
		var stderr string
		d := timeIt(func() { rc, stderr = runXsrsave(t, "-domid", strconv.Itoa(id), "-live", "-o", file) })
		last, off := labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
		if rc != 0 {
			t.Fatalf("xsrsave -live failed")
		}
		labtest.Run(t, "xl", "restore", file)
		labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "xl restore of a live xsrsave image")
		rec("xsrsave -live to a file: %.2f s, xl restore: counter went on from %d\n%s", d.Seconds(), last, roundLines(stderr))
	})
	if !ok {
		return
	}

	t.Run("LiveMigrateIntoXlMigrateReceive", func(t *testing.T) {
		id := labDomid(t, name)
		srcLog, dstLog := labtest.ConsoleLog(name), incomingLog(name)
		labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
		off := labtest.LogSize(dstLog)
		stream := filepath.Join(out, "xsrsave-migrate.stream")
		var rc int
		var stderr string
		d := timeIt(func() {
			rc, stderr = runXsrsave(t, "-domid", strconv.Itoa(id), "-live",
				"-migrate", "xl migrate-receive", "-stream-copy", "/tmp/xsrsave-migrate.stream")
		})
		if rc != 0 {
			t.Fatalf("live migration failed")
		}
		labtest.RunErr("cp", "/tmp/xsrsave-migrate.stream", stream)
		os.Remove("/tmp/xsrsave-migrate.stream")
		nid := labDomid(t, name)
		if nid == id {
			t.Fatalf("guest %s is still domain %d", name, id)
		}
		if _, err := labtest.RunErr("xl", "list", strconv.Itoa(id)); err == nil {
			t.Errorf("source domain %d still exists", id)
		}
		// The source is gone: its log ends where the copy must go on.
		last := labtest.Counter(name)
		labtest.GoesOn(t, dstLog, last, off, "live migration (the copy logs to "+filepath.Base(dstLog)+")")
		rec("live migration into xl migrate-receive: %.2f s, domain %d -> %d, counter went on from %d (source log %s)\n%s",
			d.Seconds(), id, nid, last, filepath.Base(srcLog), roundLines(stderr))

		// Xen's own live migration of the same guest, for comparison. The
		// source now logs to the --incoming file, and so will its copy.
		time.Sleep(2 * time.Second)
		last, off = labtest.Counter(name+"--incoming"), labtest.LogSize(dstLog)
		var xout string
		dx := timeIt(func() { xout = labtest.Run(t, "xl", "migrate", "-s", "", name, "xl migrate-receive") })
		t.Logf("xl migrate:\n%s", xout)
		labtest.GoesOn(t, dstLog, last, off, "xl migrate")
		rec("xl migrate (localhost) of the same guest: %.2f s", dx.Seconds())
	})
}
