package ring

import (
	"encoding/binary"
	"testing"

	"pgregory.net/rapid"
)

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		page, entry int
		want        uint32
	}{
		{4096, 112, 32}, // blkif: (4096-64)/112 = 36, rounded down
		{4096, 16, 128}, // (4096-64)/16 = 252
		{8192, 112, 64},
		{4096, 4032, 1},
		{4096, 4033, 0},
		{63, 1, 0},
	} {
		if got := Size(tc.page, tc.entry); got != tc.want {
			t.Errorf("Size(%d, %d) = %d, want %d", tc.page, tc.entry, got, tc.want)
		}
	}
}

// TestExchange runs a frontend and a backend over one page through random
// interleavings. Each side sleeps only after its final check says there is
// no work, and wakes only when the other side's push said to notify: every
// request must be answered, in order, with no wakeup lost.
func TestExchange(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		const entry = 16
		page := make([]byte, 4096)
		f, err := NewFront(page, entry)
		if err != nil {
			rt.Fatal(err)
		}
		b, err := NewBack(page, entry)
		if err != nil {
			rt.Fatal(err)
		}
		total := rapid.IntRange(0, 600).Draw(rt, "requests")
		sent, answered, got := 0, 0, 0
		backAwake, frontAwake := true, true // a side that is not awake waits for a notification
		buf := make([]byte, 0, entry)
		for steps := 0; got < total; steps++ {
			if steps > 100000 {
				rt.Fatalf("stuck: sent %d answered %d got %d, back awake %v front awake %v", sent, answered, got, backAwake, frontAwake)
			}
			switch rapid.IntRange(0, 2).Draw(rt, "who") {
			case 0: // frontend produces a batch
				n := rapid.IntRange(0, int(f.Free())).Draw(rt, "batch")
				n = min(n, total-sent)
				for i := 0; i < n; i++ {
					binary.LittleEndian.PutUint64(f.Request(), uint64(sent))
					f.CommitRequest()
					sent++
				}
				if f.PushRequests() {
					backAwake = true
				}
			case 1: // backend, when awake, answers up to a batch, then checks
				if !backAwake {
					continue
				}
				n := rapid.IntRange(1, 40).Draw(rt, "work")
				for ; n > 0 && b.Unconsumed() > 0; n-- {
					buf = b.NextRequest(buf)
					if v := binary.LittleEndian.Uint64(buf); v != uint64(answered) {
						rt.Fatalf("backend read request %d, want %d", v, answered)
					}
					binary.LittleEndian.PutUint64(b.Response(), uint64(answered)+1e6)
					b.CommitResponse()
					answered++
				}
				if b.PushResponses() {
					frontAwake = true
				}
				if n > 0 && !b.FinalCheckForRequests() {
					backAwake = false
				}
			case 2: // frontend consumes responses when awake
				if !frontAwake {
					continue
				}
				for f.Unconsumed() > 0 {
					buf = f.NextResponse(buf)
					if v := binary.LittleEndian.Uint64(buf); v != uint64(got)+1e6 {
						rt.Fatalf("response %d, want %d", v, got+1e6)
					}
					got++
				}
				if !f.FinalCheckForResponses() && sent == got {
					frontAwake = false
				}
			}
			if sent > answered && !backAwake && b.Unconsumed() > 0 {
				rt.Fatalf("lost wakeup: %d requests wait, backend asleep", b.Unconsumed())
			}
		}
	})
}

// TestWildReqProd: a frontend that writes a req_prod far ahead cannot make
// the backend consume more than one ring of unanswered requests.
func TestWildReqProd(t *testing.T) {
	page := make([]byte, 4096)
	f, _ := NewFront(page, 112)
	b, _ := NewBack(page, 112)
	for _, v := range []uint32{1 << 31, 0xffffffff, 33, 1000} {
		f.SetReqProd(v)
		if n := b.Unconsumed(); n > b.Size() {
			t.Fatalf("req_prod %d: %d requests to consume on a ring of %d", v, n, b.Size())
		}
	}
	f.SetReqProd(0xffffffff)
	n := 0
	for b.Unconsumed() > 0 {
		b.NextRequest(nil)
		n++
	}
	if n != int(b.Size()) {
		t.Fatalf("consumed %d unanswered requests, want the ring size %d", n, b.Size())
	}
}

func TestTooSmall(t *testing.T) {
	if _, err := NewBack(make([]byte, 100), 112); err == nil {
		t.Fatal("a 100-byte ring accepted")
	}
}
