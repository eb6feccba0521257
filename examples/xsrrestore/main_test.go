package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		rc   int
	}{
		{nil, 2}, {[]string{"a", "b"}, 2}, {[]string{"-bogus"}, 2}, {[]string{"-h"}, 0},
	} {
		var stderr bytes.Buffer
		if rc := run(c.args, strings.NewReader(""), &bytes.Buffer{}, &stderr); rc != c.rc || stderr.Len() == 0 {
			t.Errorf("%q: rc %d (want %d), stderr %q", c.args, rc, c.rc, stderr.String())
		}
	}
	// Runtime errors are 1, reported on stderr, before any device is opened.
	var stderr bytes.Buffer
	if rc := run([]string{"/nonexistent/image"}, nil, &bytes.Buffer{}, &stderr); rc != 1 || !strings.Contains(stderr.String(), "no such file") {
		t.Errorf("missing file: rc %d, %q", rc, stderr.String())
	}
}

// TestReceiveIgnoresArgs: xl migrate -s CMD appends "HOST xl ... migrate-receive".
func TestReceiveIgnoresArgs(t *testing.T) {
	a, rc := parse([]string{"-migrate-receive", "localhost", "xl", "-t", "migrate-receive"}, &bytes.Buffer{})
	if rc != -1 || a == nil || !a.receive {
		t.Fatalf("rc %d, args %+v", rc, a)
	}
}
