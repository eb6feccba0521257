//go:build linux

package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/xensr/xensr/stream/libxc"
	"golang.org/x/sys/unix"
)

// pipeWalk walks in with SkipPages from a real pipe, written in chunks of
// chunk bytes (0: one write), and returns what it saw and the bytes it
// spliced. The pipe is os.Pipe's (non-blocking, waited for in Go's poller)
// or, blocking, a plain pipe(2) as a shell gives a command's stdin.
func pipeWalk(t *testing.T, in []byte, opt Options, chunk int, blocking bool) (walkResult, int64) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if blocking {
		var fds [2]int
		if err = unix.Pipe(fds[:]); err == nil {
			pr, pw = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pw.Close()
		for b := in; len(b) > 0; {
			n := len(b)
			if chunk > 0 {
				n = min(n, chunk)
			}
			if _, err := pw.Write(b[:n]); err != nil {
				return // the walk stopped at an error and closed its end
			}
			b = b[n:]
		}
	}()
	opt.SkipPages = true
	w := NewWalker(pr, opt)
	if w.skip.sp == nil {
		t.Fatal("a pipe is not spliced")
	}
	res := walkOf(w, opt)
	pr.Close()
	<-done
	return res, w.SplicedBytes()
}

// TestSplicePipe: from a pipe, SkipPages splices the page contents to
// /dev/null. The walk sees the items (offsets and sizes), summary (bytes,
// records, pages but for zero pages) and errors of a plain walk, valid and
// cut at every boundary of a page payload, with the pipe written at once
// and in odd chunks (short splices, and payload bytes left in the buffer).
func TestSplicePipe(t *testing.T) {
	for _, f := range validFixtures {
		in := fixture(t, f.name)
		opt := Options{Checkpointed: f.checkpoints > 0}
		str := walkWith(streamOnly{bytes.NewReader(in)}, opt)
		if str.err != nil {
			t.Fatal(str.err)
		}
		for _, chunk := range []int{0, 4093} {
			for _, blocking := range []bool{false, true} {
				what := fmt.Sprintf("%s chunk %d blocking %v", f.name, chunk, blocking)
				p, spliced := pipeWalk(t, in, opt, chunk, blocking)
				sameVerdict(t, what, str, p, false)
				checkSpliced(t, what, p, spliced, str.sum.Pages.DataPages)
			}
		}
	}

	for _, name := range []string{"guest3-pvh.xl", "guest1-pv.xl"} {
		in := fixture(t, name)
		recs := pageRecords(t, in)
		// A: a PAGE_DATA record with data followed by another (B).
		a, b := adjacentPageRecords(t, name, recs, 2)
		count := int64(binary.LittleEndian.Uint32(in[a.Offset+8:]))
		from := a.Offset + 16 + 8*count // A's page contents
		to := a.Offset + a.Size         // A's end: B
		if b.Offset != to || to-from != a.Pages.DataPages*libxc.PageSize {
			t.Fatalf("%s: A's payload [%d, %d), B at %d", name, from, to, b.Offset)
		}
		cuts := []int64{from - 8, from - 1, from, from + 1, from + 7, from + 8,
			from + libxc.PageSize - 1, from + libxc.PageSize, from + libxc.PageSize + 1,
			(from + to) / 2, to - libxc.PageSize, to - 8, to - 1, to, to + 1, to + 8, to + 16, to + 24,
			int64(len(in)) - 1}
		for _, cut := range cuts {
			for i, chunk := range []int{0, 4093} {
				blocking := (i+int(cut))%2 == 0 // both kinds, over the cuts
				what := fmt.Sprintf("%s cut at %d (A's payload [%d, %d)) chunk %d blocking %v", name, cut, from, to, chunk, blocking)
				str := walkWith(streamOnly{bytes.NewReader(in[:cut])}, Options{})
				if str.err == nil {
					t.Fatalf("%s: a plain walk passed", what)
				}
				p, spliced := pipeWalk(t, in[:cut], Options{}, chunk, blocking)
				sameVerdict(t, what, str, p, false)
				if spliced > p.skipped {
					t.Errorf("%s: %d bytes spliced of %d skipped", what, spliced, p.skipped)
				}
				if cut > from+64<<10 && spliced == 0 {
					t.Errorf("%s: nothing spliced", what)
				}
			}
		}
	}
}

// checkSpliced fails t unless a valid pipe walk passed over exactly its
// data pages, most of them spliced: at most the 64 KiB buffer's worth of
// each record came through the buffer.
func checkSpliced(t *testing.T, what string, p walkResult, spliced, dataPages int64) {
	t.Helper()
	if p.sum.Pages.Unread != dataPages || p.sum.Pages.ZeroPages != 0 || p.skipped != dataPages*libxc.PageSize {
		t.Errorf("%s: pages %+v, %d bytes skipped; want %d data pages unread", what, p.sum.Pages, p.skipped, dataPages)
	}
	if spliced <= 0 || spliced > p.skipped || p.skipped-spliced > int64(p.unkept)*64<<10 {
		t.Errorf("%s: %d bytes spliced of %d skipped in %d records", what, spliced, p.skipped, p.unkept)
	}
	t.Logf("%s: %d of %d skipped bytes spliced", what, spliced, p.skipped)
}
