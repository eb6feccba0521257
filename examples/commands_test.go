package examples

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// commands lists every command under examples/ with the arguments that
// make it fail for a missing file (nil: it reads no file). A command added
// to examples/ without a row here fails TestEveryCommandListed.
var commands = map[string][]string{
	"lu-inspect": {"-bootmem", "0x1000", "/nonexistent/image"},
	"xeninfo":    nil,
	"xs":         nil,
	"xsrblkback": {"1", "/nonexistent/disk.img"},
	"xsrdump":    {"/nonexistent/image"},
	"xsrpack":    {"pack", "/nonexistent/image"},
	"xsrrestore": {"/nonexistent/image"},
	"xsrsave":    nil,
	"xsstate":    {"/nonexistent/state"},
}

func TestEveryCommandListed(t *testing.T) {
	dirs, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.Name(), "main.go")); err != nil {
			continue
		}
		if _, ok := commands[d.Name()]; !ok {
			t.Errorf("examples/%s is a command without a row in commands", d.Name())
		}
	}
}

// TestConvention builds every command and runs it with -h, with a flag it
// does not know and with a missing file, checking the exit codes and, under
// strace, that none of these opened a Xen device (/dev/xen/...,
// /proc/xen/..., xenstored's socket).
func TestConvention(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every command")
	}
	bin := t.TempDir()
	strace, _ := exec.LookPath("strace")
	if strace == "" {
		t.Log("SKIP-PART: strace is not installed: exit codes are checked, device opens are not")
	}
	for name, missing := range commands {
		if _, err := os.Stat(name); err != nil {
			t.Errorf("%s: listed but not in examples/", name)
			continue
		}
		exe := filepath.Join(bin, name)
		if out, err := exec.Command("go", "build", "-o", exe, "./"+name).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
		cases := []struct {
			what string
			args []string
			code int
		}{
			{"-h", []string{"-h"}, 0},
			{"--help", []string{"--help"}, 0},
			{"bad flag", []string{"-no-such-flag"}, 2},
		}
		if missing != nil {
			cases = append(cases, struct {
				what string
				args []string
				code int
			}{"missing file", missing, 1})
		}
		for _, tc := range cases {
			args, trace := tc.args, ""
			cmdName := exe
			if strace != "" {
				trace = filepath.Join(bin, name+".trace")
				args = append([]string{"-f", "-qq", "-e", "trace=open,openat,connect", "-o", trace, exe}, tc.args...)
				cmdName = strace
			}
			cmd := exec.Command(cmdName, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Stdin = strings.NewReader("")
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("%s %s: %v", name, tc.what, err)
			}
			if code != tc.code {
				t.Errorf("%s %s: exit %d, want %d\nstdout: %s\nstderr: %s", name, tc.what, code, tc.code, stdout.String(), stderr.String())
			}
			switch {
			case tc.code == 0 && !strings.Contains(stderr.String()+stdout.String(), "usage:"):
				t.Errorf("%s %s: no usage line\nstderr: %s", name, tc.what, stderr.String())
			case tc.code != 0 && stderr.Len() == 0:
				t.Errorf("%s %s: exit %d with nothing on stderr", name, tc.what, code)
			case tc.code != 0 && !strings.HasPrefix(stderr.String(), name):
				t.Errorf("%s %s: stderr does not start with the command's name: %q", name, tc.what, stderr.String())
			}
			if trace != "" {
				b, err := os.ReadFile(trace)
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "/dev/xen") || strings.Contains(l, "/proc/xen") || strings.Contains(l, "xenstored/socket") {
						t.Errorf("%s %s opened a Xen device: %s", name, tc.what, l)
					}
				}
			}
		}
	}
}
