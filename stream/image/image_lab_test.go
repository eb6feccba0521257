//go:build linux

package image

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
)

// reencode walks the image at path strictly, writes its re-encoding to
// path+".re" and checks that it is byte-identical. It returns the re-encoded
// file's path and the summary.
func reencode(t *testing.T, path string) (string, Summary) {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := path + ".re"
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	inHash, outHash := sha256.New(), sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(out, outHash), 1<<20)
	t0 := time.Now()
	sum, err := Rewrite(bw, io.TeeReader(bufio.NewReaderSize(in, 1<<20), inHash), Options{})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	el := time.Since(t0)
	if !bytes.Equal(inHash.Sum(nil), outHash.Sum(nil)) {
		t.Fatalf("%s: re-encoding differs from the image", path)
	}
	t.Logf("%s: %d bytes, %s, libxl %d / libxc %d records, %d pages (%d with data), trailer %d bytes; walked and re-encoded byte-identically in %v (%.0f MB/s)",
		filepath.Base(path), sum.Bytes, sum.DomainType, sum.Records["libxl"], sum.Records["libxc"], sum.Pages.Pages, sum.Pages.DataPages,
		sum.TrailerBytes, el.Round(time.Millisecond), float64(sum.Bytes)/el.Seconds()/1e6)
	return outPath, sum
}

// keep copies a saved image into the lab's output folder (the host keeps it
// for whole-process measurements such as scripts/speed.sh) when the harness
// gave one; spaces in the name become dashes.
func keep(t *testing.T, path, name string) {
	t.Helper()
	dir := os.Getenv(labtest.EnvOut)
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("kept %s (%d bytes)", dst, len(b))
}

func timed(t *testing.T, what string, name string, args ...string) {
	t.Helper()
	t0 := time.Now()
	labtest.Run(t, name, args...)
	t.Logf("%s: %v", what, time.Since(t0).Round(10*time.Millisecond))
}

// counter returns the guest's counter, also looking at the console log of the
// "--incoming" domain that xl migrate creates on the receiving side.
func counter(name string) int { return max(labtest.Counter(name), labtest.Counter(name+"--incoming")) }

func waitCounter(t *testing.T, name string, above int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if c := counter(name); c > above {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %s: counter stayed at %d (want > %d)", name, counter(name), above)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// saveRestore saves the guest with `xl save`, re-encodes the image through
// the Writers, restores the RE-ENCODED image, and checks the guest goes on.
// Then `xl save -c` (the guest keeps running) must re-encode identically too.
func saveRestore(t *testing.T, cfg string) {
	name := labtest.Guest(t, cfg)
	dir := t.TempDir()
	img := filepath.Join(dir, name+".save")
	before := labtest.Counter(name)
	timed(t, "xl save", "xl", "save", name, img)
	re, sum := reencode(t, img)
	if sum.Records["libxc"] == 0 || sum.Pages.DataPages == 0 {
		t.Fatalf("image has no libxc pages: %+v", sum)
	}
	keep(t, img, name+"-"+sum.DomainType+".save")
	os.Remove(img)
	timed(t, "xl restore of the re-encoded image", "xl", "restore", re)
	os.Remove(re)
	c := labtest.WaitCounter(t, name, before, 5*time.Minute)
	t.Logf("%s: counter %d before save, %d after restoring the re-encoded image", name, before, c)

	ck := filepath.Join(dir, name+"-c.save")
	timed(t, "xl save -c", "xl", "save", "-c", name, ck)
	reencode(t, ck)
	os.Remove(ck)
	os.Remove(ck + ".re")
	after := labtest.Counter(name)
	labtest.WaitCounter(t, name, after, 2*time.Minute)
}

func TestLabPVSaveRestoreReencoded(t *testing.T) {
	labtest.Require(t)
	saveRestore(t, labtest.GuestPV)
}

func TestLabPVHSaveRestoreReencoded(t *testing.T) {
	labtest.Require(t)
	saveRestore(t, labtest.GuestPVH)
}

// TestLabPVHMigrateStream live-migrates the PVH guest to localhost with the
// stream tee'd to a file, parses it (xl header, libxl, libxc, and xl's final
// message), re-encodes it byte-identically, and checks the migrated guest
// goes on.
func TestLabPVHMigrateStream(t *testing.T) {
	labtest.Require(t)
	name := labtest.Guest(t, labtest.GuestPVH)
	dir := t.TempDir()
	tee := filepath.Join(dir, name+"-migrate.stream")
	before := labtest.Counter(name)
	timed(t, "xl migrate (localhost)", "xl", "migrate", "-s", "", name, "tee "+tee+" | xl migrate-receive")
	_, sum := reencode(t, tee)
	if sum.Trailer == "" {
		t.Errorf("migration stream without xl's final message: %+v", sum)
	}
	c := waitCounter(t, name, before)
	t.Logf("%s: counter %d before migrate, %d after", name, before, c)
}
