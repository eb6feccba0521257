package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream/image"
)

const testConfig = `{"c_info":{"type":"pvh","name":"guest3"}}`

func saveFake(t *testing.T, f *fakeDomain, opt SaveOptions) ([]byte, Stats, *Saver) {
	t.Helper()
	if opt.Config == nil {
		opt.Config = []byte(testConfig)
	}
	opt.XenMajor, opt.XenMinor = 4, 17
	var buf bytes.Buffer
	s := NewSaver(f, opt)
	st, err := s.Save(context.Background(), &buf)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	return buf.Bytes(), st, s
}

// checkMemory compares the image's pages with the domain's memory: every
// populated frame present with its final content, no others.
func checkMemory(t *testing.T, f *fakeDomain, im *parsedImage) {
	t.Helper()
	if len(im.pages) != len(f.mem) {
		t.Errorf("image has %d frames, domain %d", len(im.pages), len(f.mem))
	}
	for p, pg := range f.mem {
		got, ok := im.pages[p]
		if !ok {
			t.Errorf("pfn %#x missing from image", p)
			continue
		}
		if !bytes.Equal(got, pg) {
			t.Errorf("pfn %#x: image content differs from the final memory", p)
		}
	}
}

// walkImage reads the image with package stream/image (the project's
// walker, strict mode) and checks it agrees with the save's statistics.
func walkImage(t *testing.T, img []byte, st Stats) image.Summary {
	t.Helper()
	sum, err := image.Walk(bytes.NewReader(img), image.Options{}, func(*image.Item) error { return nil })
	if err != nil {
		t.Fatalf("stream/image rejects the image: %v", err)
	}
	if sum.Format != "xl" || sum.LibxcVersion != 3 || sum.Bytes != int64(len(img)) || !sum.ConfigIsJSON {
		t.Errorf("stream/image summary %+v", sum)
	}
	if sum.Pages.DataPages != int64(st.Pages) || sum.Pages.Records == 0 {
		t.Errorf("stream/image counts %d data pages in %d records; the save sent %d", sum.Pages.DataPages, sum.Pages.Records, st.Pages)
	}
	return sum
}

func TestSaveNonLive(t *testing.T) {
	for _, contiguous := range []bool{false, true} {
		t.Run(fmt.Sprintf("contiguous=%v", contiguous), func(t *testing.T) { testSaveNonLive(t, contiguous) })
	}
}

func testSaveNonLive(t *testing.T, contiguous bool) {
	f := newFakeDomain(3000)
	f.contiguous = contiguous
	img, st, s := saveFake(t, f, SaveOptions{})
	im, err := parseImage(img)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	walkImage(t, img, st)
	checkMemory(t, f, im)
	if string(im.config) != testConfig {
		t.Errorf("config %q", im.config)
	}
	// Record order as Xen 4.17 writes a PVH save.
	want := []uint32{17, 18, 16, 1, 8, 9, 10, 0}
	if !slices.Equal(im.libxcTypes, want) {
		t.Errorf("libxc record order %v, want %v", im.libxcTypes, want)
	}
	if !slices.Equal(im.libxlTypes, []uint32{1, 0}) {
		t.Errorf("libxl records %v", im.libxlTypes)
	}
	if !bytes.Equal(im.hvmCtx, f.ctx) || !bytes.Equal(im.cpuid, f.cpuid) || !bytes.Equal(im.msr, f.msr) {
		t.Error("HVM context or CPU policy not carried verbatim")
	}
	// Only the saved parameters, non-zero, in libxc's order: CALLBACK_IRQ
	// (0) and STORE_EVTCHN (2) are not part of a save.
	if !slices.Equal(im.paramOrder, []uint64{1, 17, 12}) {
		t.Errorf("HVM params order %v", im.paramOrder)
	}
	if im.params[17] != 0xfefff {
		t.Errorf("CONSOLE_PFN %#x", im.params[17])
	}
	if len(im.tsc) != 24 || im.tsc[4] != byte(f.tsc.KHz) {
		t.Errorf("TSC record % x", im.tsc)
	}
	// 3000 RAM pages - 1 hole + 8 special pages; batches of 1024 frames.
	if st.Pages != uint64(len(f.mem)) || st.Bytes != int64(len(img)) {
		t.Errorf("stats pages %d bytes %d; image %d pages %d bytes", st.Pages, st.Bytes, len(f.mem), len(img))
	}
	if !f.info.Suspended() || f.resumes != 0 || f.destroyed {
		t.Errorf("after save: suspended=%v resumes=%d destroyed=%v", f.info.Suspended(), f.resumes, f.destroyed)
	}
	if f.maps != f.unmaps {
		t.Errorf("%d mappings, %d unmapped", f.maps, f.unmaps)
	}
	if err := s.Commit(); err != nil || !f.destroyed {
		t.Errorf("Commit: %v destroyed=%v", err, f.destroyed)
	}
}

func TestSaveLiveConverges(t *testing.T) {
	f := newFakeDomain(5000)
	// The guest writes fewer pages each round: 900, 300, 20.
	f.onClean = func(f *fakeDomain, call int) {
		n := []int{900, 300, 20, 0, 0, 0}[min(call, 5)]
		for i := 0; i < n; i++ {
			f.setPage(uint64(100+i*3), 0x5a, uint32(call+1))
		}
	}
	var progress bytes.Buffer
	img, st, _ := saveFake(t, f, SaveOptions{Live: true, Log: &progress})
	im, err := parseImage(img)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	walkImage(t, img, st)
	checkMemory(t, f, im)
	// Rounds: 0 (all), 1 (900), 2 (300), then 20 < 50 stops precopy, that
	// round is still sent live, then the final suspended round: no dirty
	// page, but the two ring pages (xenstore, console), always re-sent.
	var dirty []uint64
	for _, r := range st.Rounds {
		dirty = append(dirty, r.Dirty)
	}
	if !slices.Equal(dirty[1:], []uint64{900, 300, 20, 2}) {
		t.Errorf("dirty per round %v (progress:\n%s)", dirty, progress.String())
	}
	if !st.Rounds[len(st.Rounds)-1].Final || st.Rounds[len(st.Rounds)-2].Final {
		t.Error("only the last round may be sent while suspended")
	}
	if im.dupPages != 900+300+20+2 {
		t.Errorf("%d frames re-sent, want %d", im.dupPages, 1222)
	}
	if f.logDirty {
		t.Error("log-dirty left on")
	}
	if !bytes.Contains(progress.Bytes(), []byte("900 dirty frames")) {
		t.Errorf("progress does not report dirty pages per round:\n%s", progress.String())
	}
}

// TestSaveLiveResendsRings: a backend in dom0 writes the console ring
// through a foreign mapping, which log-dirty does not record; the final
// round must carry the ring's last content anyway.
func TestSaveLiveResendsRings(t *testing.T) {
	f := newFakeDomain(2000)
	ring := f.params[17]
	f.onClean = func(f *fakeDomain, call int) {
		f.mem[ring][100] = byte(call + 1) // no dirty mark: invisible to log-dirty
	}
	img, _, _ := saveFake(t, f, SaveOptions{Live: true, Policy: RoundsPolicy(2, 50)})
	im, err := parseImage(img)
	if err != nil {
		t.Fatal(err)
	}
	checkMemory(t, f, im)
	if im.pages[ring][100] != f.mem[ring][100] || f.mem[ring][100] == 0 {
		t.Fatalf("console ring byte %d in image, %d in memory", im.pages[ring][100], f.mem[ring][100])
	}
}

func TestSaveLiveRoundLimit(t *testing.T) {
	f := newFakeDomain(2000)
	writes := 0
	f.onClean = func(f *fakeDomain, call int) { // never converges
		for i := 0; i < 500; i++ {
			writes++
			f.setPage(uint64(i), 0x33, uint32(writes))
		}
	}
	img, st, _ := saveFake(t, f, SaveOptions{Live: true, Policy: RoundsPolicy(3, 50)})
	im, err := parseImage(img)
	if err != nil {
		t.Fatal(err)
	}
	checkMemory(t, f, im)
	// 1 full pass + 3 precopy rounds + the final one.
	if len(st.Rounds) != 5 || f.cleans != 4 {
		t.Errorf("%d rounds, %d cleans; want 5 rounds, 4 cleans", len(st.Rounds), f.cleans)
	}
}

// failWriter accepts n bytes, then fails like a closed pipe.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return len(p), nil
	}
	k := w.n
	w.n = 0
	return k, os.ErrClosed
}

func TestFailureClosedOutputResumes(t *testing.T) {
	for _, live := range []bool{false, true} {
		for _, at := range []int{10, 3 << 20, 9 << 20} {
			f := newFakeDomain(3000)
			s := NewSaver(f, SaveOptions{Live: live, Config: []byte(testConfig)})
			_, err := s.Save(context.Background(), &failWriter{n: at})
			var se *SaveError
			if !errors.As(err, &se) || !errors.Is(err, os.ErrClosed) {
				t.Fatalf("live=%v at=%d: err %v, want a *SaveError wrapping os.ErrClosed", live, at, err)
			}
			if !se.Resumed || f.info.Suspended() || f.destroyed || f.logDirty {
				t.Errorf("live=%v at=%d: resumed=%v suspended=%v destroyed=%v logdirty=%v (%v)",
					live, at, se.Resumed, f.info.Suspended(), f.destroyed, f.logDirty, err)
			}
			// The guest must have been resumed exactly when it was suspended:
			// a failure in a live pre-copy round never stopped it. (A
			// non-live save buffers its headers, so its first failing write
			// comes after the suspend.)
			suspendedBeforeFail := !live
			if (f.resumes == 1) != suspendedBeforeFail || f.resumes > 1 {
				t.Errorf("live=%v at=%d: %d resumes (%v)", live, at, f.resumes, err)
			}
		}
	}
}

func TestFailureMapErrorResumes(t *testing.T) {
	f := newFakeDomain(3000)
	f.mapErr, f.mapErrPFN = errors.New("EFAULT"), 2049
	s := NewSaver(f, SaveOptions{Config: []byte(testConfig)})
	_, err := s.Save(context.Background(), io.Discard)
	var se *SaveError
	if !errors.As(err, &se) || !se.HasPFN || se.PFN != 2049 || !se.Resumed {
		t.Fatalf("err %#v", err)
	}
	if f.resumes != 1 || f.info.Suspended() || f.maps != f.unmaps {
		t.Errorf("resumes=%d suspended=%v maps=%d unmaps=%d", f.resumes, f.info.Suspended(), f.maps, f.unmaps)
	}
}

func TestSuspendFailure(t *testing.T) {
	// The guest never answers: nothing to resume, the domain runs on.
	f := newFakeDomain(100)
	f.suspendErr = errors.New("timed out")
	_, err := NewSaver(f, SaveOptions{}).Save(context.Background(), io.Discard)
	var se *SaveError
	if !errors.As(err, &se) || se.Step != "suspend" || !se.Resumed || f.resumes != 0 {
		t.Fatalf("err %v resumes %d", err, f.resumes)
	}
	// The guest answers late, after the timeout: it must be resumed.
	f = newFakeDomain(100)
	f.suspendErr, f.suspendAnywy = errors.New("timed out"), true
	_, err = NewSaver(f, SaveOptions{}).Save(context.Background(), io.Discard)
	if !errors.As(err, &se) || !se.Resumed || f.resumes != 1 || f.info.Suspended() {
		t.Fatalf("late suspend: err %v resumes %d", err, f.resumes)
	}
}

func TestNotHVM(t *testing.T) {
	f := newFakeDomain(10)
	f.info.Flags &^= hypercall.DomainHVM
	_, err := NewSaver(f, SaveOptions{}).Save(context.Background(), io.Discard)
	if !errors.Is(err, ErrNotHVM) || f.resumes != 0 || f.info.Suspended() {
		t.Fatalf("err %v", err)
	}
}

func TestAbortResumes(t *testing.T) {
	f := newFakeDomain(100)
	_, _, s := saveFake(t, f, SaveOptions{})
	if err := s.Abort(); err != nil || f.resumes != 1 || f.destroyed {
		t.Fatalf("Abort: %v resumes=%d destroyed=%v", err, f.resumes, f.destroyed)
	}
}

// TestVerifyStreamV2 runs Xen's own verifier on a fake image when it is
// installed (xen-utils-4.17): an independent check of the framing.
func TestVerifyStreamV2(t *testing.T) {
	tool := "/usr/lib/xen-4.17/bin/verify-stream-v2"
	py, err := exec.LookPath("python3")
	if _, e := os.Stat(tool); e != nil || err != nil {
		t.Skipf("SKIP: %s or python3 not installed", tool)
	}
	f := newFakeDomain(2100)
	img, _, _ := saveFake(t, f, SaveOptions{})
	path := filepath.Join(t.TempDir(), "fake.save")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, tool, "-f", "xl", "-i", path)
	cmd.Env = append(os.Environ(), "PYTHONPATH=/usr/lib/xen-4.17/lib/python")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("verify-stream-v2: %v\n%s", err, out)
	}
}

func TestMarkAll(t *testing.T) {
	for _, n := range []uint64{1, 63, 64, 65, 130, 1044480} {
		b := hypercall.NewDirtyBitmap(n)
		markAll(b, n)
		if uint64(b.Count()) != n || !b.Test(n-1) || b.Test(n) {
			t.Errorf("markAll(%d): count %d", n, b.Count())
		}
	}
}

// zeroFrame clears frame p, marking it dirty under log-dirty.
func (f *fakeDomain) zeroFrame(p uint64) {
	clear(f.mem[p])
	if f.logDirty {
		f.dirty.Set(p)
	}
}

func TestSaveSkipZero(t *testing.T) {
	f := newFakeDomain(3000)
	f.contiguous = true // zero pages force the staging copy
	zeros := 0
	for p := uint64(0); p < 3000; p += 3 {
		if f.mem[p] != nil {
			f.zeroFrame(p)
			zeros++
		}
	}
	plain, _, _ := saveFake(t, newFakeDomainLike(f), SaveOptions{})
	img, st, _ := saveFake(t, f, SaveOptions{SkipZero: true})
	im, err := parseImage(img)
	if err != nil {
		t.Fatal(err)
	}
	checkMemory(t, f, im)
	walkImage(t, img, st)
	if st.Zero != uint64(zeros) || im.xalloc != zeros || st.Pages != uint64(len(f.mem)-zeros) {
		t.Errorf("zero pages: stats %d, image %d, want %d; data pages %d", st.Zero, im.xalloc, zeros, st.Pages)
	}
	if saved := len(plain) - len(img); saved != zeros*PageSize {
		t.Errorf("SkipZero saved %d bytes, want %d", saved, zeros*PageSize)
	}
}

// newFakeDomainLike copies f's memory into a fresh fake.
func newFakeDomainLike(f *fakeDomain) *fakeDomain {
	g := newFakeDomain(0)
	g.mem = map[uint64][]byte{}
	for p, pg := range f.mem {
		g.mem[p] = append([]byte(nil), pg...)
	}
	return g
}

// TestSaveSkipZeroLive: a page zeroed after the first pass must travel
// with its (zero) data: XALLOC would leave the restored frame as round 0
// sent it.
func TestSaveSkipZeroLive(t *testing.T) {
	f := newFakeDomain(3000)
	f.zeroFrame(500)
	f.onClean = func(f *fakeDomain, call int) {
		if call == 0 {
			f.zeroFrame(100)           // had data in round 0
			f.setPage(500, 0x44, 9)    // was zero in round 0
			f.zeroFrame(f.maxgpfn - 3) // a special page
		}
	}
	img, st, _ := saveFake(t, f, SaveOptions{Live: true, SkipZero: true})
	im, err := parseImage(img)
	if err != nil {
		t.Fatal(err)
	}
	checkMemory(t, f, im)
	if st.Zero != 1 || st.Rounds[0].Zero != 1 {
		t.Errorf("zero pages without data: %d (round 0: %d), want 1", st.Zero, st.Rounds[0].Zero)
	}
}
