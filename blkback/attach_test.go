package blkback

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/xenstoretest"
)

// A Backend is what migrate's save quiesces.
var _ migrate.Quiescer = (*Backend)(nil)

// TestAttachMigrates is the receiving side of a migration in miniature: a
// first backend is quiesced with a request in its ring unanswered (the
// guest suspended); Attach then sets the disk up for the "restored" guest
// (nodes written before started runs), the frontend reconnects on a fresh
// ring as blkfront does on resume and queues the request again; the new
// backend answers it, the data written through the first backend is there,
// and the nodes are gone once Attach returns.
func TestAttachMigrates(t *testing.T) {
	rg := newRig(t)
	first := bytes.Repeat([]byte{0xa1}, blkif.PageSize)
	if st := rg.f.io(blkif.OpWrite, 8, first); st != blkif.StatusOkay {
		t.Fatalf("write through the source backend: %d", st)
	}
	if _, err := rg.b.Quiesce(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The request in flight at the suspend: never answered by the source.
	second := bytes.Repeat([]byte{0xb2}, blkif.PageSize)
	ref, page := rg.g.share()
	copy(page, second)
	req := blkif.Request{Operation: blkif.OpWrite, ID: 77, Sector: 16, NrSegments: 1,
		Seg: [blkif.MaxSegments]blkif.Segment{{Gref: ref, FirstSect: 0, LastSect: blkif.SectorsPerPage - 1}}}
	rg.f.push(req)
	time.Sleep(50 * time.Millisecond)
	if rg.f.r.Unconsumed() != 0 {
		t.Fatal("the quiesced source answered")
	}
	rg.stop() // the source is destroyed: its backend ends
	select {
	case err := <-rg.done:
		rg.done <- err // for the rig's cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("source backend did not stop")
	}
	if rg.g.mapped() != 0 {
		t.Fatalf("%d mappings left by the source backend", rg.g.mapped())
	}

	// The restored guest's disk, on the same store and file.
	ev := newEvents()
	cfg := Config{Store: rg.c, Device: rg.dev, Disk: rg.disk, Sectors: diskSectors, Tracker: grant.NewTracker(rg.g, frameOf), Events: ev}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	nodes := make(chan error, 1)
	go func() {
		_, err := Attach(ctx, cfg, "xvda", rg.disk.Name(), "xensr", func(*Backend) {
			ok1, _ := rg.c.Exists(ctx, rg.dev.FrontendPath()+"/backend")
			ok2, _ := rg.c.Exists(ctx, rg.dev.BackendPath()+"/frontend")
			if !ok1 || !ok2 {
				nodes <- os.ErrNotExist
			}
			close(nodes)
		})
		done <- err
	}()
	if err := <-nodes; err != nil {
		t.Fatal("started ran before the nodes were written")
	}
	f := &frontend{t: t, share: rg.g.share, fromBack: ev.toFront, port: frontPort, kick: func() {
		select {
		case ev.toBack <- struct{}{}:
		default:
		}
	}}
	f.connect(rg.c, rg.dev)
	f.push(req)
	if rsp := f.responses(1, 5*time.Second)[0]; rsp.ID != 77 || rsp.Status != blkif.StatusOkay {
		t.Fatalf("queued again after the reconnect: %+v", rsp)
	}
	got := make([]byte, 2*blkif.PageSize)
	if st := f.io(blkif.OpRead, 8, got); st != blkif.StatusOkay {
		t.Fatalf("read through the new backend: %d", st)
	}
	if !bytes.Equal(got[:blkif.PageSize], first) || !bytes.Equal(got[blkif.PageSize:], second) {
		t.Fatal("the new backend reads other data than the guest wrote")
	}
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("Attach: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Attach did not return")
	}
	for _, p := range []string{rg.dev.FrontendPath(), rg.dev.BackendPath()} {
		if ok, _ := rg.c.Exists(context.Background(), p); ok {
			t.Errorf("%s left after Attach returned", p)
		}
	}
}

// TestAttachRefusesBadStore: nothing runs when the nodes cannot be written.
func TestAttachRefusesBadStore(t *testing.T) {
	c, err := xenstore.DialWith(context.Background(), xenstoretest.NewServer().Dial)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	disk, _ := os.Create(filepath.Join(t.TempDir(), "d"))
	defer disk.Close()
	ran := false
	_, err = Attach(context.Background(), Config{Store: c, Device: xenbus.Device{Kind: "vbd", FrontDomid: guestDom, Devid: VdevXvd(0)}, Disk: disk},
		"xvda", disk.Name(), "xensr", func(*Backend) { ran = true })
	if err == nil || ran {
		t.Fatalf("Attach on a closed store: err %v, started %v", err, ran)
	}
}
