// Package cheader compiles and runs small C programs against Xen's public
// headers (Debian's libxen-dev, /usr/include/xen), so tests can compare the
// Go side's structure layouts and constants with the C originals.
package cheader

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Prelude is included before a program's own lines: stdio, offsetof, and
// the Xen headers the SDK mirrors (tools-only parts enabled).
const Prelude = `#define __XEN_TOOLS__ 1
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <xen/xen.h>
#include <xen/version.h>
#include <xen/domctl.h>
#include <xen/sysctl.h>
#include <xen/memory.h>
#include <xen/grant_table.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/sched.h>
#include <xen/sys/privcmd.h>
#include <xen/sys/gntdev.h>
#include <xen/sys/gntalloc.h>
`

// Run compiles Prelude+body (the body of main) and returns what it printed
// as name -> value, one "name value" pair per line. Without gcc or the
// headers the test is skipped with a message saying how to get them.
func Run(t testing.TB, body string) map[string]uint64 {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("SKIP-NEEDS-GCC: gcc missing (apt-get install gcc libxen-dev; scripts/test.sh does)")
	}
	if _, err := os.Stat("/usr/include/xen/domctl.h"); err != nil {
		t.Skip("SKIP-NEEDS-HEADERS: /usr/include/xen missing (apt-get install libxen-dev; scripts/test.sh does)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "layout.c")
	prog := Prelude + "int main(void) {\n" + body + "\nreturn 0;\n}\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "layout")
	if out, err := exec.Command("gcc", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s\n%s", err, out, prog)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	vals := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("bad line %q", line)
		}
		v, err := strconv.ParseUint(f[1], 0, 64)
		if err != nil {
			t.Fatalf("bad value in %q", line)
		}
		vals[f[0]] = v
	}
	return vals
}

// Print returns a C statement printing name and the unsigned value of expr.
func Print(name, expr string) string {
	return `printf("%s %llu\n", "` + name + `", (unsigned long long)(` + expr + `));` + "\n"
}

// RunWith is Run with more top-level C after Prelude (includes, usually):
// main's body returns at once, includes follows it, and body runs in a
// constructor, which runs before main.
func RunWith(t testing.TB, includes, body string) map[string]uint64 {
	t.Helper()
	if includes == "" {
		return Run(t, body)
	}
	return Run(t, "return 0; }\n"+includes+"\n__attribute__((constructor)) static int xensr_layout(void) {\n"+body)
}

// Compare checks that each C expression (a constant, sizeof or offsetof)
// evaluates to the Go side's value, reporting every mismatch.
func Compare(t testing.TB, want map[string]uint64) {
	t.Helper()
	CompareWith(t, "", want)
}

// CompareWith is Compare with more top-level C, as RunWith.
func CompareWith(t testing.TB, includes string, want map[string]uint64) {
	t.Helper()
	body := ""
	names := map[string]string{}
	i := 0
	for expr := range want {
		name := "v" + strconv.Itoa(i)
		names[name] = expr
		body += Print(name, expr)
		i++
	}
	got := RunWith(t, includes, body)
	for name, expr := range names {
		if v, ok := got[name]; !ok || v != want[expr] {
			t.Errorf("%s: Go has %#x, C has %#x (printed %v)", expr, want[expr], v, ok)
		}
	}
}

// Fields adds to facts, for every field of v's struct type with a `c` tag,
// the C expression offsetof(cType, prefix+tag) and the field's Go offset:
// base plus the encoding/binary sizes of the fields before it
// (encoding/binary lays fields out without padding, so every C padding byte
// must be a named Go field).
func Fields(facts map[string]uint64, cType, prefix string, base uint64, v any) {
	t := reflect.TypeOf(v)
	off := base
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("c"); tag != "" {
			facts["offsetof("+cType+", "+prefix+tag+")"] = off
		}
		off += uint64(binary.Size(reflect.New(f.Type).Elem().Interface()))
	}
}
