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
	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/privcmd"
	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
	"golang.org/x/sys/unix"
)

// longEnv is the knob of the long arms of the guest disk tests: a minute
// of checksummed I/O, 16 MiB throughput runs, ten quiesced migrations and
// the ten of the control (no quiesce). CI runs the short arms (about two
// minutes per Xen flavour for both tests); lab.sh carries XENSR_LAB_*
// variables into dom0.
const longEnv = "XENSR_LAB_BLK_LONG"

// long reports whether the long arms were asked for.
func long() bool { return os.Getenv(longEnv) == "1" }

// pick returns short, or long when the long arms were asked for.
func pick[T any](short, lng T) T {
	if long() {
		return lng
	}
	return short
}

// skipLong skips a long arm unless its knob is set, loudly.
func skipLong(t *testing.T, what string) {
	t.Helper()
	if !long() {
		t.Skipf("SKIP-BLK-LONG: %s runs only with %s=1 (outside CI's time budget; last figures in README's blkback entry and /work/notes/blk3.md)", what, longEnv)
	}
}

// createGuest creates the PVH guest from a copy of its configuration with
// the kernel's warnings on the console (the lab's has "quiet loglevel=3").
func createGuest(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(labtest.GuestPVH)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^extra\s*=.*$`)
	if !re.Match(b) {
		t.Fatalf("%s: no extra= line", labtest.GuestPVH)
	}
	cfg := filepath.Join(t.TempDir(), "guest3-blk.cfg")
	if err := os.WriteFile(cfg, re.ReplaceAll(b, []byte(`extra = "console=hvc0 loglevel=5"`)), 0o644); err != nil {
		t.Fatal(err)
	}
	return labtest.CreateGuest(t, cfg)
}

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
// byte offset off) and returns its submatches; it fails t when the guest
// reboots ("XENLAB-DOMU: up" again) or the time runs out.
func waitConsole(t *testing.T, name string, off int64, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	m, why := findConsole(name, off, re, timeout)
	if m == nil {
		t.Fatal(why)
	}
	return m
}

var rebootRE = regexp.MustCompile(`XENLAB-DOMU: up`)

// findConsole is waitConsole without failing: nil and why on a reboot or a
// timeout.
func findConsole(name string, off int64, re *regexp.Regexp, timeout time.Duration) ([]string, string) {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(labtest.ConsoleLog(name))
		if off < int64(len(b)) {
			if m := re.FindStringSubmatch(string(b[off:])); m != nil {
				return m, ""
			}
			if rebootRE.Match(b[off:]) {
				return nil, fmt.Sprintf("the guest rebooted while waiting for %q%s", re, labtest.TripleFault())
			}
		}
		if time.Now().After(deadline) {
			tail := string(b[max(0, len(b)-2000):])
			return nil, fmt.Sprintf("no console line matching %q within %v; console tail:\n%s", re, timeout, tail)
		}
		time.Sleep(100 * time.Millisecond)
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

// A running backend of the lab tests.
type running struct {
	b    *blkback.Backend
	tr   *grant.Tracker
	pc   *privcmd.Device
	stop func() *blkback.Backend // ends it (once) and returns it
}

// goBackend serves path to the guest as vdev through the example's server,
// in the background.
func goBackend(t *testing.T, dom uint32, vdev, path string, useCopy ...bool) *running {
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
	pc, err := privcmd.Open()
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
	started := make(chan *blkback.Backend, 1)
	r := &running{tr: grant.NewTracker(gnt, nil), pc: pc}
	srv := server{xs: xs, tr: r.tr, ev: ev, ringFrame: ringFrameResolver(pc), log: os.Stderr,
		started: func(b *blkback.Backend) { started <- b }}
	if len(useCopy) > 0 && useCopy[0] {
		srv.copier = gnt
	}
	o := options{domid: dom, file: path, vdev: vdev, kind: "vbd", typ: "xensr", verbose: true}
	go func() {
		b, err := srv.serve(ctx, f, uint64(st.Size())/blkif.SectorSize, o)
		done <- result{b, err}
	}()
	select {
	case r.b = <-started:
	case res := <-done:
		t.Fatalf("backend: %v", res.err)
	}
	var once bool
	var res result
	r.stop = func() *blkback.Backend {
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
			pc.Close()
			xs.Close()
			f.Close()
			if res.err != nil && res.err != context.Canceled {
				t.Errorf("backend: %v", res.err)
			}
		}
		return r.b
	}
	t.Cleanup(func() { r.stop() })
	return r
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
// blocks and verifies them read back, round after round, with no error
// (20 s; a minute in the long arm, XENSR_LAB_BLK_LONG=1), the quiesce
// subtest cutting into that workload after its first round; then a dd benchmark (4 MiB; 16 in the long arm) of the Go
// backend and, in the same guest, of Linux's kernel blkback over a loop
// device (nodes written by this test, as the block hotplug script would
// complete them).
func TestLabGuestDisk(t *testing.T) {
	labtest.Require(t)
	// The throughput subtest loads Linux's blkback, which would claim
	// every vbd backend directory written after it: unloaded when the
	// test ends (registered first, so it runs after the guest is gone),
	// for the packages the lab runs next.
	t.Cleanup(func() {
		if out, err := labtest.RunErr("rmmod", "xen-blkback"); err != nil && !strings.Contains(out, "not currently loaded") && !strings.Contains(out, "No such") {
			t.Logf("rmmod xen-blkback: %v %s", err, out)
		}
	})
	name := createGuest(t)
	dom := labDomid(t, name)

	off := consoleSize(name)
	r := goBackend(t, dom, "xvda", makeDisk(t, "check.img", fmt.Sprint("check ", pick(20, 60)), 4))
	// The quiesce subtest runs in the middle of the workload: it stops
	// the backend under a paused guest, and the round it cut must verify
	// after the backend resumes.
	if _, why := findConsole(name, off, regexp.MustCompile(`XENLAB-BLK xvda round=1 `), 4*time.Minute); why != "" {
		t.Errorf("checksummed workload, first round: %s", why)
	} else {
		t.Run("quiesce", func(t *testing.T) { quiesce(t, name, dom, r) })
	}
	m, why := findConsole(name, off, regexp.MustCompile(`XENLAB-BLK xvda done rounds=(\d+) errors=(\d+)`), 4*time.Minute)
	lines := blkLines(name, "xvda", off)
	b := r.stop()
	t.Logf("guest lines:\n  %s", strings.Join(lines, "\n  "))
	t.Logf("backend stats: %+v", b.Stats())
	for _, l := range lines {
		if strings.Contains(l, "BAD") || strings.Contains(l, "error round") {
			t.Errorf("guest reported: %s", l)
		}
	}
	if m == nil {
		// Go on with the subtests on the guest as it is now (a rebooted
		// guest is a new domain), so one run measures everything.
		t.Errorf("checksummed workload: %s", why)
		dom = labDomid(t, name)
		labtest.WaitCounter(t, name, 2, 5*time.Minute)
	} else {
		rounds, _ := strconv.Atoi(m[1])
		if m[2] != "0" || rounds < 1 {
			t.Errorf("checksummed workload: %s rounds, %s errors", m[1], m[2])
		}
		if st := b.Stats(); st.Errors != 0 || st.Writes == 0 {
			t.Errorf("backend stats %+v", st)
		}
		labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
	}

	mib := pick(4, 16)
	t.Run("throughput", func(t *testing.T) {
		off := consoleSize(name)
		stop := goBackend(t, dom, "xvdb", makeDisk(t, "bench-go.img", fmt.Sprint("bench ", mib), mib+2)).stop
		g := waitConsole(t, name, off, benchRE("xvdb"), 6*time.Minute)
		flushed(t, "mapped", stop())
		t.Logf("Go backend, mapped:      write %.1f MB/s, read %.1f MB/s (%s MiB, %s/%s cs)", rate(g[1], g[2]), rate(g[1], g[3]), g[1], g[2], g[3])
		off = consoleSize(name)
		stop = goBackend(t, dom, "xvde", makeDisk(t, "bench-copy.img", fmt.Sprint("bench ", mib), mib+2), true).stop
		g = waitConsole(t, name, off, benchRE("xvde"), 6*time.Minute)
		flushed(t, "grant copy", stop())
		t.Logf("Go backend, grant copy:  write %.1f MB/s, read %.1f MB/s (%s MiB, %s/%s cs)", rate(g[1], g[2]), rate(g[1], g[3]), g[1], g[2], g[3])

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
		t.Logf("kernel blkback, loop:    write %.1f MB/s, read %.1f MB/s (%s MiB, %s/%s cs)", rate(k[1], k[2]), rate(k[1], k[3]), k[1], k[2], k[3])
	})
}

// flushed checks that a benchmark's backend answered the guest's flushes
// (dd's conv=fsync: blkfront sends BLKIF_OP_FLUSH_DISKCACHE, as the backend
// offers feature-flush-cache) and no request with an error.
func flushed(t *testing.T, what string, b *blkback.Backend) {
	t.Helper()
	st := b.Stats()
	t.Logf("Go backend, %s: %+v", what, st)
	if st.Flushes == 0 || st.Errors != 0 || st.Writes == 0 || st.Reads == 0 {
		t.Errorf("Go backend, %s: want flushes, reads and writes answered with no error: %+v", what, st)
	}
}

// quiesce shows the 2014 hazard and the Tracker's answer on a live guest
// disk (r serves the guest's checksummed workload, which has ended its
// first round): with the guest paused (as a save's last pass has it) and
// log-dirty on, a write the backend makes through its ring mapping is
// checked against the dirty bitmap; Pause and Quiesce then unmap the ring
// and must report its frame; after Resume the guest's workload goes on and
// the next round must verify.
func quiesce(t *testing.T, name string, dom uint32, r *running) {
	x, err := hypercall.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	maxg, err := x.MaximumGPFN(dom)
	if err != nil {
		t.Fatal(err)
	}
	var ringT *grant.Tracked
	for _, h := range r.tr.Held() {
		if h.Request.Holder == "blkback ring" {
			ringT = h
		}
	}
	if ringT == nil || ringT.Frames[0] == 0 {
		t.Fatalf("ring mapping %+v: frame not resolved", ringT)
	}
	gfn, ref := ringT.Frames[0], ringT.Request.Grants[0].Ref
	entry := func() grant.EntryV1 {
		t.Helper()
		const per = 4096 / grant.EntrySizeV1
		mem, err := r.pc.MmapResource(uint32(dom), hypercall.ResourceGrantTable, hypercall.ResourceGrantTableIDShared, uint32(ref)/per, 1, unix.PROT_READ)
		if err != nil {
			t.Fatal(err)
		}
		defer privcmd.Munmap(mem)
		o := int(uint32(ref)%per) * grant.EntrySizeV1
		return grant.DecodeV1(mem[o : o+grant.EntrySizeV1])[0]
	}
	before := entry()

	if err := x.PauseDomain(dom); err != nil {
		t.Fatal(err)
	}
	paused := true
	defer func() {
		if paused {
			x.UnpauseDomain(dom)
		}
	}()
	r.b.Pause()
	if err := x.EnableLogDirty(dom); err != nil {
		t.Fatal(err)
	}
	logDirty := true
	defer func() {
		if logDirty {
			x.DisableLogDirty(dom)
		}
	}()
	bm := hypercall.NewDirtyBitmap(maxg + 1)
	if _, err := x.CleanDirty(dom, bm); err != nil {
		t.Fatal(err)
	}
	// A backend write through the mapping while the guest cannot run: a
	// byte of the ring header's padding, which blkfront never reads.
	const pad = 48
	old := ringT.Mapping.Mem[pad]
	ringT.Mapping.Mem[pad] = 0x5a
	bm.Clear()
	if _, err := x.PeekDirty(dom, bm); err != nil {
		t.Fatal(err)
	}
	dirtyWhileMapped := bm.Test(gfn)
	frames, err := r.tr.Quiesce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bm.Clear()
	if _, err := x.PeekDirty(dom, bm); err != nil {
		t.Fatal(err)
	}
	dirtyAfterUnmap := bm.Test(gfn)
	after := entry()
	t.Logf("ring: grant %d -> gfn %#x; grant entry while mapped %v, after Quiesce %v", ref, gfn, before, after)
	t.Logf("log-dirty: frame %#x dirty after a write through the mapping: %v; after the Tracker unmapped it: %v; Quiesce reported %v",
		gfn, dirtyWhileMapped, dirtyAfterUnmap, frames)
	if !before.Active() || before.Frame != uint32(gfn) {
		t.Errorf("grant entry %v: want the ring's frame %#x, mapped (reading/writing)", before, gfn)
	}
	if after.Active() {
		t.Errorf("grant entry %v still mapped after Quiesce", after)
	}
	if len(frames) != 1 || frames[0] != (grant.Frame{Domid: dom, GFN: gfn}) {
		t.Errorf("Quiesce reported %v, want the ring frame %#x", frames, gfn)
	}
	if dirtyWhileMapped {
		t.Logf("Xen marked the frame dirty while it was mapped: this lab does not show the hazard for this write")
	} else {
		t.Logf("HAZARD SHOWN: a write through a mapped grant left frame %#x clean in the dirty bitmap; a final pass run now would not resend it, the Tracker's report does", gfn)
	}

	if err := x.DisableLogDirty(dom); err != nil {
		t.Fatal(err)
	}
	logDirty = false
	r.tr.Resume()
	if err := r.b.Resume(); err != nil {
		t.Fatal(err)
	}
	for _, h := range r.tr.Held() {
		if h.Request.Holder == "blkback ring" {
			h.Mapping.Mem[pad] = old
		}
	}
	off := consoleSize(name)
	if err := x.UnpauseDomain(dom); err != nil {
		t.Fatal(err)
	}
	paused = false
	m := waitConsole(t, name, off, regexp.MustCompile(`XENLAB-BLK xvda round=(\d+) errors=(\d+)`), 4*time.Minute)
	t.Logf("after Resume: round %s ended with %s errors; backend %+v", m[1], m[2], r.b.Stats())
	if m[2] != "0" {
		t.Fatalf("workload errors after quiesce/resume: %s", m[2])
	}
}
