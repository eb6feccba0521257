package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"testing"

	"github.com/xensr/xensr/xenstore/xenstoretest"
)

func TestCommands(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx := context.Background()
	do := func(args ...string) (string, error) {
		var out bytes.Buffer
		if len(args) == 0 {
			return "", errors.New("no command")
		}
		var o opts
		rest := args[1:]
		if len(rest) > 1 && rest[0] == "-n" {
			o.n, _ = strconv.Atoi(rest[1])
			rest = rest[2:]
		}
		err := do(ctx, args[0], o, rest, &out, s.Dial)
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
	if out, _ := do("watch", "-n", "1", "/vm"); out != "/vm\n" {
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

func TestExitCodes(t *testing.T) {
	s := xenstoretest.NewServer()
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-h"}, 0}, {[]string{"read", "-h"}, 0}, {[]string{"read"}, 2}, {[]string{"write", "/a"}, 2},
		{[]string{"bogus"}, 2}, {[]string{"ls", "-bogus"}, 2}, {[]string{"read", "/nope"}, 1}, {[]string{"write", "/a", "1"}, 0},
	} {
		var out, errb bytes.Buffer
		if code := xs(context.Background(), tc.args, &out, &errb, s.Dial); code != tc.code {
			t.Errorf("%q: exit %d, want %d (%s)", tc.args, code, tc.code, errb.String())
		}
	}
	var out bytes.Buffer
	if code := xs(context.Background(), []string{"ls", "-json", "/"}, &out, io.Discard, s.Dial); code != 0 || !strings.Contains(out.String(), `"name": "a"`) {
		t.Errorf("ls -json: %d %s", code, out.String())
	}
}
