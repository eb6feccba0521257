//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/blkback"
	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/evtchn"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
	"golang.org/x/sys/unix"
)

// makeDisk writes a disk image of mib MiB whose first sector holds the
// command for the guest's disk agent (internal/xenlab/domU-init.sh).
func makeDisk(t *testing.T, name, cmd string, mib int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(mib) << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XSRLAB-CMD "+cmd+"\n"), 0); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitConsole waits for a console line of the guest matching re (after
// byte offset off) and returns its submatches.
func waitConsole(t *testing.T, name string, off int64, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(labtest.ConsoleLog(name))
		if off < int64(len(b)) {
			if m := re.FindStringSubmatch(string(b[off:])); m != nil {
				return m
			}
		}
		if time.Now().After(deadline) {
			tail := string(b[max(0, len(b)-2000):])
			t.Fatalf("no console line matching %q within %v; console tail:\n%s", re, timeout, tail)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func consoleSize(name string) int64 {
	st, err := os.Stat(labtest.ConsoleLog(name))
	if err != nil {
		return 0
	}
	return st.Size()
}

func blkLines(name, dev string, off int64) []string {
	b, _ := os.ReadFile(labtest.ConsoleLog(name))
	var out []string
	for _, l := range strings.Split(string(b[min(off, int64(len(b))):]), "\n") {
		if strings.Contains(l, "XENLAB-BLK "+dev) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// goBackend serves path to the guest as vdev with the example's Serve, in
// the background; stop ends it and returns the backend.
func goBackend(t *testing.T, dom uint32, vdev, path string) (stop func() *blkback.Backend) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	xs, err := xenstore.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gnt, err := grant.OpenDevice()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evtchn.Open()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	type result struct {
		b   *blkback.Backend
		err error
	}
	done := make(chan result, 1)
	o := options{domid: dom, file: path, vdev: vdev, kind: "vbd", typ: "xensr", verbose: true}
	go func() {
		b, err := Serve(ctx, xs, gnt, ev, f, uint64(st.Size())/blkif.SectorSize, o, os.Stderr)
		done <- result{b, err}
	}()
	var once bool
	var res result
	stop = func() *blkback.Backend {
		if !once {
			once = true
			cancel()
			select {
			case res = <-done:
			case <-time.After(30 * time.Second):
				t.Error("backend did not stop within 30 s")
			}
			ev.Close()
			gnt.Close()
			xs.Close()
			f.Close()
			if res.err != nil && res.err != context.Canceled {
				t.Errorf("backend: %v", res.err)
			}
		}
		return res.b
	}
	t.Cleanup(func() { stop() })
	return stop
}

func labDomid(t *testing.T, name string) uint32 {
	t.Helper()
	out := labtest.Run(t, "xl", "domid", name)
	id, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("xl domid %s: %q", name, out)
	}
	return uint32(id)
}

var benchRE = func(dev string) *regexp.Regexp {
	return regexp.MustCompile(`XENLAB-BLK ` + dev + ` bench mib=(\d+) write_cs=(\d+) read_cs=(\d+)`)
}

func rate(mib, cs string) float64 {
	m, _ := strconv.ParseFloat(mib, 64)
	c, _ := strconv.ParseFloat(cs, 64)
	if c == 0 {
		return 0
	}
	return m * 100 / c
}

// TestLabGuestDisk: the PVH guest's blkfront hot-plugs a disk served by the
// Go backend (nodes written as libxl writes them), writes checksummed
// blocks and verifies them read back for a minute with no error; then a dd
// benchmark of the Go backend and, in the same guest, of Linux's kernel
// blkback over a loop device (nodes written by this test, as the block
// hotplug script would complete them).
func TestLabGuestDisk(t *testing.T) {
	labtest.Require(t)
	name := labtest.CreateGuest(t, labtest.GuestPVH)
	dom := labDomid(t, name)

	off := consoleSize(name)
	stop := goBackend(t, dom, "xvda", makeDisk(t, "check.img", "check 60", 16))
	m := waitConsole(t, name, off, regexp.MustCompile(`XENLAB-BLK xvda done rounds=(\d+) errors=(\d+)`), 6*time.Minute)
	lines := blkLines(name, "xvda", off)
	b := stop()
	t.Logf("guest lines:\n  %s", strings.Join(lines, "\n  "))
	if b != nil {
		t.Logf("backend stats: %+v", b.Stats())
	}
	rounds, _ := strconv.Atoi(m[1])
	if m[2] != "0" || rounds < 1 {
		t.Fatalf("checksummed workload: %s rounds, %s errors", m[1], m[2])
	}
	for _, l := range lines {
		if strings.Contains(l, "BAD") || strings.Contains(l, "error round") {
			t.Fatalf("guest reported: %s", l)
		}
	}
	if b == nil || b.Stats().Errors != 0 || b.Stats().Writes == 0 {
		t.Fatalf("backend stats %+v", b.Stats())
	}
	labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)

	const mib = 32
	t.Run("throughput", func(t *testing.T) {
		off := consoleSize(name)
		stop := goBackend(t, dom, "xvdb", makeDisk(t, "bench-go.img", fmt.Sprint("bench ", mib), mib+2))
		g := waitConsole(t, name, off, benchRE("xvdb"), 6*time.Minute)
		stop()
		t.Logf("Go backend:     write %.1f MB/s, read %.1f MB/s (%s MiB, %s/%s cs)", rate(g[1], g[2]), rate(g[1], g[3]), g[1], g[2], g[3])

		// Kernel blkback over /dev/loop0, on an image of the same size.
		for _, ko := range []string{"loop.ko", "xen-blkback.ko"} {
			if out, err := labtest.RunErr("insmod", "/lib/xenlab-modules/extra/"+ko); err != nil && !strings.Contains(out, "exists") {
				t.Skipf("SKIP-NO-KERNEL-BLKBACK: insmod %s: %v %s", ko, err, out)
			}
		}
		labtest.RunErr("mdev", "-s")
		img := makeDisk(t, "bench-kernel.img", fmt.Sprint("bench ", mib), mib+2)
		labtest.Run(t, "losetup", "/dev/loop0", img)
		defer labtest.RunErr("losetup", "-d", "/dev/loop0")
		var st unix.Stat_t
		if err := unix.Stat("/dev/loop0", &st); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		xs, err := xenstore.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer xs.Close()
		d := xenbus.Device{Kind: "vbd", BackDomid: 0, FrontDomid: dom, Devid: blkback.VdevXvd(2)}
		back, front := blkback.DiskEntries(d, "xvdc", "/dev/loop0", "phy", false)
		back = append(back, xenbus.Entry{Key: "physical-device", Value: fmt.Sprintf("%x:%x", unix.Major(st.Rdev), unix.Minor(st.Rdev))},
			xenbus.Entry{Key: "physical-device-path", Value: "/dev/loop0"})
		off = consoleSize(name)
		if err := xs.Transaction(ctx, func(tx *xenstore.Tx) error { return xenbus.Add(ctx, tx, d, back, front) }); err != nil {
			t.Fatal(err)
		}
		k := waitConsole(t, name, off, benchRE("xvdc"), 6*time.Minute)
		t.Logf("kernel blkback: write %.1f MB/s, read %.1f MB/s (%s MiB, %s/%s cs)", rate(k[1], k[2]), rate(k[1], k[3]), k[1], k[2], k[3])
	})
}
