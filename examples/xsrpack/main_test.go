package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xensr/xensr/internal/fixture"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

func TestPackUnpackCatStat(t *testing.T) {
	img := bytes.Clone(fixture.Load(t, "guest1-pv.xl"))
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

// TestFailedPackLeavesNoFile: an image pack refuses (here a libxc record
// declaring one byte more than the record cap) makes xsrpack fail and
// leaves no output file behind that could pass for a packed image; an
// unpack that fails removes its output too.
func TestFailedPackLeavesNoFile(t *testing.T) {
	var b bytes.Buffer
	w := libxc.NewWriter(&b)
	w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: 12})
	b.Write(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(libxc.TypeHVMContext)), stream.DefaultMaxRecordSize+1))
	dir := t.TempDir()
	packed := filepath.Join(dir, "img.xsrp")
	err := run([]string{"pack", "-", packed}, bytes.NewReader(b.Bytes()), io.Discard)
	if !errors.Is(err, stream.ErrTooLarge) {
		t.Fatalf("pack of a record past the cap: %v, want ErrTooLarge", err)
	}
	if _, err := os.Stat(packed); !os.IsNotExist(err) {
		t.Fatalf("failed pack left %s (%v)", packed, err)
	}
	bad := filepath.Join(dir, "bad.xsrp")
	os.WriteFile(bad, []byte("XSRPACK2\x01\x00\x00\x00S"), 0o644)
	out := filepath.Join(dir, "out.img")
	if err := run([]string{"unpack", bad, out}, nil, io.Discard); !errors.Is(err, stream.ErrTruncated) {
		t.Fatalf("unpack of a cut file: %v, want ErrTruncated", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("failed unpack left %s (%v)", out, err)
	}
}

// run is the whole command for tests: quiet, errors returned.
func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("missing command")
	}
	o := opts{quiet: true}
	rest := args[1:]
	for len(rest) > 0 && len(rest[0]) > 1 && rest[0][0] == '-' {
		switch rest[0] {
		case "-best":
			o.best = true
		case "-c":
			o.ckpt = true
		case "-json":
			o.json = true
		case "-round":
			if len(rest) < 2 {
				return errors.New("-round needs a value")
			}
			n, err := strconv.Atoi(rest[1])
			if err != nil {
				return err
			}
			o.round, rest = n, rest[1:]
		default:
			return fmt.Errorf("unknown flag %s", rest[0])
		}
		rest = rest[1:]
	}
	return do(args[0], o, rest, stdin, stdout, io.Discard)
}
