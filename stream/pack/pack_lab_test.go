//go:build linux

package pack

import (
	"bytes"
	"os/exec"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
)

// TestLabPipeSaveRestore: `xl save` writes into a pipe that Pack reads;
// Unpack writes into a pipe that `xl restore` reads; the guest counts on.
func TestLabPipeSaveRestore(t *testing.T) {
	labtest.Require(t)
	name := labtest.CreateGuest(t, labtest.GuestPVH)
	before := labtest.Counter(name)

	save := exec.Command("xl", "save", name, "/dev/stdout")
	pr, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var saveErr bytes.Buffer
	save.Stderr = &saveErr
	t0 := time.Now()
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	var packed bytes.Buffer
	st, perr := Pack(&packed, pr, Options{})
	if err := save.Wait(); err != nil || perr != nil {
		t.Fatalf("xl save | pack: %v / %v\n%s", err, perr, saveErr.String())
	}
	dsave := time.Since(t0)

	restore := exec.Command("xl", "restore", "/dev/stdin")
	pw, err := restore.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var rout bytes.Buffer
	restore.Stdout, restore.Stderr = &rout, &rout
	t1 := time.Now()
	if err := restore.Start(); err != nil {
		t.Fatal(err)
	}
	uerr := Unpack(pw, bytes.NewReader(packed.Bytes()))
	pw.Close()
	if err := restore.Wait(); err != nil || uerr != nil {
		t.Fatalf("unpack | xl restore: %v / %v\n%s", err, uerr, rout.String())
	}
	drestore := time.Since(t1)
	got := labtest.WaitCounter(t, name, before, 2*time.Minute)
	t.Logf("PACK-LAB xl save|pack %v (%d -> %d bytes, %d zero, %d duplicate, %d unique pages); unpack|xl restore %v; counter %d -> %d",
		dsave.Round(time.Millisecond), st.InBytes, st.OutBytes, st.ZeroPages, st.DupPages, st.UniquePages, drestore.Round(time.Millisecond), before, got)
}
