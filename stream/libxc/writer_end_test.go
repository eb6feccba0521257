package libxc

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/stream"
)

// TestWriterAfterEnd: like archive/tar after Close, the Writer refuses a
// record after END and a second header, writing nothing; before, both were
// written and made an invalid stream.
func TestWriterAfterEnd(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	if err := w.WriteRecord(&End{}); !errors.Is(err, stream.ErrWriteBeforeHeader) {
		t.Fatalf("record before the header: %v", err)
	}
	img, dom := ImageHeader{Marker: ^uint64(0), ID: 0x58454E46, Version: 3}, DomainHeader{Type: DomainX86HVM, PageShift: 12, XenMajor: 4, XenMinor: 17}
	if err := w.WriteHeader(img, dom); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(img, dom); !errors.Is(err, stream.ErrWriteAfterEnd) {
		t.Fatalf("second header: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := b.Len()
	if err := w.WriteRecord(&End{}); !errors.Is(err, stream.ErrWriteAfterEnd) {
		t.Fatalf("record after END: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close after END: %v", err)
	}
	if b.Len() != n {
		t.Fatalf("%d bytes written after END", b.Len()-n)
	}
}
