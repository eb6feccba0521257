package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/fixture"
)

func fixtureFile(t *testing.T, name string) string { return fixture.File(t, name) }

func TestDumpAndRewrite(t *testing.T) {
	in := fixtureFile(t, "guest3-pvh-migrate.xl")
	out := filepath.Join(t.TempDir(), "re")
	var stdout, stderr bytes.Buffer
	if rc := run(config{verify: true, verbose: true, records: true, rewrite: out, format: "auto"}, in, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc %d: %s", rc, stderr.String())
	}
	s := stdout.String()
	for _, want := range []string{"libxl  header: version 2", "libxc  domain header: x86 HVM", "PAGE_DATA", "HVM_CONTEXT", "identical to input: true", "verdict: valid", "permission to go"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	a, _ := os.ReadFile(in)
	b, _ := os.ReadFile(out)
	if !bytes.Equal(a, b) {
		t.Error("rewritten file differs")
	}
}

func TestVerifyFails(t *testing.T) {
	in := fixtureFile(t, "guest1-pv-migrate-failed.xl")
	var stdout, stderr bytes.Buffer
	if rc := run(config{verify: true, format: "auto"}, in, &stdout, &stderr); rc != 1 {
		t.Fatalf("rc %d, want 1", rc)
	}
	if !strings.Contains(stderr.String(), "offset 2791") || !strings.Contains(stderr.String(), "before the END record") {
		t.Errorf("stderr %q does not name the truncation", stderr.String())
	}
}

func TestJSON(t *testing.T) {
	in := fixtureFile(t, "guest1-pv.xl")
	var stdout, stderr bytes.Buffer
	if rc := run(config{json: true, verify: true, records: true, format: "xl"}, in, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc %d: %s", rc, stderr.String())
	}
	var doc struct {
		Valid   bool
		Verdict string
		Summary struct {
			Format     string
			DomainType string `json:"domain_type"`
			Pages      struct{ Pages int64 }
		}
		Items []struct {
			Layer  string
			Offset int64
			Size   int64
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(in)
	last := doc.Items[len(doc.Items)-1]
	if !doc.Valid || doc.Verdict != "valid" || doc.Summary.Format != "xl" || doc.Summary.DomainType != "x86 PV" || last.Offset+last.Size != fi.Size() || doc.Summary.Pages.Pages == 0 {
		t.Errorf("unexpected JSON: %+v", doc)
	}
	// Forcing the wrong outer format is an invalid stream.
	if rc := run(config{verify: true, format: "libxc"}, in, &stdout, &stderr); rc != 1 {
		t.Errorf("forced libxc: rc %d", rc)
	}
}

func TestCheckpointed(t *testing.T) {
	in := fixtureFile(t, "synthetic-pvh-checkpointed.libxl")
	var stdout, stderr bytes.Buffer
	if rc := run(config{verify: true, format: "auto"}, in, &stdout, &stderr); rc != 1 {
		t.Errorf("without -c: rc %d, want 1 (CHECKPOINT in a plain stream)", rc)
	}
	stdout.Reset()
	if rc := run(config{verify: true, checkpointed: true, format: "auto"}, in, &stdout, &stderr); rc != 0 {
		t.Fatalf("with -c: rc %d: %s", rc, stderr.String())
	}
	if !strings.Contains(stdout.String(), "checkpoints 2") {
		t.Errorf("output lacks the two checkpoints:\n%s", stdout.String())
	}
}

// endless is an input that never ends (like /dev/zero) and counts what was read.
type endless struct {
	prefix []byte
	n      int64
}

func (e *endless) Read(p []byte) (int, error) {
	k := 0
	if e.n < int64(len(e.prefix)) {
		k = copy(p, e.prefix[e.n:])
	} else {
		clear(p)
		k = len(p)
	}
	e.n += int64(k)
	return k, nil
}

// xsrdump -verify - </dev/zero must fail at once, not read forever (issue 14
// item 4), for garbage and for a valid image followed by endless bytes, in
// every mode.
func TestErrorStopsReading(t *testing.T) {
	valid, err := os.ReadFile(fixtureFile(t, "guest3-pvh.xl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		prefix []byte
		c      config
	}{
		{"zeros verify", nil, config{verify: true, format: "auto"}},
		{"zeros relaxed", nil, config{format: "auto"}},
		{"zeros as libxc", nil, config{verify: true, format: "libxc"}},
		{"zeros rewrite", nil, config{verify: true, format: "auto", rewrite: filepath.Join(t.TempDir(), "out")}},
		{"valid image then zeros", valid, config{verify: true, format: "auto"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &endless{prefix: tc.prefix}
			stdin = in
			defer func() { stdin = os.Stdin }()
			var stdout, stderr bytes.Buffer
			done := make(chan int, 1)
			go func() { done <- run(tc.c, "-", &stdout, &stderr) }()
			select {
			case rc := <-done:
				if rc != 1 || !strings.Contains(stderr.String(), "invalid stream") {
					t.Fatalf("rc %d, stderr %q", rc, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("still reading after 20 s (%d bytes)", in.n)
			}
			if lim := int64(len(tc.prefix)) + 4<<20; in.n > lim {
				t.Errorf("read %d bytes, want at most %d", in.n, lim)
			}
		})
	}
}

// TestVerdictOnlyAfterStrictCheck: a relaxed walk gives no verdict. The
// checkpointed fixture walks without error when relaxed, but strict
// checking refuses it (CHECKPOINT in a stream not declared checkpointed):
// before the fix the relaxed walk printed "valid: yes" and "valid": true.
func TestVerdictOnlyAfterStrictCheck(t *testing.T) {
	in := fixtureFile(t, "synthetic-pvh-checkpointed.libxl")
	var stdout, stderr bytes.Buffer
	if rc := run(config{json: true, format: "auto"}, in, &stdout, &stderr); rc != 0 {
		t.Fatalf("relaxed walk: rc %d: %s", rc, stderr.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if _, has := doc["valid"]; has || doc["verdict"] != "not verified" {
		t.Errorf("relaxed walk: verdict %v, valid %v; want \"not verified\" and no valid field", doc["verdict"], doc["valid"])
	}
	stdout.Reset()
	if rc := run(config{format: "auto"}, in, &stdout, &stderr); rc != 0 || !strings.Contains(stdout.String(), "verdict: not verified") || strings.Contains(stdout.String(), "valid: yes") {
		t.Errorf("relaxed text walk: rc %d\n%s", rc, stdout.String())
	}
	stdout.Reset()
	if rc := run(config{json: true, verify: true, format: "auto"}, in, &stdout, &stderr); rc != 1 {
		t.Fatalf("strict walk: rc %d, want 1", rc)
	}
	doc = nil
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["verdict"] != "invalid" || doc["valid"] != false || doc["summary"] != nil || doc["error"] == nil {
		t.Errorf("strict walk: %v", doc)
	}
}
