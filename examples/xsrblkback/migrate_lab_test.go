//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/blkback"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// The guest's console logs: a migrated guest is restored as NAME--incoming
// and renamed NAME, and xenconsoled writes its lines to one log or the
// other, so a guest's lines are spread over both (not in time order).
func consoleLogs(name string) [2]string {
	return [2]string{labtest.ConsoleLog(name), labtest.ConsoleLog(name + migrate.IncomingSuffix)}
}

type offsets [2]int64

func logOffsets(name string) offsets {
	var o offsets
	for i, p := range consoleLogs(name) {
		if st, err := os.Stat(p); err == nil {
			o[i] = st.Size()
		}
	}
	return o
}

// since returns what the guest printed after o, both logs.
func since(name string, o offsets) string {
	var b strings.Builder
	for i, p := range consoleLogs(name) {
		data, _ := os.ReadFile(p)
		if o[i] < int64(len(data)) {
			b.Write(data[o[i]:])
		}
	}
	return b.String()
}

// waitSince waits for a line matching re printed after o, in either log; it
// fails t on a reboot of the guest or after timeout.
func waitSince(t *testing.T, name string, o offsets, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	m, why := findSince(name, o, re, timeout)
	if m == nil {
		t.Fatal(why)
	}
	return m
}

// findSince is waitSince without failing: nil and why.
func findSince(name string, o offsets, re *regexp.Regexp, timeout time.Duration) ([]string, string) {
	deadline := time.Now().Add(timeout)
	for {
		s := since(name, o)
		if m := re.FindStringSubmatch(s); m != nil {
			return m, ""
		}
		if rebootRE.MatchString(s) {
			return nil, fmt.Sprintf("the guest rebooted while waiting for %q%s", re, labtest.TripleFault())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Sprintf("no console line matching %q within %v; console since (offsets %v):\n%s\n%s", re, timeout, o, s[max(0, len(s)-2000):], diagnose(name))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// diagnose gathers what a stuck guest looks like from dom0.
func diagnose(name string) string {
	var b strings.Builder
	for _, p := range consoleLogs(name) {
		data, err := os.ReadFile(p)
		fmt.Fprintf(&b, "--- %s: %d bytes %v, tail:\n%s\n", p, len(data), err, data[max(0, len(data)-600):])
	}
	for _, c := range [][]string{{"xl", "list"}, {"xenstore-ls", "-f", "/local/domain/0/backend/vbd"}} {
		out, err := labtest.RunErr(c[0], c[1:]...)
		fmt.Fprintf(&b, "--- %s: %v\n%s\n", strings.Join(c, " "), err, out)
	}
	if id, err := labtest.RunErr("xl", "domid", name); err == nil {
		out, _ := labtest.RunErr("xenstore-ls", "-f", "/local/domain/"+strings.TrimSpace(id)+"/device")
		fmt.Fprintf(&b, "--- guest's device nodes:\n%s\n", out)
	}
	return b.String()
}

// keepLogs copies the guest's console logs into the test's output folder.
func keepLogs(t *testing.T, name string) {
	dir := labtest.OutDir(t)
	for _, p := range consoleLogs(name) {
		if data, err := os.ReadFile(p); err == nil {
			os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644)
		}
	}
}

// watcher is the control arm's stand-in for the backend in
// SaveOptions.Quiescers: it stops nothing and reports nothing, as a save
// that does not know the backend, but it records, at the moment the save
// calls it (the guest suspended, before the final log-dirty harvest), the
// guest frames the backend holds mapped writable and how many requests the
// backend had answered: what it answers later, and every frame it holds,
// is written behind the final pass's back.
type watcher struct {
	r     *running
	dom   uint32
	held  []uint64
	stats blkback.Stats
}

func (w *watcher) Quiesce(context.Context) ([]uint64, error) {
	w.stats = w.r.b.Stats()
	for _, h := range w.r.tr.Held() {
		if !h.Request.Writable {
			continue
		}
		for i, g := range h.Request.Grants {
			if g.Domid == w.dom && i < len(h.Frames) {
				w.held = append(w.held, h.Frames[i])
			}
		}
	}
	return nil, nil
}

func (w *watcher) Unquiesce() error { return nil }

// moved is one migration's account.
type moved struct {
	from, to uint32
	total    time.Duration // from the start of the save to the unpaused copy
	downtime time.Duration // the sender's stop-and-copy
	resent   []uint64      // frames the backend reported (quiesced arm)
	held     []uint64      // frames mapped when the guest was suspended (control arm)
	late     uint64        // requests the source answered after the suspend (control arm)
	ring     uint64        // the ring's guest frame
	// stale is the number of bytes in which the image's final copy of the
	// ring page differs from the ring as the source backend last saw it
	// (control arm: the backend still maps it when the save ends); -1
	// when not compared.
	stale int
	// imgRsp and liveRsp are rsp_prod in the image's ring page and in the
	// live ring (control arm).
	imgRsp, liveRsp uint32
}

// ringOf returns the tracked mapping of the backend's ring.
func ringOf(r *running) *grant.Tracked {
	for _, h := range r.tr.Held() {
		if h.Request.Holder == "blkback ring" {
			return h
		}
	}
	return nil
}

// pageTap reads the save stream as it goes (image.Walk) and keeps the
// final copy of one page.
type pageTap struct {
	w    *io.PipeWriter
	pfn  uint64
	page []byte
	done chan error
}

func newPageTap(pfn uint64) *pageTap {
	pr, pw := io.Pipe()
	pt := &pageTap{w: pw, pfn: pfn, done: make(chan error, 1)}
	go func() {
		_, err := image.Walk(pr, image.Options{}, func(it *image.Item) error {
			if p, ok := it.Libxc.(*libxc.PageData); ok {
				p.Pages(func(_ int, pfn uint64, _ libxc.PageType, data []byte) bool {
					if pfn == pt.pfn && data != nil {
						pt.page = append(pt.page[:0], data...)
					}
					return true
				})
			}
			return nil
		})
		io.Copy(io.Discard, pr) // never stall the save
		pt.done <- err
	}()
	return pt
}

// liveMigrate moves the guest with the Go save and restore on this host,
// its disk following it: the save quiesces the source's backend (unless
// quiesce is false: the control), the restore leaves the copy paused, the
// source is destroyed and its backend stopped, and the copy gets its disk
// (blkback.Attach with the new domain id, through goBackend) before it is
// unpaused. It returns the backend now serving the guest.
func liveMigrate(t *testing.T, h *migrate.Host, name string, src *running, vdev, path string, quiesce bool) (*running, moved) {
	t.Helper()
	ctx := context.Background()
	dom := labDomid(t, name)
	mv := moved{from: dom, stale: -1}
	ringT := ringOf(src)
	if ringT == nil || len(ringT.Frames) == 0 || ringT.Frames[0] == 0 {
		t.Fatalf("migration of %d: the backend's ring frame is unknown (%+v)", dom, ringT)
	}
	mv.ring = ringT.Frames[0]
	var tap *pageTap // the control's: it slows the save down (the walk is in the stream's path)
	if !quiesce {
		tap = newPageTap(mv.ring)
	}
	d := h.Domain(dom)
	cfg, err := d.Config()
	if err != nil {
		t.Fatal(err)
	}
	var slog, rlog bytes.Buffer
	opt := migrate.SaveOptions{Live: true, Config: cfg, Log: &slog} // the stream names the domain's Xen
	w := &watcher{r: src, dom: dom}
	if quiesce {
		opt.Quiescers = []migrate.Quiescer{quiescer{src.b, &mv.resent}}
	} else {
		opt.Quiescers = []migrate.Quiescer{w}
	}
	s := migrate.NewSaver(d, opt)
	pr, pw := io.Pipe()
	type result struct {
		r   *migrate.Restored
		err error
	}
	got := make(chan result, 1)
	start := time.Now()
	go func() {
		r, err := h.Restore(ctx, pr, migrate.RestoreOptions{Paused: true, Suffix: migrate.IncomingSuffix, Log: &rlog})
		if err != nil {
			pr.CloseWithError(err)
		} else {
			io.Copy(io.Discard, pr) // whatever follows END
		}
		got <- result{r, err}
	}()
	var out io.Writer = pw
	if tap != nil {
		out = io.MultiWriter(pw, tap.w)
	}
	st, serr := s.Save(ctx, out)
	pw.CloseWithError(serr)
	res := <-got
	var werr error
	if tap != nil {
		tap.w.Close()
		werr = <-tap.done
	}
	if serr != nil || res.err != nil {
		if res.r != nil {
			res.r.Destroy()
		}
		if serr == nil {
			s.Abort()
		}
		t.Fatalf("migration of domain %d: save: %v; restore: %v\nsave log:\n%s\nrestore log:\n%s", dom, serr, res.err, slog.String(), rlog.String())
	}
	r := res.r
	t.Cleanup(func() { labtest.RunErr("xl", "destroy", name+migrate.IncomingSuffix) })
	if tap != nil && (werr != nil || tap.page == nil) {
		t.Errorf("reading the save stream: %v (ring page %#x found: %v)", werr, mv.ring, tap.page != nil)
	} else if tap != nil {
		// The source backend still maps its ring: what it holds now
		// against what the image carries.
		live := ringT.Mapping.Mem[:len(tap.page)]
		mv.stale = 0
		for i := range tap.page {
			if tap.page[i] != live[i] {
				mv.stale++
			}
		}
		mv.imgRsp, mv.liveRsp = binary.LittleEndian.Uint32(tap.page[8:]), binary.LittleEndian.Uint32(live[8:])
	}
	// The copy is complete and paused: give the source up.
	old := src.stop()
	if !quiesce {
		mv.held, mv.late = w.held, old.Stats().Requests-w.stats.Requests
	}
	if err := s.Commit(); err != nil {
		t.Fatalf("destroying the source %d: %v", dom, err)
	}
	if err := r.Rename(name); err != nil {
		t.Fatalf("rename %d to %s: %v", r.Domid, name, err)
	}
	nb := goBackend(t, r.Domid, vdev, path)
	if err := r.Unpause(); err != nil {
		t.Fatalf("unpause %d: %v", r.Domid, err)
	}
	mv.to, mv.total, mv.downtime = r.Domid, time.Since(start), st.Downtime
	return nb, mv
}

// quiescer is the backend as the save sees it, keeping what it reports.
type quiescer struct {
	b      *blkback.Backend
	resent *[]uint64
}

func (q quiescer) Quiesce(ctx context.Context) ([]uint64, error) {
	g, err := q.b.Quiesce(ctx)
	*q.resent = append(*q.resent, g...)
	return g, err
}

func (q quiescer) Unquiesce() error { return q.b.Unquiesce() }

var roundRE = func(dev string) *regexp.Regexp {
	return regexp.MustCompile(`XENLAB-BLK ` + dev + ` (round=(\d+) errors=(\d+)|BAD .*|write error .*|done rounds=(\d+) errors=(\d+))`)
}

// phase runs n live migrations of the guest, its checksummed workload
// running on vdev, and after each waits for a round to end in the copy.
// It returns the migrations' accounts and whether the workload ended.
// In the control arm a guest that stops making progress is the outcome
// reported (stuck says why), not a failure of the test.
func phase(t *testing.T, h *migrate.Host, name string, r **running, vdev, path string, n int, quiesce bool) (mvs []moved, ended bool, stuck string) {
	t.Helper()
	for i := 0; i < n; i++ {
		mr, mv := liveMigrate(t, h, name, *r, vdev, path, quiesce)
		*r = mr
		mvs = append(mvs, mv)
		t.Logf("migration %d (quiesce %v): domain %d -> %d in %.2f s (stop-and-copy %.3f s); ring frame %#x; frames resent %x, held at suspend %x, answered after the suspend %d, image ring page vs live ring: %d bytes differ (rsp_prod %d vs %d)",
			i+1, quiesce, mv.from, mv.to, mv.total.Seconds(), mv.downtime.Seconds(), mv.ring, mv.resent, mv.held, mv.late, mv.stale, mv.imgRsp, mv.liveRsp)
		m, why := findSince(name, logOffsets(name), roundRE(vdev), 3*time.Minute)
		if m == nil {
			if quiesce {
				t.Fatalf("after migration %d: %s", i+1, why)
			}
			return mvs, false, fmt.Sprintf("after control migration %d: %s", i+1, why)
		}
		t.Logf("  then %q", m[0])
		if strings.Contains(m[0], "done") {
			return mvs, true, ""
		}
	}
	return mvs, false, ""
}

// verdict reads the workload's lines printed after o: the highest round
// and cumulative error count (the two logs are not in time order: see
// consoleLogs), the BAD and write-error lines, and whether it printed
// done.
func verdict(name, vdev string, o offsets) (round, errs int, bad []string, done bool) {
	for _, m := range roundRE(vdev).FindAllStringSubmatch(since(name, o), -1) {
		r, e := m[2], m[3]
		switch {
		case m[2] != "":
		case m[4] != "":
			r, e, done = m[4], m[5], true
		default:
			bad = append(bad, m[0])
			continue
		}
		rn, _ := strconv.Atoi(r)
		en, _ := strconv.Atoi(e)
		round, errs = max(round, rn), max(errs, en)
	}
	return round, errs, bad, done
}

// TestLabGuestDiskMigrate: the PVH guest, its disk served by the Go
// backend and its checksummed workload running (random 64 KiB blocks
// written, synced, page cache dropped, read back against SHA-256 sums kept
// in the guest's memory), is live-migrated three times in a row on this
// host (ten in the long arm, XENSR_LAB_BLK_LONG=1) by the Go save (the
// backend quiesced through SaveOptions.Quiescers) and the Go restore (the
// disk attached to the copy before it runs): no round may fail. The
// control (long arm only), on the same workload afterwards, does ten more
// with the backend unknown to the save (no quiesce): it reports what the
// guest saw, the frames the backend held mapped writable during each final
// pass and the requests it answered after the guest was suspended.
func TestLabGuestDiskMigrate(t *testing.T) {
	labtest.Require(t)
	name := createGuest(t)
	h, err := migrate.OpenHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	n := pick(3, 10)
	const vdev, secs = "xvdf", 600
	o := logOffsets(name)
	path := makeDisk(t, "migrate.img", fmt.Sprint("check ", secs), 4)
	r := goBackend(t, labDomid(t, name), vdev, path)
	waitSince(t, name, o, regexp.MustCompile(`XENLAB-BLK `+vdev+` round=1 `), 4*time.Minute)

	defer keepLogs(t, name)
	mvs, ended, _ := phase(t, h, name, &r, vdev, path, n, true)
	round, errs, bad, _ := verdict(name, vdev, o)
	t.Logf("QUIESCED: %d live migrations with the workload running: round %d, %d errors, bad lines %q", len(mvs), round, errs, bad)
	if errs != 0 || len(bad) != 0 {
		t.Errorf("the guest's workload failed across quiesced migrations: %d errors, %q", errs, bad)
	}
	if ended {
		t.Fatalf("the workload (%d s) ended after %d migrations: raise its seconds", secs, len(mvs))
	}
	for i, mv := range mvs {
		if len(mv.resent) == 0 {
			t.Errorf("migration %d: the backend reported no frame (its ring is mapped while it serves)", i+1)
		}
	}

	// The control, on the same workload.
	t.Run("control", func(t *testing.T) {
		skipLong(t, "the control arm (ten more migrations with the backend unknown to the save)")
		control(t, h, name, &r, vdev, path, secs, errs)
	})
}

// control is TestLabGuestDiskMigrate's control arm: ten migrations with the
// backend unknown to the save; errs is the workload's error count before.
func control(t *testing.T, h *migrate.Host, name string, rp **running, vdev, path string, secs, errs int) {
	const n = 10
	oc := logOffsets(name)
	cmvs, ended, stuck := phase(t, h, name, rp, vdev, path, n, false)
	held, late, stale := 0, uint64(0), 0
	for _, mv := range cmvs {
		if len(mv.held) > 0 {
			held++
		}
		if mv.stale > 0 {
			stale++
		}
		late += mv.late
	}
	if stuck != "" {
		t.Logf("CONTROL: THE GUEST STOPPED MAKING PROGRESS %s", stuck)
	} else if !ended {
		waitSince(t, name, oc, regexp.MustCompile(`XENLAB-BLK `+vdev+` done `), time.Duration(secs)*time.Second)
	}
	cround, cerrs, cbad, done := verdict(name, vdev, oc)
	st := (*rp).stop().Stats()
	t.Logf("CONTROL (no quiesce): %d migrations; the backend held guest frames mapped writable during the final pass in %d of them (log-dirty marks them only when they are unmapped, after that pass); the image's ring page differed from the live ring in %d of them; %d requests answered after the guest was suspended; the workload after them: round %d, %d errors (%d before the control), done %v, bad lines %q; last backend %+v",
		len(cmvs), held, stale, late, cround, cerrs, errs, done, cbad, st)
	if cerrs == errs && len(cbad) == 0 && stuck == "" {
		t.Logf("CONTROL: the guest saw no corruption. Linux blkfront drops its ring on resume and queues again every request not answered before it suspended, so a stale ring page or a late answer in the image is never read by it")
	}
	if held == 0 {
		t.Errorf("control: the backend held no frame during any final pass: the arm shows nothing")
	}
}
