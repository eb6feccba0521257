package blkback

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/xenbus"
)

// TestReadWrite writes random multi-page blocks through the ring and reads
// them back, against a model of the disk, then checks the file itself.
func TestReadWrite(t *testing.T) {
	t.Run("map", func(t *testing.T) { readWrite(t, newRig(t)) })
	t.Run("copy", func(t *testing.T) { readWrite(t, newRig(t, true)) })
}

func readWrite(t *testing.T, rg *testRig) {
	model := make([]byte, diskSectors*blkif.SectorSize)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		pages := 1 + rnd.IntN(blkif.MaxSegments)
		sector := uint64(rnd.IntN(diskSectors/8-pages)) * 8
		buf := make([]byte, pages*blkif.PageSize)
		off := int(sector) * blkif.SectorSize
		if rnd.IntN(2) == 0 {
			for j := range buf {
				buf[j] = byte(rnd.Uint32())
			}
			if st := rg.f.io(blkif.OpWrite, sector, buf); st != blkif.StatusOkay {
				t.Fatalf("write %d pages at %d: status %d (%v)", pages, sector, st, rg.b.Stats().LastError)
			}
			copy(model[off:], buf)
		} else {
			if st := rg.f.io(blkif.OpRead, sector, buf); st != blkif.StatusOkay {
				t.Fatalf("read: status %d", st)
			}
			if !bytes.Equal(buf, model[off:off+len(buf)]) {
				t.Fatalf("read %d pages at sector %d differs from what was written", pages, sector)
			}
		}
	}
	// A flush without data as Linux blkfront sends it: sector_number is
	// the flush request's position, (sector_t)-1 (blk_rq_init's).
	rg.f.push(blkif.Request{Operation: blkif.OpFlushDiskcache, ID: 99, Sector: ^uint64(0)})
	if rsp := rg.f.responses(1, 5*time.Second)[0]; rsp.Status != blkif.StatusOkay || rsp.ID != 99 {
		t.Fatalf("flush: %+v (%v)", rsp, rg.b.Stats().LastError)
	}
	file := make([]byte, len(model))
	rg.disk.ReadAt(file, 0)
	if !bytes.Equal(file, model) {
		t.Fatal("the disk file differs from the model")
	}
	st := rg.b.Stats()
	if st.Errors != 0 || st.Flushes != 1 || st.Requests != 201 {
		t.Fatalf("stats %+v", st)
	}
	// Only the ring stays mapped between requests.
	if n := rg.g.mapped(); n != 1 {
		t.Fatalf("%d mappings held between requests, want the ring only", n)
	}
}

// TestHostileRing fills the ring with garbage requests: each gets an error
// response carrying its id, nothing reaches the disk, and the backend goes
// on serving good requests.
func TestHostileRing(t *testing.T) {
	t.Run("map", func(t *testing.T) { hostileRing(t, newRig(t)) })
	t.Run("copy", func(t *testing.T) { hostileRing(t, newRig(t, true)) })
}

func hostileRing(t *testing.T, rg *testRig) {
	good, _ := rg.g.share()
	bad := hostileRequests(good)
	var reqs []blkif.Request
	for i, b := range bad {
		b.r.ID = ^uint64(i) // ids the backend cannot have made up
		b.r.Handle = 0xffff
		reqs = append(reqs, b.r)
	}
	copy(rg.g.pages[good], bytes.Repeat([]byte{0xee}, blkif.PageSize))
	rg.f.push(reqs...)
	rsps := rg.f.responses(len(reqs), 10*time.Second)
	for i, rsp := range rsps {
		if rsp.ID != reqs[i].ID || rsp.Operation != reqs[i].Operation || rsp.Status != bad[i].status {
			t.Errorf("request %d (%+v): response %+v, want status %d", i, reqs[i], rsp, bad[i].status)
		}
	}
	if st := rg.b.Stats(); st.Errors != uint64(len(bad)) || st.BytesWritten != 0 {
		t.Fatalf("stats after garbage: %+v", st)
	}
	zero := make([]byte, diskSectors*blkif.SectorSize)
	file := make([]byte, len(zero))
	rg.disk.ReadAt(file, 0)
	if !bytes.Equal(file, zero) {
		t.Fatal("a refused request wrote to the disk")
	}
	// A wild req_prod, 1000 ahead: the backend takes the stale slots a
	// ring's worth at a time (never more than the free response slots) and
	// answers every one; the frontend, seeing all 1000 answered, carries on.
	wild := rg.f.r.ReqProdPvt + 1000
	before := rg.b.Stats().Requests
	rg.f.r.SetReqProd(wild)
	rg.f.kick()
	deadline := time.Now().Add(10 * time.Second)
	for rg.f.r.Unconsumed() < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 1000 stale slots answered", rg.f.r.Unconsumed())
		}
		time.Sleep(time.Millisecond)
	}
	if got := rg.b.Stats().Requests - before; got != 1000 {
		t.Fatalf("%d requests answered for a req_prod 1000 ahead", got)
	}
	rg.f.r.ReqProdPvt, rg.f.r.RspCons = wild, wild
	data := bytes.Repeat([]byte("ok after garbage"), blkif.PageSize/16)
	if st := rg.f.io(blkif.OpWrite, 8, data); st != blkif.StatusOkay {
		t.Fatalf("good write after garbage: %d", st)
	}
	back := make([]byte, len(data))
	if st := rg.f.io(blkif.OpRead, 8, back); st != blkif.StatusOkay || !bytes.Equal(back, data) {
		t.Fatalf("good read after garbage: %d", st)
	}
}

// TestPauseQuiesce: Pause then the Tracker's Quiesce unmap the ring and
// report its frame; requests pushed meanwhile wait on the ring and are
// answered after Resume, which maps the ring again.
func TestPauseQuiesce(t *testing.T) {
	rg := newRig(t)
	data := bytes.Repeat([]byte{0xab}, blkif.PageSize)
	if st := rg.f.io(blkif.OpWrite, 0, data); st != blkif.StatusOkay {
		t.Fatal(st)
	}
	ringRef := rg.b.srv.ringM.Request.Grants[0].Ref
	rg.b.Pause()
	frames, err := rg.tr.Quiesce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 1 || frames[0] != (grant.Frame{Domid: guestDom, GFN: 0x1000 + uint64(ringRef)}) {
		t.Fatalf("Quiesce reported %v, want the ring's frame", frames)
	}
	if n := rg.g.mapped(); n != 0 {
		t.Fatalf("%d mappings after Quiesce", n)
	}
	ref, p := rg.g.share()
	copy(p, data)
	r := blkif.Request{Operation: blkif.OpWrite, NrSegments: 1, ID: 7, Sector: 64, Seg: [11]blkif.Segment{{Gref: ref, LastSect: 7}}}
	blkif.EncodeRequest(rg.f.r.Request(), &r) // the ring page is the guest's; it can still write it
	rg.f.r.CommitRequest()
	rg.f.r.PushRequests()
	rg.f.kick()
	time.Sleep(100 * time.Millisecond)
	if rg.f.r.Unconsumed() != 0 || rg.b.Stats().Requests != 1 {
		t.Fatal("a request was answered while quiesced")
	}
	rg.tr.Resume()
	if err := rg.b.Resume(); err != nil {
		t.Fatal(err)
	}
	if rsp := rg.f.responses(1, 5*time.Second)[0]; rsp.ID != 7 || rsp.Status != blkif.StatusOkay {
		t.Fatalf("after Resume: %+v", rsp)
	}
	if rg.g.mapped() != 1 {
		t.Fatal("ring not mapped again")
	}
}

// TestFrontendCloses: the frontend's Closing ends Run with ErrClosed and
// the backend reaches Closed with nothing mapped.
func TestFrontendCloses(t *testing.T) {
	rg := newRig(t)
	ctx := context.Background()
	xenbus.WriteState(ctx, rg.c, rg.dev.FrontendPath(), xenbus.StateClosing)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := xenbus.WaitState(wctx, rg.c, rg.dev.BackendPath(), func(s xenbus.State) bool { return s == xenbus.StateClosing }); err != nil {
		t.Fatal(err)
	}
	xenbus.WriteState(ctx, rg.c, rg.dev.FrontendPath(), xenbus.StateClosed)
	select {
	case err := <-rg.done:
		rg.done <- err
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if st, _ := xenbus.ReadState(ctx, rg.c, rg.dev.BackendPath()); st != xenbus.StateClosed || rg.g.mapped() != 0 {
		t.Fatalf("backend %v with %d mappings", st, rg.g.mapped())
	}
	if st := rg.b.Stats(); st.Requests != 0 {
		t.Fatalf("stats after close %+v", st)
	}
}

// TestQuiesceHook: the save-loop hook returns the ring's guest frame; a
// request waits while quiesced and is answered after Unquiesce.
func TestQuiesceHook(t *testing.T) {
	rg := newRig(t)
	gfns, err := rg.b.Quiesce(context.Background())
	ringRef := rg.b.srv.ringM.Request.Grants[0].Ref
	if err != nil || len(gfns) != 1 || gfns[0] != 0x1000+uint64(ringRef) {
		t.Fatalf("Quiesce: %v %v, want the ring's frame", gfns, err)
	}
	data := bytes.Repeat([]byte{7}, blkif.PageSize)
	got := make(chan int16, 1)
	go func() { got <- rg.f.io(blkif.OpWrite, 0, data) }()
	select {
	case st := <-got:
		t.Fatalf("answered (%d) while quiesced", st)
	case <-time.After(100 * time.Millisecond):
	}
	if err := rg.b.Unquiesce(); err != nil {
		t.Fatal(err)
	}
	if st := <-got; st != blkif.StatusOkay {
		t.Fatalf("after Unquiesce: %d", st)
	}
}
