package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden compares `xsrdump -v` and `xsrdump -json -records` on the
// repository's fixtures with files in testdata/golden (go test -update
// rewrites them after a deliberate change; read the diff).
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		fixture, golden string
		c               config
	}{
		{"guest3-pvh.xl", "guest3-pvh.v.txt", config{verbose: true, verify: true, format: "auto"}},
		{"guest1-pv.xl", "guest1-pv.v.txt", config{verbose: true, verify: true, format: "auto"}},
		{"guest1-pv.xl", "guest1-pv.json", config{json: true, verify: true, records: true, format: "auto"}},
	} {
		in := fixtureFile(t, tc.fixture)
		var stdout, stderr bytes.Buffer
		if rc := run(tc.c, in, &stdout, &stderr); rc != 0 {
			t.Fatalf("%s: rc %d: %s", tc.golden, rc, stderr.String())
		}
		got := stdout.Bytes()
		if filepath.Ext(tc.golden) == ".json" {
			var v map[string]any
			if err := json.Unmarshal(got, &v); err != nil {
				t.Fatalf("%s: not JSON: %v", tc.golden, err)
			}
			// The file name is a temporary path: not part of the golden file.
			v["file"] = tc.fixture
			got, _ = json.MarshalIndent(v, "", "  ")
			got = append(got, '\n')
		}
		path := filepath.Join("testdata", "golden", tc.golden)
		if *update {
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file; go test -update rewrites it\ngot:\n%s", tc.golden, got)
		}
	}
}
