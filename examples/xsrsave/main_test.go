package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-o", "x.save"}, // no domain
		{"-domid", "3"},  // no output
		{"-domid", "3", "-o", "x", "-migrate", "xl migrate-receive"}, // both
		{"-bogus"},
	} {
		var stderr bytes.Buffer
		if rc := run(args, &bytes.Buffer{}, &stderr); rc != 2 {
			t.Errorf("run %q = %d, want 2 (usage)", args, rc)
		}
		if stderr.Len() == 0 {
			t.Errorf("run %q: no usage message", args)
		}
	}
}

func TestClosingWriter(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	w := &closingWriter{f: f, limit: 10}
	if n, err := w.Write([]byte("12345")); n != 5 || err != nil {
		t.Fatalf("first write: %d %v", n, err)
	}
	n, err := w.Write([]byte("6789abcdef"))
	if n != 5 || err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("crossing write: %d %v", n, err)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("the file is still open after the injected failure")
	}
}

func TestRunHelp(t *testing.T) {
	var stderr bytes.Buffer
	if rc := run([]string{"-h"}, &bytes.Buffer{}, &stderr); rc != 0 || !strings.Contains(stderr.String(), "-domid") {
		t.Fatalf("-h: rc %d, stderr %q", rc, stderr.String())
	}
}
