package pack

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
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
		opt, whole := fixtureOptions(name)
		if !whole {
			continue
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

// changedBehind is a random-access input rewritten in place while Pack
// reads it: ReadAt reads orig until some read has reached offset from, and
// changed after that (a read that reaches it still reads orig). Read is
// never called: Pack reads a random-access input at offsets (the walker
// too, skipping page contents). With failPage, reading the page at offset
// failAt alone (as Pack reads a page back) fails.
type changedBehind struct {
	io.Reader
	orig, changed []byte
	from          int64
	reached       bool
	failPage      bool
	failAt        int64
}

func (c *changedBehind) ReadAt(p []byte, off int64) (int, error) {
	if c.failPage && off == c.failAt && len(p) == pageSize {
		return 0, errors.New("read-back failed")
	}
	src := c.orig
	if c.reached {
		src = c.changed
	}
	if off+int64(len(p)) > c.from {
		c.reached = true
	}
	return bytes.NewReader(src).ReadAt(p, off)
}

func (c *changedBehind) Seek(off int64, whence int) (int64, error) {
	return bytes.NewReader(c.orig).Seek(off, whence)
}

// TestRandomAccessNeverTrustsReadBack: when a page read back differs from
// what was read and packed before (an input changed behind Pack) or cannot
// be read, the repeated page is stored as a new page and the packed file
// still unpacks to the image as it was read.
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
	// The first A rewritten once the walk has passed the first PAGE_DATA
	// record: it then reads back as page 7777.
	changed := bytes.Replace(orig, page(0), page(7777), 1)
	firstA := int64(bytes.Index(orig, page(0)))
	second := int64(bytes.LastIndex(orig, page(1023)) + pageSize + 1)
	opt := Options{Image: image.Options{Format: image.FormatLibxc}}
	for _, tc := range []struct {
		name string
		in   *changedBehind
		dups int64
	}{
		{"read back unchanged", &changedBehind{orig: orig, changed: orig, from: second}, 1},
		{"changed behind", &changedBehind{orig: orig, changed: changed, from: second}, 0},
		{"read-back of the page fails", &changedBehind{orig: orig, changed: orig, from: second, failPage: true, failAt: firstA}, 0},
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
// an input changed in between (here: once the walker has read to its end)
// is refused, not packed half old, half new.
func TestRandomAccessRecordChanged(t *testing.T) {
	var img bytes.Buffer
	w := newHVMWriter(&img)
	w.WriteRecord(&libxc.PageData{Entries: []uint64{1}, Data: bytes.Repeat([]byte{3}, pageSize)})
	w.WriteRecord(&libxc.HVMContext{Data: []byte("hvm context")})
	w.Close()
	orig := img.Bytes()
	changed := bytes.Replace(orig, []byte("hvm context"), []byte("HVM CONTEXT"), 1)
	opt := Options{Image: image.Options{Format: image.FormatLibxc}}
	end := int64(len(orig))
	_, err := Pack(io.Discard, &changedBehind{orig: orig, changed: changed, from: end}, opt)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("input changed behind the walker: %v, want ErrCorrupt", err)
	}
	if _, err := Pack(io.Discard, &changedBehind{orig: orig, changed: orig, from: end}, opt); err != nil {
		t.Fatal(err)
	}
}

// TestProgress: Options.Progress is told every input byte packed, once,
// whether the input is read at offsets (the walker skipping page contents,
// which Pack reads itself) or as a stream.
func TestProgress(t *testing.T) {
	for name, img := range fixtures(t) {
		opt, whole := fixtureOptions(name)
		if !whole {
			continue
		}
		for how, in := range map[string]io.Reader{"stream": streamOnly{bytes.NewReader(img)}, "at offsets": bytes.NewReader(img)} {
			var sum int64
			calls := 0
			opt.Progress = func(n int64) { sum += n; calls++ }
			_, st := packOf(t, in, opt)
			if sum != int64(len(img)) || st.InBytes != sum || calls < 2 {
				t.Errorf("%s, %s: progress told %d bytes in %d calls, want %d (InBytes %d)", name, how, sum, calls, len(img), st.InBytes)
			}
		}
	}
}

// failingAt is a random-access input whose reads at offsets from bad on
// fail, except those the walker makes (up to 4096 bytes: record headers,
// PFN lists in pieces): Pack's own read of a record's page contents fails.
type failingAt struct {
	*bytes.Reader
	bad int64
}

var errDisk = errors.New("disk error")

func (f failingAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.bad && len(p) > 4096 {
		return 0, errDisk
	}
	return f.Reader.ReadAt(p, off)
}

// TestPageContentsReadError: when the page contents of a record cannot be
// read, Pack fails with that error (it does not pack what it could not
// read).
func TestPageContentsReadError(t *testing.T) {
	var img bytes.Buffer
	w := newHVMWriter(&img)
	w.WriteRecord(&libxc.PageData{Entries: []uint64{1, 2}, Data: bytes.Repeat([]byte{3}, 2*pageSize)})
	w.WriteRecord(&libxc.HVMContext{Data: []byte{1}})
	w.Close()
	orig := img.Bytes()
	opt := Options{Image: image.Options{Format: image.FormatLibxc}}
	_, err := Pack(io.Discard, failingAt{bytes.NewReader(orig), int64(bytes.Index(orig, bytes.Repeat([]byte{3}, 2*pageSize)) + pageSize)}, opt)
	if !errors.Is(err, errDisk) {
		t.Fatalf("page contents unreadable: %v, want %v", err, errDisk)
	}
	if _, err := Pack(io.Discard, failingAt{bytes.NewReader(orig), int64(len(orig))}, opt); err != nil {
		t.Fatal(err)
	}
}

// TestRandomAccessAtOffset: an image that starts part way into a file (the
// file's offset when Pack is called) packs as the same image read as a
// stream: every read at an offset counts from there.
func TestRandomAccessAtOffset(t *testing.T) {
	dir := t.TempDir()
	for name, img := range fixtures(t) {
		opt, whole := fixtureOptions(name)
		if !strings.Contains(name, "guest1-pv") || !whole {
			continue
		}
		want, _ := packOf(t, streamOnly{bytes.NewReader(img)}, opt)
		prefix := bytes.Repeat([]byte{0xa5}, 3*pageSize+123)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, append(prefix, img...), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(int64(len(prefix)), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, st := packOf(t, f, opt)
		f.Close()
		if !bytes.Equal(got, want) || st.InBytes != int64(len(img)) {
			t.Errorf("%s after a %d-byte prefix: packed output differs from the stream's (InBytes %d, want %d)", name, len(prefix), st.InBytes, len(img))
		}
	}
}
