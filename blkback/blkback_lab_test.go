//go:build linux

package blkback

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/evtchn"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
)

// TestLabHostileRing runs the backend against a Go frontend in dom0 itself:
// the frontend grants its ring and data pages with gntalloc, the backend
// maps them with gntdev through the Tracker, and the two ends signal over a
// real event channel. Good I/O round-trips; a batch of garbage requests
// gets error responses carrying their ids; good I/O still works after.
func TestLabHostileRing(t *testing.T) {
	labtest.Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xs, err := xenstore.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer xs.Close()
	al, err := grant.OpenAlloc()
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	gnt, err := grant.OpenDevice()
	if err != nil {
		t.Fatal(err)
	}
	defer gnt.Close()
	fe, err := evtchn.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	be, err := evtchn.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	fport, err := fe.BindUnbound(0)
	if err != nil {
		t.Fatal(err)
	}
	fromBack := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			ps, err := fe.Pending(nil, buf)
			if err != nil {
				return
			}
			select {
			case fromBack <- struct{}{}:
			default:
			}
			fe.Unmask(ps...)
		}
	}()
	var shares []*grant.Share
	defer func() {
		for _, s := range shares {
			al.Unshare(s)
		}
	}()
	share := func() (grant.Ref, []byte) {
		s, err := al.Share(0, 1, true)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
		return s.Refs[0], s.Mem
	}

	disk, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	disk.Truncate(diskSectors * blkif.SectorSize)
	dev := xenbus.Device{Kind: "vbd", BackDomid: 0, FrontDomid: 0, Devid: VdevXvd(15)}
	back, front := DiskEntries(dev, "xvdp", disk.Name(), "xensr", false)
	if err := xs.Transaction(ctx, func(tx *xenstore.Tx) error { return xenbus.Add(ctx, tx, dev, back, front) }); err != nil {
		t.Fatal(err)
	}
	defer xenbus.Remove(context.Background(), xs, dev)
	tr := grant.NewTracker(gnt, nil)
	b := New(Config{Store: xs, Device: dev, Disk: disk, Sectors: diskSectors, Tracker: tr, Events: be, Logf: t.Logf})
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	f := &frontend{t: t, share: share, fromBack: fromBack, port: fport, kick: func() { fe.Notify(fport) }}
	f.connect(xs, dev)

	roundTrip := func(sector uint64, fill byte) {
		t.Helper()
		data := bytes.Repeat([]byte{fill}, 3*blkif.PageSize)
		if st := f.io(blkif.OpWrite, sector, data); st != blkif.StatusOkay {
			t.Fatalf("write: status %d (%v)", st, b.Stats().LastError)
		}
		got := make([]byte, len(data))
		if st := f.io(blkif.OpRead, sector, got); st != blkif.StatusOkay || !bytes.Equal(got, data) {
			t.Fatalf("read back: status %d, equal %v", st, bytes.Equal(got, data))
		}
		onDisk := make([]byte, len(data))
		disk.ReadAt(onDisk, int64(sector)*blkif.SectorSize)
		if !bytes.Equal(onDisk, data) {
			t.Fatal("the file does not hold what was written through the grants")
		}
	}
	roundTrip(16, 0x11)

	good, page := share()
	copy(page, bytes.Repeat([]byte{0xee}, blkif.PageSize))
	bad := hostileRequests(good)
	var reqs []blkif.Request
	for i, h := range bad {
		h.r.ID = ^uint64(i)
		reqs = append(reqs, h.r)
	}
	before := b.Stats()
	f.push(reqs...)
	for i, rsp := range f.responses(len(reqs), 20*time.Second) {
		if rsp.ID != reqs[i].ID || rsp.Status != bad[i].status {
			t.Errorf("garbage request %d: response %+v, want id %#x status %d", i, rsp, reqs[i].ID, bad[i].status)
		}
	}
	after := b.Stats()
	if after.Errors-before.Errors != uint64(len(bad)) || after.BytesWritten != before.BytesWritten {
		t.Fatalf("stats before %+v after %+v", before, after)
	}
	t.Logf("%d garbage requests answered with errors; last: %v", len(bad), after.LastError)
	roundTrip(64, 0x22)
	if h := tr.Held(); len(h) != 1 || h[0].Request.Holder != "blkback ring" {
		t.Fatalf("held between requests: %d mappings", len(h))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if len(tr.Held()) != 0 {
		t.Fatal("mappings left after Run")
	}
}
