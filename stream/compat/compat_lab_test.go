//go:build linux

package compat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/stream/image"
)

// runningXen returns the lab's Xen as hypercall.Open probed it, and checks
// it is the flavour the harness booted (XENSR_LAB_XEN).
func runningXen(t *testing.T) Version {
	t.Helper()
	x, err := hypercall.Open()
	if err != nil {
		t.Fatalf("hypercall.Open: %v", err)
	}
	i := x.Interface()
	extra, err := x.ExtraVersion()
	x.Close()
	if err != nil {
		t.Fatal(err)
	}
	v := ParseExtraVersion(Version{i.Major, i.Minor, 0}, extra)
	t.Logf("running %s, extraversion %q", i, extra)
	if f := os.Getenv("XENSR_LAB_XEN"); f != "" && f != fmt.Sprintf("%d.%d", v.Major, v.Minor) {
		t.Fatalf("the lab booted flavour %s but Xen says %s", f, v)
	}
	return v
}

func checkFile(t *testing.T, path string, target Version) *Report {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Check(f, image.Options{}, target)
	if err != nil {
		t.Fatalf("Check %s: %v", path, err)
	}
	return rep
}

// TestLabSaveAndRefuseNewer saves the PVH guest with xl save on the running
// Xen (the image stays in the lab's output folder for a later boot of
// another Xen), checks that the image names this Xen as its writer and
// restores here, then grows its LAPIC records to Xen 4.21's 32 bytes: on
// Xen 4.17-4.20 Check refuses that image, and so does Xen itself when xl
// restore tries it, so the check says before anything is created what Xen
// would say after.
func TestLabSaveAndRefuseNewer(t *testing.T) {
	labtest.Require(t)
	running := runningXen(t)
	out := labtest.OutDir(t)
	name := labtest.CreateGuest(t, labtest.GuestPVH)
	// xl save writes from mapped guest pages, which the 9p share cannot
	// take (EFAULT): save into dom0's tmpfs, then copy out.
	local := filepath.Join(t.TempDir(), "guest3.save")
	labtest.Run(t, "xl", "save", name, local)
	c := labtest.Counter(name)
	b, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(out, fmt.Sprintf("guest3-%d.%d.save", running.Major, running.Minor))
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img+".counter", []byte(strconv.Itoa(c)), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := checkFile(t, img, running)
	if rep.Writer != (Version{running.Major, running.Minor, 0}) || rep.Err() != nil || len(rep.Notes) != 0 {
		t.Fatalf("own image: writer %s, %v, notes %q", rep.Writer, rep.Err(), rep.Notes)
	}
	t.Logf("saved %s at counter %d: written by Xen %s, %s", img, c, rep.Writer, rep.DomainType)

	if lapic32(running) {
		// Debian 13's Xen 4.20.4 is one: the stable branch took
		// pending_esr in 4.20.1. Its own image is the one that cannot go
		// back to 4.17.
		rep := checkFile(t, img, Version{4, 17, 7})
		if err := rep.Err(); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "HVM LAPIC") {
			t.Fatalf("Xen %s image on 4.17.7: %v", running, err)
		}
		t.Logf("this image on Debian 12's Xen 4.17.7: %v", rep.Err())
		t.Skipf("Xen %s writes and loads 32-byte LAPIC records: no longer image to refuse here", running)
	}
	grown := filepath.Join(t.TempDir(), "guest3-lapic32.save")
	if err := os.WriteFile(grown, growLAPIC(t, b, lapicGrew), 0o644); err != nil {
		t.Fatal(err)
	}
	rep = checkFile(t, grown, running)
	if err := rep.Err(); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "HVM LAPIC") {
		t.Fatalf("grown image on Xen %s: %v", running, err)
	}
	t.Logf("Check refuses it: %v", rep.Err())
	xlOut, err := labtest.RunErr("xl", "restore", grown)
	labtest.RunErr("xl", "destroy", name)
	if err == nil {
		t.Fatalf("Xen %s restored the image with 32-byte LAPIC records:\n%s", running, xlOut)
	}
	t.Logf("xl restore refuses it too (%v); its last lines:\n%s", err, tail(xlOut, 6))
}

// TestLabRestoreOlderImage restores, on Xen 4.20, the image the 4.17 boot
// of the same lab run saved (XENSR_LAB_XEN="4.17 4.20"): Check passes it
// before anything is created, then xl restore and, from the same image, the
// Go restore bring the guest back and its counter goes on from where it was
// saved each time.
func TestLabRestoreOlderImage(t *testing.T) {
	labtest.Require(t)
	running := runningXen(t)
	older := Version{4, 17, 0}
	if !older.Less(running) {
		t.Skipf("Xen %s: no older flavour to restore from", running)
	}
	root := os.Getenv("XENSR_LAB_ROOT")
	img := filepath.Join(root, "artifacts", "stream_compat", fmt.Sprintf("guest3-%d.%d.save", older.Major, older.Minor))
	if os.Getenv("XENSR_LAB_PARALLEL") == "1" && root != "" {
		waitOlderImage(t, img+".counter", filepath.Join(root, "results-c", "stream_compat.rc"))
	}
	cb, err := os.ReadFile(img + ".counter")
	if root == "" || err != nil {
		t.Skipf("SKIP-NEEDS-OLDER-BOOT: no image from a Xen %s boot (%v); run XENSR_LAB_XEN=\"4.17 4.20\" bash scripts/lab.sh", older, err)
	}
	saved, _ := strconv.Atoi(strings.TrimSpace(string(cb)))
	rep := checkFile(t, img, running)
	if rep.Writer != older || rep.Err() != nil {
		t.Fatalf("4.17 image on %s: writer %s, %v", running, rep.Writer, rep.Err())
	}
	name := "guest3"
	labtest.RunErr("xl", "destroy", name)
	os.Remove(labtest.ConsoleLog(name))
	b, err := os.ReadFile(img) // restore from dom0's tmpfs, not the 9p share
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "guest3-"+older.String()+".save")
	if err := os.WriteFile(local, b, 0o644); err != nil {
		t.Fatal(err)
	}
	b = nil
	labtest.Run(t, "xl", "restore", local)
	t.Cleanup(func() { labtest.RunErr("xl", "destroy", name) })
	now := labtest.WaitCounter(t, name, saved, 5*time.Minute)
	first := firstCounter(labtest.ConsoleLog(name))
	if first < saved {
		t.Fatalf("after restore the counter printed %d first, below the %d it was saved at: the guest restarted", first, saved)
	}
	t.Logf("image of Xen %s restored on Xen %s: counter saved at %d, first after restore %d, now %d", older, running, saved, first, now)

	// The same image through the Go restore (package migrate): the same
	// saved state, so the counter goes on from the same value again.
	labtest.Run(t, "xl", "destroy", name)
	os.Remove(labtest.ConsoleLog(name))
	h, err := migrate.OpenHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h.Restore(context.Background(), f, migrate.RestoreOptions{})
	if err != nil {
		t.Fatalf("Go restore of the Xen %s image on Xen %s: %v", older, running, err)
	}
	now = labtest.WaitCounter(t, name, saved, 5*time.Minute)
	first = firstCounter(labtest.ConsoleLog(name))
	if first < saved {
		t.Fatalf("after the Go restore the counter printed %d first, below the %d it was saved at: the guest restarted", first, saved)
	}
	t.Logf("image of Xen %s restored on Xen %s by the Go restore (domain %d, %v): counter saved at %d, first after restore %d, now %d",
		older, running, r.Domid, r.Stats.Total.Round(time.Millisecond), saved, first, now)
}

// waitOlderImage waits, when the lab boots its Xen flavours side by side
// (XENSR_LAB_PARALLEL=1), for the older boot to save its image: its
// counter file is written after the image. It gives up when the older
// boot's stream/compat run has ended (rc) or after 12 minutes (the lab
// gives a test binary 15).
func waitOlderImage(t *testing.T, counter, rc string) {
	t0 := time.Now()
	for time.Since(t0) < 12*time.Minute {
		if _, err := os.Stat(counter); err == nil {
			t.Logf("the older boot's image was there after %v", time.Since(t0).Round(time.Second))
			return
		}
		if _, err := os.Stat(rc); err == nil {
			return
		}
		time.Sleep(5 * time.Second)
	}
}

// firstCounter returns the first "counter=N" of a console log, or -1.
func firstCounter(log string) int {
	b, _ := os.ReadFile(log)
	i := bytes.Index(b, []byte("counter="))
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+len("counter="):]))
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return -1
	}
	return n
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
