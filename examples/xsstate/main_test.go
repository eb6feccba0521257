package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xensr/xensr/xenstore/migration"
)

func state(extra ...migration.Record) *migration.State {
	recs := []migration.Record{
		{Body: &migration.Global{SocketFD: 5, EvtchnFD: 7}},
		{Body: &migration.Connection{ID: 1, Kind: migration.ConnSocket, SocketFD: 12}},
		{Body: &migration.Watch{ConnID: 1, Path: "/vm", Token: "tok1"}},
		{Body: &migration.Connection{ID: 2, Kind: migration.ConnRing, DomID: 3, TargetID: migration.DomidInvalid, Evtchn: 9, Out: []byte("OK\x00")}},
		{Body: &migration.Transaction{ConnID: 2, TxID: 4}},
		{Body: &migration.Node{ConnID: 2, TxID: 4, Access: migration.AccessWritten, Path: "/vm/new", Value: []byte("n"), Perms: []migration.Perm{{Access: 'n', DomID: 3}}}},
		{Body: &migration.Node{Path: "@releaseDomain", Perms: []migration.Perm{{Access: 'n'}}}},
		{Body: &migration.Node{Path: "/", Perms: []migration.Perm{{Access: 'n'}}}},
		{Body: &migration.Node{Path: "/vm", Perms: []migration.Perm{{Access: 'n'}}}},
		{Body: &migration.Node{Path: "/vm/a", Value: []byte("1\x00"), Perms: []migration.Perm{{Access: 'n'}, {Access: 'r', DomID: 3, Flags: migration.PermStale}}}},
	}
	recs = append(recs, extra...)
	recs = append(recs, migration.Record{Body: &migration.End{}})
	return &migration.State{Header: migration.Header{Version: 1}, Records: recs}
}

func file(t *testing.T, st *migration.State) string {
	b, err := st.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := run(args, strings.NewReader(""), &out, &errb)
	return rc, out.String(), errb.String()
}

func TestDump(t *testing.T) {
	rc, out, errs := runCmd(file(t, state()))
	want := `xenstore migration stream version 1, little-endian, 11 records
@releaseDomain = ""  (n0)
/ = ""  (n0)
 vm = ""  (n0)
  a = "1\x00"  (n0,r3!)
global: socket fd 5, event channel fd 7
connection 1: socket fd 12
  watch /vm token "tok1"
connection 2: ring of domain 3, event channel 9, pending 0 bytes in, 3 out (0 of a partial response): "OK\x00"
  transaction 4
    written /vm/new = "n"  (n3)
`
	if rc != 0 || out != want || errs != "" {
		t.Fatalf("rc %d, stderr %q, out:\n%s\nwant:\n%s", rc, errs, out, want)
	}
}

func TestJSON(t *testing.T) {
	rc, out, _ := runCmd("-json", file(t, state()))
	var j jsonState
	if rc != 0 || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatalf("rc %d, out %s", rc, out)
	}
	if len(j.Nodes) != 4 || j.Nodes[3].Path != "/vm/a" || string(j.Nodes[3].ValueBase64) != "1\x00" || j.Nodes[3].Perms[1] != "r3!" {
		t.Fatalf("nodes %+v", j.Nodes)
	}
	if len(j.Connections) != 2 || j.Connections[0].Type != "socket" || j.Connections[0].Watches[0].Token != "tok1" ||
		j.Connections[1].Transactions[0].Nodes[0].Access != "written" || *j.Connections[1].DomID != 3 {
		t.Fatalf("connections %+v", j.Connections)
	}
	if !strings.Contains(out, `"socketFd": 12`) || !strings.Contains(out, `"type": "ring"`) {
		t.Fatalf("JSON names: %s", out)
	}
}

func TestDiff(t *testing.T) {
	a := file(t, state())
	b := state(
		migration.Record{Body: &migration.Node{Path: "/vm/b", Value: []byte("2"), Perms: []migration.Perm{{Access: 'b'}}}},
		migration.Record{Body: &migration.Watch{ConnID: 2, Path: "/vm/b", Token: "tok2"}},
	)
	b.Records[9].Body.(*migration.Node).Value = []byte("changed")
	b.Records[2].Body.(*migration.Watch).Token = "tok1b"
	rc, out, _ := runCmd("-diff", a, file(t, b))
	want := `~ node /vm/a: "1\x00" (n0,r3!) -> "changed" (n0,r3!)
+ node /vm/b = "2"  (b0)
- watch /vm token "tok1" on socket fd 12
+ watch /vm token "tok1b" on socket fd 12
+ watch /vm/b token "tok2" on ring of domain 3
`
	if rc != 0 || out != want {
		t.Fatalf("rc %d, out:\n%s\nwant:\n%s", rc, out, want)
	}
	if rc, out, _ := runCmd("-diff", a, a); rc != 0 || out != "no differences\n" {
		t.Fatalf("same file: %d %q", rc, out)
	}
	rc, out, _ = runCmd("-diff", "-json", a, file(t, b))
	var lines []string
	if rc != 0 || json.Unmarshal([]byte(out), &lines) != nil || len(lines) != 5 {
		t.Fatalf("-json diff: %d %s", rc, out)
	}
}

func TestExitCodes(t *testing.T) {
	if rc, _, errs := runCmd("-h"); rc != 0 || !strings.Contains(errs, "usage:") {
		t.Errorf("-h: rc %d, %q", rc, errs)
	}
	for _, args := range [][]string{{}, {"-bogus", "x"}, {"a", "b"}, {"-diff", "a"}} {
		if rc, _, errs := runCmd(args...); rc != 2 || !strings.Contains(errs, "usage:") {
			t.Errorf("%q: rc %d, %q", args, rc, errs)
		}
	}
	if rc, _, errs := runCmd(filepath.Join(t.TempDir(), "missing")); rc != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: rc %d %q", rc, errs)
	}
	b, _ := state().Bytes()
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, b[:len(b)-3], 0o644)
	if rc, out, errs := runCmd(bad); rc != 1 || out != "" || !strings.Contains(errs, "offset") || !strings.Contains(errs, "truncated") {
		t.Errorf("truncated file: rc %d, out %q, err %q", rc, out, errs)
	}
	// Standard input.
	var out, errb bytes.Buffer
	if rc := run([]string{"-"}, bytes.NewReader(b), &out, &errb); rc != 0 || !strings.Contains(out.String(), "connection 1") {
		t.Errorf("stdin: rc %d %q", rc, errb.String())
	}
}

// TestLabCapture reads the state C xenstored 4.17 wrote in the lab's live
// update (xenstore/migration/testdata): the dom0 kernel's watches on its
// ring, xenconsoled's, the test client's with a reply in flight, and
// xenstore-control's pending OK.
func TestLabCapture(t *testing.T) {
	f := "../../xenstore/migration/testdata/lab-4.17-live-update.state"
	rc, out, errs := runCmd(f)
	for _, want := range []string{
		"connection 1: ring of domain 0",
		`watch @introduceDomain token "domlist"`,
		`   b = "value of /xensr-lu/1796149990333851612/b"  (n0,r5!)`,
		`watch /xensr-lu/1796149990333851612/b token "xensr-2"`,
		`out (0 of a partial response): "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00OK\x00"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	if rc != 0 || errs != "" {
		t.Fatalf("rc %d: %s", rc, errs)
	}
	if rc, out, _ := runCmd("-diff", f, f); rc != 0 || out != "no differences\n" {
		t.Fatalf("diff with itself: %d %q", rc, out)
	}
	if rc, out, _ := runCmd("-json", f); rc != 0 || !strings.Contains(out, `"token": "xensr-1"`) {
		t.Fatalf("-json: %d", rc)
	}
}
