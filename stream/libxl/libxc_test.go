package libxl

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/xensr/xensr/internal/fixture"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/xl"
)

func realFixture(t *testing.T, name string) []byte {
	return bytes.Clone(fixture.Load(t, name))
}

// readWithLibxc reads a libxl stream through Libxc and returns the libxl
// record types, the number of libxc records and how many rounds ended at a
// CHECKPOINT, re-encoding everything through the two Writers into out.
func readWithLibxc(t *testing.T, in []byte, base int64, opt Options, out *bytes.Buffer) (types []RecordType, xcRecords, checkpoints int) {
	t.Helper()
	r := NewReaderOptions(bytes.NewReader(in), base, opt)
	h, err := r.Header()
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(out, base)
	w.WriteHeader(h)
	var xw *libxc.Writer
	for {
		if xc := r.Libxc(); xc != nil {
			if xc.Offset() != r.Offset() {
				t.Fatalf("libxc reader at %d, stream at %d", xc.Offset(), r.Offset())
			}
			if xw == nil {
				img, dom, err := xc.Header()
				if err != nil {
					t.Fatal(err)
				}
				xw = libxc.NewWriter(w.Libxc())
				xw.WriteHeader(img, dom)
			}
			for {
				rec, err := xc.Next()
				if err != nil {
					t.Fatal(err)
				}
				xcRecords++
				switch rec.(type) {
				case *libxc.End, *libxc.Checkpoint:
				default:
					if r.Libxc() != xc {
						t.Fatal("Libxc returned another reader within one segment")
					}
				}
				if err := xw.WriteRecord(rec); err != nil {
					t.Fatal(err)
				}
				if _, ok := rec.(*libxc.Checkpoint); ok {
					checkpoints++
					break
				}
				if _, ok := rec.(*libxc.End); ok {
					break
				}
			}
			if r.Libxc() != nil || r.InLibxc() {
				t.Fatal("libxc segment ended but the libxl Reader did not take the stream back")
			}
		}
		rec, err := r.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, rec.Type)
		w.WriteRecord(rec.Type, rec.Body)
	}
}

func TestLibxcHandOffRealImage(t *testing.T) {
	in := realFixture(t, "guest3-pvh.xl")
	h, err := xl.ReadHeader(bytes.NewReader(in), xl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.Write(in[:h.Size()])
	types, n, ck := readWithLibxc(t, in[h.Size():], int64(h.Size()), Options{}, &out)
	if len(types) != 2 || types[0] != TypeLibxcContext || types[1] != TypeEnd || n < 5 || ck != 0 {
		t.Errorf("libxl records %v, %d libxc records, %d checkpoints", types, n, ck)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Errorf("re-encoding differs at byte %d", firstDiff(out.Bytes(), in))
	}
}

func TestLibxcHandOffCheckpointed(t *testing.T) {
	in := realFixture(t, "synthetic-pvh-checkpointed.libxl")
	var out bytes.Buffer
	types, _, ck := readWithLibxc(t, in, 0, Options{Checkpointed: true}, &out)
	want := []RecordType{TypeLibxcContext, TypeCheckpointEnd, TypeCheckpointEnd, TypeEnd}
	if len(types) != len(want) || ck != 2 {
		t.Fatalf("libxl records %v, %d checkpoints; want %v and 2", types, ck, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("libxl records %v, want %v", types, want)
		}
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Errorf("re-encoding differs at byte %d", firstDiff(out.Bytes(), in))
	}
	// Next refuses to go on while the handed-out libxc segment is unread.
	r := NewReader(bytes.NewReader(in))
	r.Next()
	r.Libxc()
	if _, err := r.Next(); !errors.Is(err, ErrLibxcPending) {
		t.Errorf("Next with unread libxc data: %v", err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
