package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestPackUnpackCatStat(t *testing.T) {
	c, err := os.ReadFile("../../stream/testdata/guest1-pv.xl.zst")
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	img, _ := dec.DecodeAll(c, nil)
	dir := t.TempDir()
	packed := filepath.Join(dir, "img.xsrp")
	var out bytes.Buffer
	// pack from stdin to a file, unpack from the file to stdout: pipes work.
	if err := run([]string{"pack", "-", packed}, bytes.NewReader(img), &out); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"unpack", packed}, nil, &out); err != nil || !bytes.Equal(out.Bytes(), img) {
		t.Fatalf("unpack: %v, equal=%v", err, bytes.Equal(out.Bytes(), img))
	}
	out.Reset()
	if err := run([]string{"stat", packed}, nil, &out); err != nil || !strings.Contains(out.String(), "page occurrences") {
		t.Fatalf("stat: %q %v", out.String(), err)
	}
	out.Reset()
	if err := run([]string{"cat-page", packed, "0"}, nil, &out); err != nil || out.Len() != 4096 {
		t.Fatalf("cat-page: %d bytes, %v", out.Len(), err)
	}
	if err := run([]string{"cat-page", packed, "0x7fffffffff"}, nil, &out); err == nil {
		t.Fatal("cat-page of a missing pfn succeeded")
	}
}
