package pack

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// streamOnly hides every method but Read: Pack must keep the window's
// pages itself.
type streamOnly struct{ io.Reader }

// packOf packs r and fails t on error.
func packOf(t *testing.T, r io.Reader, opt Options) ([]byte, Stats) {
	t.Helper()
	var out bytes.Buffer
	st, err := Pack(&out, r, opt)
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), st
}

// TestRandomAccessSameOutput: from a regular file or a *bytes.Reader, Pack
// compares a repeated page with the input read back at its offset instead
// of a kept copy; the packed bytes must be those of a stream, windows small
// and large.
func TestRandomAccessSameOutput(t *testing.T) {
	dir := t.TempDir()
	for name, img := range fixtures(t) {
		if bytes.Contains([]byte(name), []byte("failed")) {
			continue // not a whole image
		}
		opt := Options{}
		if bytes.Contains([]byte(name), []byte("checkpointed")) {
			opt.Image.Checkpointed = true
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, img, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, window := range []int{0, 3, 64} {
			opt.Window = window
			want, st := packOf(t, streamOnly{bytes.NewReader(img)}, opt)
			got, _ := packOf(t, bytes.NewReader(img), opt)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			fromFile, _ := packOf(t, f, opt)
			f.Close()
			if !bytes.Equal(got, want) || !bytes.Equal(fromFile, want) {
				t.Fatalf("%s window %d: packed %d bytes from memory, %d from a file, %d from a stream; not the same bytes", name, window, len(got), len(fromFile), len(want))
			}
			if window == 0 {
				t.Logf("%s: %d duplicate pages, output identical", name, st.DupPages)
			}
		}
	}
}

// changedBehind reads as a stream the original image, and at offsets
// (ReadAt) a copy in which the pages were changed: an input rewritten in
// place while Pack reads it. failPages makes reading back a page fail.
type changedBehind struct {
	io.Reader
	at        *bytes.Reader
	failPages bool
}

func (c *changedBehind) ReadAt(p []byte, off int64) (int, error) {
	if c.failPages && len(p) == pageSize {
		return 0, errors.New("read-back failed")
	}
	return c.at.ReadAt(p, off)
}

func (c *changedBehind) Seek(off int64, whence int) (int64, error) { return c.at.Seek(off, whence) }

// TestRandomAccessNeverTrustsReadBack: when the bytes read back differ from
// what the stream gave (changed input) or cannot be read, the repeated
// pages are stored as new pages and the packed file still unpacks to the
// image as it was read.
func TestRandomAccessNeverTrustsReadBack(t *testing.T) {
	// Page A, 1100 distinct pages, A again: the second A comes after the
	// page block holding the first was written, so it is read back.
	page := func(i int) []byte {
		p := bytes.Repeat([]byte{byte(i), byte(i >> 8), 1}, pageSize/3+1)
		return p[:pageSize]
	}
	var img bytes.Buffer
	w := newHVMWriter(&img)
	var entries []uint64
	var data []byte
	flush := func() {
		w.WriteRecord(&libxc.PageData{Entries: entries, Data: data})
		entries, data = nil, nil
	}
	for i := 0; i <= 1101; i++ {
		n := i
		if i == 1101 {
			n = 0 // A again
		}
		entries = append(entries, uint64(i))
		data = append(data, page(n)...)
		if len(entries) == 1024 {
			flush()
		}
	}
	flush()
	w.WriteRecord(&libxc.HVMContext{Data: []byte{1}})
	w.Close()
	orig := img.Bytes()
	changed := bytes.ReplaceAll(orig, page(0), page(7777))
	opt := Options{Image: image.Options{Format: image.FormatLibxc}}
	for _, tc := range []struct {
		name string
		in   *changedBehind
		dups int64
	}{
		{"read back unchanged", &changedBehind{Reader: bytes.NewReader(orig), at: bytes.NewReader(orig)}, 1},
		{"changed behind", &changedBehind{Reader: bytes.NewReader(orig), at: bytes.NewReader(changed)}, 0},
		{"read-back of pages fails", &changedBehind{Reader: bytes.NewReader(orig), at: bytes.NewReader(orig), failPages: true}, 0},
	} {
		packed, st := packOf(t, tc.in, opt)
		var out bytes.Buffer
		if err := Unpack(&out, bytes.NewReader(packed)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(out.Bytes(), orig) || st.DupPages != tc.dups {
			t.Fatalf("%s: %d duplicate pages (want %d), round trip equal: %v", tc.name, st.DupPages, tc.dups, bytes.Equal(out.Bytes(), orig))
		}
	}
}

// TestRandomAccessRecordChanged: the record bytes Pack reads back from a
// random-access input are compared with those the walker read and checked;
// an input changed in between is refused, not packed half old, half new.
func TestRandomAccessRecordChanged(t *testing.T) {
	var img bytes.Buffer
	w := newHVMWriter(&img)
	w.WriteRecord(&libxc.PageData{Entries: []uint64{1}, Data: bytes.Repeat([]byte{3}, pageSize)})
	w.WriteRecord(&libxc.HVMContext{Data: []byte("hvm context")})
	w.Close()
	orig := img.Bytes()
	changed := bytes.Replace(orig, []byte("hvm context"), []byte("HVM CONTEXT"), 1)
	opt := Options{Image: image.Options{Format: image.FormatLibxc}}
	_, err := Pack(io.Discard, &changedBehind{Reader: bytes.NewReader(orig), at: bytes.NewReader(changed)}, opt)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("input changed behind the walker: %v, want ErrCorrupt", err)
	}
	if _, err := Pack(io.Discard, &changedBehind{Reader: bytes.NewReader(orig), at: bytes.NewReader(orig)}, opt); err != nil {
		t.Fatal(err)
	}
}
