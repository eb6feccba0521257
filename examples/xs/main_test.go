package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/xensr/xensr/xenstore/xenstoretest"
)

func TestCommands(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx := context.Background()
	do := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, args, &out, s.Dial)
		return out.String(), err
	}
	if _, err := do("write", "/vm/a", "1", "/vm/b/c", "two"); err != nil {
		t.Fatal(err)
	}
	if out, err := do("read", "/vm/a", "/vm/b/c"); err != nil || out != "1\ntwo\n" {
		t.Fatalf("read: %q %v", out, err)
	}
	if out, _ := do("ls", "/vm"); out != "a = \"1\"\nb = \"\"\n c = \"two\"\n" {
		t.Fatalf("ls: %q", out)
	}
	if _, err := do("perms", "/vm/a", "n0", "r3"); err != nil {
		t.Fatal(err)
	}
	if out, _ := do("perms", "/vm/a"); out != "n0 r3\n" {
		t.Fatalf("perms: %q", out)
	}
	if out, _ := do("watch", "/vm", "-n", "1"); out != "/vm\n" {
		t.Fatalf("watch: %q", out)
	}
	do("rm", "/vm/b")
	if _, err := do("read", "/vm/b/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read after rm: %v", err)
	}
	if _, err := do("frobnicate"); err == nil {
		t.Fatal("unknown command accepted")
	}
}
