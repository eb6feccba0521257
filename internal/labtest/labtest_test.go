package labtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGuestNameAndCounter(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "g.cfg")
	os.WriteFile(cfg, []byte("type = \"pvh\"\nname = \"guest3\"\nmemory = 128\n"), 0o644)
	name, err := GuestName(cfg)
	if err != nil || name != "guest3" {
		t.Fatalf("GuestName = %q, %v", name, err)
	}
	if _, err := GuestName(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("GuestName of a missing file succeeded")
	}
}

func TestRequireSkipsOutsideLab(t *testing.T) {
	t.Setenv(EnvLab, "")
	ran := false
	t.Run("inner", func(t *testing.T) {
		defer func() { ran = true }()
		Require(t)
		t.Fatal("Require did not skip outside the lab")
	})
	if !ran {
		t.Fatal("inner test did not run")
	}
}
