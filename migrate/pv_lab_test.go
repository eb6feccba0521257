//go:build linux

package migrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

var pvLabGuests = []struct{ name, cfg string }{{"guest1", labtest.GuestPV}, {"guest2", labtest.GuestPV2}}

// pvLabGuest skips the cells of guest2 unless XENSR_LAB_PV_GUEST2=1: with
// both guests the PV cells outgrow the package's 15-minute lab budget
// (XENSR_LAB_TEST_TIMEOUT) under TCG.
func pvLabGuest(t *testing.T, name string) {
	t.Helper()
	if name != "guest1" && os.Getenv("XENSR_LAB_PV_GUEST2") != "1" {
		t.Skipf("SKIP-PV-GUEST2: the %s cells run only with XENSR_LAB_PV_GUEST2=1 (and a longer XENSR_LAB_TEST_TIMEOUT): both guests outgrow the 15-minute budget", name)
	}
}

func pvLabDomid(t *testing.T, name string) uint32 {
	t.Helper()
	out := labtest.Run(t, "xl", "domid", name)
	id, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("xl domid %s: %q", name, out)
	}
	return uint32(id)
}

// pvLabReport collects the figures of the PV lab tests into the lab's
// output folder.
type pvLabReport struct {
	t *testing.T
	b strings.Builder
}

func (r *pvLabReport) rec(format string, a ...any) {
	fmt.Fprintf(&r.b, format+"\n", a...)
	r.t.Logf(format, a...)
}

func (r *pvLabReport) write(file string) {
	os.WriteFile(filepath.Join(labtest.OutDir(r.t), file), []byte(r.b.String()), 0o644)
}

// goSavePV saves domain name with the Go engine into file. With commit
// the saved domain is destroyed, as xl save does.
func goSavePV(t *testing.T, name, file string, opt SaveOptions, commit bool) (Stats, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h, err := OpenHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d := h.Domain(pvLabDomid(t, name))
	if opt.Config, err = d.Config(); err != nil {
		t.Fatal(err)
	}
	if opt.XenMajor, opt.XenMinor, err = h.X.Version(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	opt.Log = &log
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	s := NewSaver(d, opt)
	st, err := s.Save(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if err == nil && commit {
		err = s.Commit()
	}
	took := time.Since(t0)
	t.Logf("Go save of %s (live=%v paused=%v): %v in %v\n%s", name, opt.Live, opt.Paused, err, took, log.String())
	return st, took, err
}

// TestLabPVSaveMatchesXl is the PV save's strongest oracle: xl saves the
// guest with -p (it suspends the guest, saves it, cancels the suspend and
// leaves the domain paused, so the guest does not run again), then the Go
// engine saves the same stopped domain. Every PFN's normalised page must be
// identical in both images, and the other records agree field by field but
// for what legitimately moved between the two saves (named in the report).
// Then the guest is unpaused and counts on.
func TestLabPVSaveMatchesXl(t *testing.T) {
	labtest.Require(t)
	rep := &pvLabReport{t: t}
	defer rep.write("pv-save-matches-xl.txt")
	for _, g := range pvLabGuests {
		t.Run(g.name, func(t *testing.T) {
			pvLabGuest(t, g.name)
			rep.t = t
			name := labtest.CreateGuest(t, g.cfg)
			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			xfile, gfile := "/tmp/pv-xl-"+name+".save", "/tmp/pv-go-"+name+".save"
			defer os.Remove(xfile)
			defer os.Remove(gfile)
			labtest.Run(t, "xl", "save", "-p", name, xfile)
			last, off := labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
			if _, _, err := goSavePV(t, name, gfile, SaveOptions{Paused: true}, false); err != nil {
				t.Fatalf("Go save of the paused guest: %v", err)
			}
			xb, err := os.ReadFile(xfile)
			if err != nil {
				t.Fatal(err)
			}
			gb, err := os.ReadFile(gfile)
			if err != nil {
				t.Fatal(err)
			}
			comparePVImages(t, rep, name, readPVImage(t, xb), readPVImage(t, gb))
			labtest.RunErr("cp", gfile, filepath.Join(labtest.OutDir(t), "pv-go-paused-"+name+".save"))
			labtest.Run(t, "xl", "unpause", name)
			labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "unpause after xl save -p and the Go save")
		})
	}
}

// comparePVImages checks the Go image g against xl's x of the same stopped
// guest.
func comparePVImages(t *testing.T, rep *pvLabReport, name string, x, g *pvImage) {
	t.Helper()
	if x.info == nil || g.info == nil || x.frames == nil || g.frames == nil {
		t.Fatalf("X86_PV_INFO or X86_PV_P2M_FRAMES missing: xl %v %v, Go %v %v", x.info, x.frames, g.info, g.frames)
	}
	if *x.info != *g.info {
		t.Errorf("X86_PV_INFO: xl %+v, Go %+v", x.info, g.info)
	}
	if x.frames.StartPFN != g.frames.StartPFN || x.frames.EndPFN != g.frames.EndPFN || !slicesEqual(x.frames.Frames, g.frames.Frames) {
		t.Errorf("X86_PV_P2M_FRAMES: xl %d-%#x %d frames, Go %d-%#x %d frames", x.frames.StartPFN, x.frames.EndPFN, len(x.frames.Frames),
			g.frames.StartPFN, g.frames.EndPFN, len(g.frames.Frames))
	}
	// The rings dom0's xenstored and xenconsoled write through foreign
	// mappings may move between the saves (the guest does not).
	rings := map[uint64]string{}
	if basic := x.vcpus[libxc.TypeX86PVVCPUBasic][0]; basic != nil {
		if c, err := pv.Decode(basic, 8); err == nil {
			if si := x.pages[c.(*pv.Context64).UserRegs.RDX]; si != nil {
				rings[binary.LittleEndian.Uint64(si[pv.StartInfoStoreMFN:])] = "xenstore ring"
				rings[binary.LittleEndian.Uint64(si[pv.StartInfoConsoleMFN:])] = "console ring"
			}
		}
	}
	same, tables := 0, 0
	for pfn, xp := range x.pages {
		gp, ok := g.pages[pfn]
		switch {
		case !ok:
			t.Errorf("pfn %#x (%v) is in xl's image, not in Go's", pfn, x.types[pfn])
		case x.types[pfn] != g.types[pfn]:
			t.Errorf("pfn %#x: type %v in xl's image, %v in Go's", pfn, x.types[pfn], g.types[pfn])
		case !bytes.Equal(xp, gp):
			if what, ok := rings[pfn]; ok {
				rep.rec("%s: pfn %#x (%s) differs: dom0 writes it, legitimately", name, pfn, what)
				continue
			}
			n := 0
			for i := range xp {
				if xp[i] != gp[i] {
					n++
				}
			}
			t.Errorf("pfn %#x (%v): %d bytes differ", pfn, x.types[pfn], n)
		default:
			same++
			if l := x.types[pfn] & 7; l >= 1 && l <= 4 {
				tables++
			}
		}
	}
	for pfn := range g.pages {
		if _, ok := x.pages[pfn]; !ok {
			t.Errorf("pfn %#x (%v) is in Go's image, not in xl's", pfn, g.types[pfn])
		}
	}
	rep.rec("%s: %d pages identical by PFN in both images (%d of them page tables), xl %d pages, Go %d pages",
		name, same, tables, len(x.pages), len(g.pages))
	// Shared info: Xen's per-vCPU time and the wallclock move with time,
	// and events may arrive for the stopped guest; the rest must agree.
	diff := map[string]int{}
	for i := range x.shinfo {
		if x.shinfo[i] == g.shinfo[i] {
			continue
		}
		var region string
		switch {
		case i < pv.SharedInfoEvtchnPending64:
			region = fmt.Sprintf("vcpu_info[%d]", i/pv.VCPUInfoSize)
			if i%pv.VCPUInfoSize < 32 { // pending flags, mask, selector, cr2
				region += " (event state)"
			} else {
				region += ".time"
			}
		case i < pv.SharedInfoEvtchnMask64:
			region = "evtchn_pending"
		case i < pv.SharedInfoWallclock64:
			region = "evtchn_mask"
		case i < pv.SharedInfoArch64:
			region = "wallclock"
		default:
			region = "arch"
			t.Errorf("SHARED_INFO byte %d (arch) differs: xl %#x, Go %#x", i, x.shinfo[i], g.shinfo[i])
		}
		diff[region]++
	}
	rep.rec("%s: SHARED_INFO differs in %v (bytes per region; Xen's time, wallclock and event state move while the domain is stopped)", name, diff)
	// vCPUs: every record of every vCPU, field by field for BASIC.
	for _, kind := range []libxc.RecordType{libxc.TypeX86PVVCPUBasic, libxc.TypeX86PVVCPUExtended, libxc.TypeX86PVVCPUXSave, libxc.TypeX86PVVCPUMSRs} {
		if len(x.vcpus[kind]) != len(g.vcpus[kind]) {
			t.Errorf("%v: xl has %d vCPUs, Go %d", kind, len(x.vcpus[kind]), len(g.vcpus[kind]))
		}
		for v, xc := range x.vcpus[kind] {
			gc := g.vcpus[kind][v]
			if kind != libxc.TypeX86PVVCPUBasic {
				if !bytes.Equal(xc, gc) {
					t.Errorf("%v of vCPU %d differs (%d and %d bytes)", kind, v, len(xc), len(gc))
				}
				continue
			}
			xd, err1 := pv.Decode(xc, 8)
			gd, err2 := pv.Decode(gc, 8)
			if err1 != nil || err2 != nil {
				t.Errorf("vCPU %d BASIC: %v %v", v, err1, err2)
				continue
			}
			xctx, gctx := *xd.(*pv.Context64), *gd.(*pv.Context64)
			if v == 0 && xctx.UserRegs.RAX != gctx.UserRegs.RAX {
				// xl's resume of the cancelled suspend set vCPU 0's
				// rax (the hypercall's return) to 1 before the Go save.
				rep.rec("%s: vCPU 0 rax: xl %#x, Go %#x (1: xl's cancel of the suspend, legitimately)", name, xctx.UserRegs.RAX, gctx.UserRegs.RAX)
				if gctx.UserRegs.RAX != 1 {
					t.Errorf("vCPU 0 rax in the Go image %#x, want 1 (the cancelled suspend)", gctx.UserRegs.RAX)
				}
				gctx.UserRegs.RAX = xctx.UserRegs.RAX
			}
			if xctx != gctx {
				xe, _ := pv.Encode(&xctx)
				ge, _ := pv.Encode(&gctx)
				for i := range xe {
					if xe[i] != ge[i] {
						t.Errorf("vCPU %d BASIC differs from byte %d on", v, i)
						break
					}
				}
			}
		}
	}
	rep.rec("%s: records compared: X86_PV_INFO, X86_PV_P2M_FRAMES (%d frames), SHARED_INFO, vCPU records %d/%d/%d/%d (basic/extended/xsave/msrs)",
		name, len(x.frames.Frames), len(x.vcpus[libxc.TypeX86PVVCPUBasic]), len(x.vcpus[libxc.TypeX86PVVCPUExtended]),
		len(x.vcpus[libxc.TypeX86PVVCPUXSave]), len(x.vcpus[libxc.TypeX86PVVCPUMSRs]))
}

// TestLabPVGoSaveXlRestore: a live Go save of a PV guest either works or,
// where Xen refuses log-dirty for PV, fails before suspending and leaves
// the guest counting; a non-live Go save restored by xl restore counts on;
// and the same guest saved and restored by xl, timed against the Go save.
func TestLabPVGoSaveXlRestore(t *testing.T) {
	labtest.Require(t)
	// Passed in lab run 1 (guest1); it boots one more guest than the other
	// PV cells, which with them outgrows the package's 15-minute budget
	// when CI boots two Xen flavours side by side.
	if os.Getenv("XENSR_LAB_PV_TIMINGS") != "1" {
		t.Skip("SKIP-PV-BUDGET: the Go save -> xl restore timing cell runs with XENSR_LAB_PV_TIMINGS=1 (passed in lab run 1; outside the default 15-minute budget)")
	}
	rep := &pvLabReport{t: t}
	defer rep.write("pv-go-save-xl-restore.txt")
	for _, g := range pvLabGuests {
		t.Run(g.name, func(t *testing.T) {
			pvLabGuest(t, g.name)
			rep.t = t
			name := labtest.CreateGuest(t, g.cfg)
			file := "/tmp/pv-go-" + name + ".save"
			defer os.Remove(file)

			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			st, dGo, err := goSavePV(t, name, file, SaveOptions{}, true)
			if err != nil {
				t.Fatalf("Go save: %v", err)
			}
			last, off := labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
			if _, err := labtest.RunErr("xl", "domid", name); err == nil {
				t.Fatalf("domain %s still exists after the committed Go save", name)
			}
			var rout string
			t0 := time.Now()
			rout = labtest.Run(t, "xl", "restore", file)
			dRestGo := time.Since(t0)
			t.Logf("xl restore:\n%s", rout)
			labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "xl restore of the Go PV save")
			gsz := int64(0)
			if fi, err := os.Stat(file); err == nil {
				gsz = fi.Size()
			}
			labtest.RunErr("cp", file, filepath.Join(labtest.OutDir(t), "pv-go-"+name+".save"))

			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			xfile := "/tmp/pv-xl-" + name + ".save"
			defer os.Remove(xfile)
			t0 = time.Now()
			labtest.Run(t, "xl", "save", name, xfile)
			dXl := time.Since(t0)
			last, off = labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
			t0 = time.Now()
			labtest.Run(t, "xl", "restore", xfile)
			dRestXl := time.Since(t0)
			labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "xl restore of the xl PV save")
			xsz := int64(0)
			if fi, err := os.Stat(xfile); err == nil {
				xsz = fi.Size()
			}
			rep.rec("%s: Go save %.2f s (%d pages, %d bytes, downtime %.2f s), xl restore of it %.2f s; xl save %.2f s (%d bytes), xl restore of it %.2f s",
				name, dGo.Seconds(), st.Pages, gsz, st.Downtime.Seconds(), dRestGo.Seconds(), dXl.Seconds(), xsz, dRestXl.Seconds())

			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			id := pvLabDomid(t, name)
			last, off = labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
			_, _, err = goSavePV(t, name, file, SaveOptions{Live: true}, true)
			switch {
			case errors.Is(err, ErrPVLogDirty):
				if got := pvLabDomid(t, name); got != id {
					t.Fatalf("domain %d gone after the refused live save (now %d)", id, got)
				}
				labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "refused live PV save")
				rep.rec("%s: live Go save refused before suspending (%v); the guest counted on", name, err)
			case err == nil:
				last, off = labtest.Counter(name), labtest.LogSize(labtest.ConsoleLog(name))
				labtest.Run(t, "xl", "restore", file)
				labtest.GoesOn(t, labtest.ConsoleLog(name), last, off, "xl restore of a live Go PV save")
				rep.rec("%s: live Go save worked (log-dirty available); xl restore counted on", name)
			default:
				t.Fatalf("live Go save: %v", err)
			}

		})
	}
}

// goRestorePV restores file with the Go engine and returns how long it
// took.
func goRestorePV(t *testing.T, file string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h, err := OpenHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var log bytes.Buffer
	t0 := time.Now()
	r, err := h.Restore(ctx, f, RestoreOptions{Log: &log})
	took := time.Since(t0)
	t.Logf("Go restore of %s: %v in %v\n%s", file, err, took, log.String())
	if err != nil {
		t.Fatalf("Go restore: %v", err)
	}
	t.Logf("restored as domain %d (%s): %d pages", r.Domid, r.Name, r.Stats.Pages)
	return took
}

// TestLabPVRestore: xl save -> Go restore, Go save -> Go restore, the
// Go-restored guest saved by xl save and restored by xl restore, and the Go
// save's image restored by xl restore; the counter goes on each time.
func TestLabPVRestore(t *testing.T) {
	labtest.Require(t)
	rep := &pvLabReport{t: t}
	defer rep.write("pv-restore.txt")
	for _, g := range pvLabGuests {
		t.Run(g.name, func(t *testing.T) {
			pvLabGuest(t, g.name)
			rep.t = t
			name := labtest.CreateGuest(t, g.cfg)
			xfile, gfile := "/tmp/pv-xl-r-"+name+".save", "/tmp/pv-go-r-"+name+".save"
			defer os.Remove(xfile)
			defer os.Remove(gfile)
			log := labtest.ConsoleLog(name)

			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			labtest.Run(t, "xl", "save", name, xfile)
			last, off := labtest.Counter(name), labtest.LogSize(log)
			d1 := goRestorePV(t, xfile)
			labtest.GoesOn(t, log, last, off, "Go restore of an xl PV save")
			refuseBadPTE(t, xfile)

			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			_, dSave, err := goSavePV(t, name, gfile, SaveOptions{}, true)
			if err != nil {
				t.Fatalf("Go save of the Go-restored guest: %v", err)
			}
			last, off = labtest.Counter(name), labtest.LogSize(log)
			lastGo := last
			d2 := goRestorePV(t, gfile)
			labtest.GoesOn(t, log, last, off, "Go restore of a Go PV save")

			labtest.WaitCounter(t, name, labtest.Counter(name), time.Minute)
			t0 := time.Now()
			labtest.Run(t, "xl", "save", name, xfile)
			dXl := time.Since(t0)
			last, off = labtest.Counter(name), labtest.LogSize(log)
			t0 = time.Now()
			labtest.Run(t, "xl", "restore", xfile)
			dXr := time.Since(t0)
			labtest.GoesOn(t, log, last, off, "xl save and xl restore of the Go-restored PV guest")

			// The Go save's image once more, through xl restore: the guest
			// goes on from where the Go save stopped it.
			labtest.Run(t, "xl", "destroy", name)
			off = labtest.LogSize(log)
			t0 = time.Now()
			labtest.Run(t, "xl", "restore", gfile)
			dGx := time.Since(t0)
			labtest.GoesOn(t, log, lastGo, off, "xl restore of the Go PV save")
			rep.rec("%s: Go restore of an xl save %.2f s; Go save %.2f s then Go restore %.2f s; xl save %.2f s and xl restore %.2f s of the Go-restored guest; xl restore of the Go save %.2f s; counter went on each time",
				name, d1.Seconds(), dSave.Seconds(), d2.Seconds(), dXl.Seconds(), dXr.Seconds(), dGx.Seconds())
		})
	}
}

// refuseBadPTE corrupts one present entry of the first L1 page table in
// the real xl save image file so that it names a PFN far beyond the guest's
// P2M, and checks that the Go restore refuses it naming that PFN, the entry
// and the PAGE_DATA record, with a stream.FormatError, and leaves no domain
// and no xenstore directory behind. The unchanged image restored just
// before is the control.
func refuseBadPTE(t *testing.T, file string) {
	t.Helper()
	img, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var table []byte
	_, err = image.Walk(bytes.NewReader(img), image.Options{}, func(it *image.Item) error {
		if pd, ok := it.Libxc.(*libxc.PageData); ok && table == nil {
			pd.Pages(func(_ int, _ uint64, pt libxc.PageType, d []byte) bool {
				if pt == libxc.PageL1 || pt == libxc.PageL1Pinned {
					table = bytes.Clone(d)
					return false
				}
				return true
			})
		}
		return nil
	})
	if err != nil || table == nil {
		t.Fatalf("no L1 page table in %s (%v)", file, err)
	}
	if n := bytes.Count(img, table); n != 1 {
		t.Fatalf("the L1 table appears %d times in the image", n)
	}
	const beyond = 0x100000 // PFN 1 Mi: the lab's PV guests have 32 Ki or 48 Ki
	bad := bytes.Clone(table)
	slot := -1
	for i := 0; i < 512; i++ {
		if pte := binary.LittleEndian.Uint64(bad[i*8:]); pte&1 != 0 {
			binary.LittleEndian.PutUint64(bad[i*8:], pte&^(0xffffffffff<<12)|beyond<<12)
			slot = i
			break
		}
	}
	if slot < 0 {
		t.Fatal("the L1 table has no present entry")
	}
	corrupt := bytes.Replace(img, table, bad, 1)
	before := labtest.Run(t, "xenstore-list", "/local/domain")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := OpenHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Restore(ctx, bytes.NewReader(corrupt), RestoreOptions{Name: "pv-bad-pte", Paused: true})
	var fe *stream.FormatError
	if err == nil {
		labtest.RunErr("xl", "destroy", "pv-bad-pte")
		t.Fatalf("the Go restore took a page table naming PFN %#x", beyond)
	}
	want := fmt.Sprintf("L1[%d]", slot)
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), fmt.Sprintf("%#x", beyond)) ||
		!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "PAGE_DATA") {
		t.Fatalf("corrupted PTE: %v; want a FormatError naming PFN %#x, %s and the PAGE_DATA record", err, beyond, want)
	}
	if out, err := labtest.RunErr("xl", "domid", "pv-bad-pte"); err == nil {
		t.Fatalf("a domain pv-bad-pte is left: %q", out)
	}
	if after := labtest.Run(t, "xenstore-list", "/local/domain"); after != before {
		t.Fatalf("/local/domain changed: %q -> %q", before, after)
	}
	t.Logf("a PTE naming PFN %#x in the real image (entry %d of the first L1 table): refused, nothing left: %v", beyond, slot, err)
}
