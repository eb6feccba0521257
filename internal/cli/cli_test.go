package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		min, max int
		code     int
		ok       bool
		stderr   string
	}{
		{[]string{"-h"}, 1, 1, ExitOK, false, "usage: tool [flags] FILE"},
		{[]string{"--help"}, 1, 1, ExitOK, false, "-v\tverbose"},
		{[]string{"-nope"}, 1, 1, ExitUsage, false, "tool: flag provided but not defined: -nope"},
		{[]string{}, 1, 1, ExitUsage, false, "missing argument: want FILE"},
		{[]string{"a", "b"}, 1, 1, ExitUsage, false, `unexpected argument "b"`},
		{[]string{"-v", "a"}, 1, 1, ExitOK, true, ""},
		{[]string{"a", "b", "c"}, 0, -1, ExitOK, true, ""},
	} {
		var e bytes.Buffer
		c := New("tool", "FILE", "Does things.", &e)
		c.Flags.Bool("v", false, "verbose")
		_, code, ok := c.ParseN(tc.args, tc.min, tc.max)
		if code != tc.code || ok != tc.ok || !strings.Contains(e.String(), tc.stderr) {
			t.Errorf("%q: code %d ok %v stderr %q; want %d %v containing %q", tc.args, code, ok, e.String(), tc.code, tc.ok, tc.stderr)
		}
	}
}

func TestFail(t *testing.T) {
	var e bytes.Buffer
	if code := New("tool", "", "", &e).Fail(errors.New("boom")); code != ExitFailure || e.String() != "tool: boom\n" {
		t.Fatalf("code %d stderr %q", code, e.String())
	}
}

func TestDispatch(t *testing.T) {
	ran := ""
	subs := []Sub{{"pack", "packs", func(a []string) int { ran = strings.Join(a, ","); return 7 }}}
	for _, tc := range []struct {
		args []string
		code int
	}{{nil, ExitUsage}, {[]string{"-h"}, ExitOK}, {[]string{"help"}, ExitOK}, {[]string{"zap"}, ExitUsage}, {[]string{"pack", "x"}, 7}} {
		var e bytes.Buffer
		if code := Dispatch("xsrpack", subs, tc.args, &e); code != tc.code {
			t.Errorf("%q: code %d, want %d (%s)", tc.args, code, tc.code, e.String())
		}
	}
	if ran != "x" {
		t.Fatalf("subcommand got %q", ran)
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(0, 0)
	p := NewProgress(&b, false, "pack", 4<<20)
	p.now = func() time.Time { return now }
	p.start, p.last = now, now
	p.Add(1 << 20) // too soon: no line
	if b.Len() != 0 {
		t.Fatalf("printed before the interval: %q", b.String())
	}
	now = now.Add(5 * time.Second)
	p.Add(1 << 20)
	want := "pack: 2 MiB of 4 MiB (50%), 409.60 KiB/s, ETA 5s\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	b.Reset()
	q := NewProgress(&b, true, "x", 0)
	q.Add(5)
	q.Done()
	if b.Len() != 0 {
		t.Fatalf("quiet progress printed %q", b.String())
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[float64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.50 KiB", 3 << 30: "3 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%v) = %q, want %q", n, got, want)
		}
	}
}
