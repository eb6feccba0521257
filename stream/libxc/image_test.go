package libxc

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// libxcStart finds the libxc image header inside an xl save file or libxl
// stream: the all-ones marker followed by "XENF".
func libxcStart(b []byte) int {
	return bytes.Index(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'X', 'E', 'N', 'F'})
}

// roundTrip decodes the libxc stream at the start of b strictly, re-encodes
// every record with a Writer and returns the re-encoded bytes and the number
// of bytes the Reader consumed.
func roundTrip(t testing.TB, b []byte, checkpointed bool) ([]byte, int64, map[RecordType]int) {
	t.Helper()
	rd := NewReader(bytes.NewReader(b))
	rd.Checkpointed = checkpointed
	img, dom, err := rd.Header()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := NewWriter(&out)
	if err := w.WriteHeader(img, dom); err != nil {
		t.Fatal(err)
	}
	counts := map[RecordType]int{}
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		counts[rec.Type()]++
		if err := w.WriteRecord(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), rd.Offset(), counts
}

// TestRealImages decodes the libxc part of full `xl save` images made by
// Xen 4.17 in the lab (XENSR_IMAGES names their folder) and re-encodes them
// byte for byte.
func TestRealImages(t *testing.T) {
	dir := os.Getenv("XENSR_IMAGES")
	if dir == "" {
		t.Skip("SKIP-NEEDS-IMAGES: set XENSR_IMAGES to a folder of full lab images (scripts/lab.sh keeps them)")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.save"))
	more, _ := filepath.Glob(filepath.Join(dir, "*.stream"))
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatalf("no *.save or *.stream in %s", dir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			at := libxcStart(b)
			if at < 0 {
				t.Skipf("%s has no libxc stream", f)
			}
			rd := NewReaderAt(bytes.NewReader(b[at:]), int64(at))
			if _, _, err := rd.Header(); err != nil {
				t.Fatal(err)
			}
			for {
				_, err := rd.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					// A PV live migration fails in the lab (no
					// shadow paging): its stream stops early.
					if len(b) < 1<<20 && (errors.Is(err, ErrNoEnd) || errors.Is(err, io.ErrUnexpectedEOF)) {
						t.Logf("truncated stream of a failed migration, reported as: %v", err)
						return
					}
					t.Fatal(err)
				}
			}
			out, n, counts := roundTrip(t, b[at:], false)
			if !bytes.Equal(out, b[at:at+int(n)]) {
				t.Fatalf("re-encoded %d bytes differ from the original %d", len(out), n)
			}
			t.Logf("%s: libxc at %d, %d bytes, records %v", filepath.Base(f), at, n, counts)
		})
	}
}
