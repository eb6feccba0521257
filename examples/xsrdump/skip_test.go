package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// pipeSplices says whether -verify splices a pipe's page contents to
// /dev/null (image.Options.SkipPages on Linux).
const pipeSplices = runtime.GOOS == "linux"

// runPipe runs xsrdump on name's bytes through a real pipe on stdin.
func runPipe(t *testing.T, c config, b []byte) (rc int, stdout, stderr string) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		pw.Write(b) // a refusal stops reading: the write then fails, as for a writer to a closed pipe
		pw.Close()
	}()
	stdin = pr
	defer func() { stdin = os.Stdin; pr.Close() }()
	var o, e bytes.Buffer
	rc = run(c, "-", &o, &e)
	return rc, o.String(), e.String()
}

// TestVerifyFileSkipsLikePipe: `xsrdump -verify FILE` seeks over page
// contents; on a pipe it splices them to /dev/null (Linux: not counting
// zero pages either) or reads them (elsewhere: counting zero pages). A
// record header broken right after a passed-over page payload is refused
// the same way in both, with the same typed error in -json; the valid
// image gets the same verdict and summary (but for the zero pages, which
// only a pipe read in the process counts).
func TestVerifyFileSkipsLikePipe(t *testing.T) {
	path := fixtureFile(t, "guest3-pvh.xl")
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The first PAGE_DATA record with page contents, and the record after it.
	var after int64 = -1
	image.Walk(bytes.NewReader(in), image.Options{}, func(it *image.Item) error {
		if after < 0 && it.Pages != nil && it.Pages.DataPages > 0 {
			after = it.Offset + it.Size
		}
		return nil
	})
	if after < 0 || after+8 > int64(len(in)) {
		t.Fatal("no PAGE_DATA record with data before another record")
	}
	bad := append([]byte(nil), in...)
	binary.LittleEndian.PutUint32(bad[after:], 0x40) // an unknown, mandatory record type
	badPath := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(badPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		path   string
		b      []byte
		rc     int
		stderr string
	}{
		{"valid", path, in, 0, ""},
		{"header after a passed-over payload", badPath, bad, 1, "unknown record type"},
	} {
		for _, js := range []bool{false, true} {
			c := config{verify: true, json: js, format: "auto"}
			var fo, fe bytes.Buffer
			frc := run(c, tc.path, &fo, &fe)
			prc, po, pe := runPipe(t, c, tc.b)
			if frc != tc.rc || prc != tc.rc || fe.String() != pe || !strings.Contains(fe.String(), tc.stderr) {
				t.Fatalf("%s json=%v: file rc %d %q, pipe rc %d %q; want rc %d naming %q", tc.name, js, frc, fe.String(), prc, pe, tc.rc, tc.stderr)
			}
			if !js {
				if tc.rc == 0 && (!strings.Contains(fo.String(), "not read") || strings.Contains(po, "not read") != pipeSplices) {
					t.Errorf("%s: the file walk should pass over page contents and the pipe walk (spliced: %v) not read them or read them:\nfile: %s\npipe: %s", tc.name, pipeSplices, fo.String(), po)
				}
				if pipeSplices && fo.String() != po {
					t.Errorf("%s: spliced pipe and file differ:\nfile: %s\npipe: %s", tc.name, fo.String(), po)
				}
				continue
			}
			var fd, pd map[string]any
			if err := json.Unmarshal(fo.Bytes(), &fd); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(po), &pd); err != nil {
				t.Fatal(err)
			}
			delete(fd, "file")
			delete(pd, "file")
			if s, ok := fd["summary"].(map[string]any); ok && !pipeSplices {
				// The pipe counts zero pages; the file walk did not read them.
				fp, pp := s["pages"].(map[string]any), pd["summary"].(map[string]any)["pages"].(map[string]any)
				if fp["unread_pages"] != fp["data_pages"] || pp["unread_pages"] != nil || pp["zero_pages"].(float64) == 0 {
					t.Errorf("%s: pages: file %v, pipe %v", tc.name, fp, pp)
				}
				delete(fp, "unread_pages")
				delete(fp, "zero_pages")
				delete(pp, "zero_pages")
			}
			fj, _ := json.Marshal(fd)
			pj, _ := json.Marshal(pd)
			if !bytes.Equal(fj, pj) {
				t.Errorf("%s: -json differs:\nfile %s\npipe %s", tc.name, fj, pj)
			}
			if tc.rc != 0 {
				e := fd["error"].(map[string]any)
				if e["layer"] != libxc.Layer || e["offset"].(float64) != float64(after) || e["type"].(float64) != 0x40 {
					t.Errorf("%s: error %v, want libxc at offset %d", tc.name, e, after)
				}
			}
		}
	}
}
