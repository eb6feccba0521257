package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/liveupdate"
)

func TestInspect(t *testing.T) {
	var data bytes.Buffer
	for d := 0; d < 2; d++ {
		w := libxc.NewWriter(&data)
		w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: 12, XenMajor: 4, XenMinor: 17})
		w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{}}})
		w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{}}})
		w.WriteRecord(&libxc.StaticDataEnd{})
		w.WriteRecord(&libxc.PageData{Entries: []uint64{5}, Data: make([]byte, 4096)})
		w.WriteRecord(&libxc.HVMContext{Data: []byte{1}})
		w.Close()
	}
	ram := make([]byte, 64*4096)
	if _, err := liveupdate.Layout(ram, liveupdate.Region{Start: 0x2000, Len: 4096}, 0x5000, []uint64{50, 9, 33}, data.Bytes()); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "ram")
	os.WriteFile(img, ram, 0o644)
	var out bytes.Buffer
	if err := run(&out, img, "0x2000"); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "3 pages") || strings.Count(s, "libxc v3, x86 HVM") != 2 || strings.Count(s, "PAGE_DATA") != 2 || strings.Count(s, "END") != 4 {
		t.Fatalf("output:\n%s", s)
	}
	if err := run(&out, img, "0x3000"); err == nil {
		t.Fatal("wrong bootmem address accepted")
	}
}
