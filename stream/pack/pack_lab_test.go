//go:build linux

package pack

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
	"golang.org/x/sys/unix"
)

// TestLabPipeSaveRestore: `xl save` writes into a FIFO that Pack reads as
// it is written; Unpack writes into a FIFO that `xl restore` reads; the
// guest counts on. No full image ever lands on disk.
func TestLabPipeSaveRestore(t *testing.T) {
	labtest.Require(t)
	name := labtest.CreateGuest(t, labtest.GuestPVH)
	dir := t.TempDir()
	saveFifo, restoreFifo := filepath.Join(dir, "save"), filepath.Join(dir, "restore")
	for _, f := range []string{saveFifo, restoreFifo} {
		if err := unix.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := labtest.Counter(name)
	save := exec.Command("xl", "save", name, saveFifo)
	var saveOut bytes.Buffer
	save.Stdout, save.Stderr = &saveOut, &saveOut
	t0 := time.Now()
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(saveFifo)
	if err != nil {
		t.Fatal(err)
	}
	var packed bytes.Buffer
	var head bytes.Buffer
	st, perr := Pack(&packed, io.TeeReader(in, &limitWriter{&head, 64}), Options{})
	in.Close()
	if err := save.Wait(); err != nil || perr != nil {
		t.Fatalf("xl save | pack: %v / %v; first bytes %q\n%s", err, perr, head.Bytes(), saveOut.String())
	}
	dsave := time.Since(t0)

	restore := exec.Command("xl", "restore", restoreFifo)
	var rout bytes.Buffer
	restore.Stdout, restore.Stderr = &rout, &rout
	t1 := time.Now()
	if err := restore.Start(); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(restoreFifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	uerr := Unpack(out, bytes.NewReader(packed.Bytes()))
	out.Close()
	if err := restore.Wait(); err != nil || uerr != nil {
		t.Fatalf("unpack | xl restore: %v / %v\n%s", err, uerr, rout.String())
	}
	drestore := time.Since(t1)
	got := labtest.WaitCounter(t, name, before, 2*time.Minute)
	t.Logf("PACK-LAB xl save|pack %v (%d -> %d bytes, %d zero, %d duplicate, %d unique pages); unpack|xl restore %v; counter %d -> %d",
		dsave.Round(time.Millisecond), st.InBytes, st.OutBytes, st.ZeroPages, st.DupPages, st.UniquePages, drestore.Round(time.Millisecond), before, got)
}

// limitWriter keeps the first n bytes written, for diagnostics.
type limitWriter struct {
	b *bytes.Buffer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if k := l.n - l.b.Len(); k > 0 {
		l.b.Write(p[:min(k, len(p))])
	}
	return len(p), nil
}
