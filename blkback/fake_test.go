package blkback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/evtchn"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/ring"
	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/xenstoretest"
)

// fakeGuest is a guest's granted pages and a grant.Mapper over them: a
// one-grant mapping aliases the page (as a real mapping does, so a ring is
// shared); a longer one copies in, and back on Unmap when writable.
type fakeGuest struct {
	mu    sync.Mutex
	pages map[grant.Ref][]byte
	next  grant.Ref
	maps  map[uint64]fakeMap
	id    uint64
}

type fakeMap struct {
	refs     []grant.Ref
	writable bool
	mem      []byte
}

func newGuest() *fakeGuest {
	return &fakeGuest{pages: map[grant.Ref][]byte{}, next: blkif.ReservedGrants + 3, maps: map[uint64]fakeMap{}}
}

// share grants a fresh page.
func (g *fakeGuest) share() (grant.Ref, []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.next
	g.next++
	p := make([]byte, blkif.PageSize)
	g.pages[r] = p
	return r, p
}

func (g *fakeGuest) Map(gs []grant.Grant, writable bool) (grant.Mapping, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := fakeMap{writable: writable}
	for _, gr := range gs {
		if _, ok := g.pages[gr.Ref]; !ok || gr.Domid != guestDom {
			return grant.Mapping{}, fmt.Errorf("fake: dom%d ref %d is not granted", gr.Domid, gr.Ref)
		}
		m.refs = append(m.refs, gr.Ref)
	}
	if len(gs) == 1 {
		m.mem = g.pages[gs[0].Ref]
	} else {
		for _, r := range m.refs {
			m.mem = append(m.mem, g.pages[r]...)
		}
	}
	g.id++
	g.maps[g.id] = m
	return grant.Mapping{Handle: g.id, Mem: m.mem}, nil
}

func (g *fakeGuest) Unmap(mp grant.Mapping) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.maps[mp.Handle]
	if !ok {
		return errors.New("fake: unmap of an unknown mapping")
	}
	delete(g.maps, mp.Handle)
	if m.writable && len(m.refs) > 1 {
		for i, r := range m.refs {
			copy(g.pages[r], m.mem[i*blkif.PageSize:])
		}
	}
	return nil
}

// Copy is grant copy over the fake's pages: status -4 (GNTST_bad_gntref)
// for a reference not granted.
func (g *fakeGuest) Copy(segs []grant.CopySegment) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range segs {
		sg := &segs[i]
		src, dst := sg.SrcLocal, sg.DstLocal
		if src == nil {
			p, ok := g.pages[sg.SrcGrant.Ref]
			if !ok || sg.SrcGrant.Domid != guestDom || int(sg.SrcOffset)+int(sg.Len) > len(p) {
				sg.Status = -4
				continue
			}
			src = p[sg.SrcOffset:]
		}
		if dst == nil {
			p, ok := g.pages[sg.DstGrant.Ref]
			if !ok || sg.DstGrant.Domid != guestDom || int(sg.DstOffset)+int(sg.Len) > len(p) {
				sg.Status = -4
				continue
			}
			dst = p[sg.DstOffset:]
		}
		copy(dst[:sg.Len], src[:sg.Len])
		sg.Status = 0
	}
	return nil
}

func (g *fakeGuest) mapped() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.maps)
}

// frameOf is the fake guest's grant table: ref r is frame 0x1000+r.
func frameOf(gr grant.Grant) (uint64, error) { return 0x1000 + uint64(gr.Ref), nil }

const (
	guestDom    = 5
	backPort    = evtchn.Port(40)
	frontPort   = evtchn.Port(3)
	diskSectors = 2048
)

// fakeEvents connects the backend's port with the frontend: toBack carries
// the frontend's notifications, toFront the backend's.
type fakeEvents struct {
	toBack, toFront chan struct{}
	closed          chan struct{}
	once            sync.Once
}

func newEvents() *fakeEvents {
	return &fakeEvents{toBack: make(chan struct{}, 1), toFront: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (e *fakeEvents) BindInterdomain(dom uint32, remote evtchn.Port) (evtchn.Port, error) {
	if dom != guestDom || remote != frontPort {
		return 0, fmt.Errorf("fake: bind to dom%d port %d", dom, remote)
	}
	return backPort, nil
}
func (e *fakeEvents) Unbind(p evtchn.Port) error { e.once.Do(func() { close(e.closed) }); return nil }
func (e *fakeEvents) Notify(p evtchn.Port) error {
	select {
	case e.toFront <- struct{}{}:
	default:
	}
	return nil
}
func (e *fakeEvents) Pending(dst []evtchn.Port, _ []byte) ([]evtchn.Port, error) {
	select {
	case <-e.toBack:
		return append(dst, backPort), nil
	case <-e.closed:
		return dst, errors.New("fake: closed")
	}
}
func (e *fakeEvents) Unmask(...evtchn.Port) error { return nil }

// frontend is a Go blkfront for tests.
type frontend struct {
	t        testing.TB
	share    func() (grant.Ref, []byte) // grants a fresh page to the backend
	kick     func()                     // notifies the backend
	fromBack <-chan struct{}            // the backend's notifications
	port     evtchn.Port                // the frontend's unbound port
	r        *ring.Front
	buf      []byte
	id       uint64
}

// testRig is a backend serving a file to a fake guest through the
// in-memory xenstore.
type testRig struct {
	c    *xenstore.Client
	dev  xenbus.Device
	g    *fakeGuest
	tr   *grant.Tracker
	b    *Backend
	f    *frontend
	disk *os.File
	done chan error
	stop context.CancelFunc
}

// newRig starts a backend; useCopy moves data by grant copy.
func newRig(t *testing.T, useCopy ...bool) *testRig {
	t.Helper()
	ctx := context.Background()
	c, err := xenstore.DialWith(ctx, xenstoretest.NewServer().Dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	disk, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	if err := disk.Truncate(diskSectors * blkif.SectorSize); err != nil {
		t.Fatal(err)
	}
	rg := &testRig{c: c, g: newGuest(), disk: disk, done: make(chan error, 1),
		dev: xenbus.Device{Kind: "vbd", BackDomid: 0, FrontDomid: guestDom, Devid: VdevXvd(0)}}
	rg.tr = grant.NewTracker(rg.g, frameOf)
	back, front := DiskEntries(rg.dev, "xvda", disk.Name(), "xensr", false)
	if err := c.Transaction(ctx, func(tx *xenstore.Tx) error { return xenbus.Add(ctx, tx, rg.dev, back, front) }); err != nil {
		t.Fatal(err)
	}
	ev := newEvents()
	cfg := Config{Store: c, Device: rg.dev, Disk: disk, Sectors: diskSectors, Tracker: rg.tr, Events: ev}
	if len(useCopy) > 0 && useCopy[0] {
		cfg.Copy = rg.g
	}
	rg.b = New(cfg)
	rctx, cancel := context.WithCancel(ctx)
	rg.stop = cancel
	go func() { rg.done <- rg.b.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rg.done:
		case <-time.After(5 * time.Second):
			t.Error("backend did not stop")
		}
	})
	rg.f = &frontend{t: t, share: rg.g.share, fromBack: ev.toFront, port: frontPort, kick: func() {
		select {
		case ev.toBack <- struct{}{}:
		default:
		}
	}}
	rg.f.connect(c, rg.dev)
	return rg
}

// connect is blkfront's side of the handshake.
func (f *frontend) connect(c *xenstore.Client, d xenbus.Device) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := xenbus.WaitState(ctx, c, d.BackendPath(), func(s xenbus.State) bool { return s == xenbus.StateInitWait }); err != nil {
		f.failHandshake(c, d, err)
	}
	ref, page := f.share()
	r, err := ring.NewFront(page, blkif.EntrySize)
	if err != nil {
		f.t.Fatal(err)
	}
	f.r = r
	fp := d.FrontendPath()
	for k, v := range map[string]string{"ring-ref": fmt.Sprint(ref), "event-channel": fmt.Sprint(f.port), "protocol": protocolNative} {
		if err := c.Write(ctx, fp+"/"+k, []byte(v)); err != nil {
			f.t.Fatal(err)
		}
	}
	xenbus.WriteState(ctx, c, fp, xenbus.StateInitialised)
	if _, err := xenbus.WaitState(ctx, c, d.BackendPath(), func(s xenbus.State) bool { return s == xenbus.StateConnected }); err != nil {
		f.failHandshake(c, d, err)
	}
	for _, k := range []string{"sectors", "info", "sector-size", "feature-flush-cache"} {
		if ok, _ := c.Exists(ctx, d.BackendPath()+"/"+k); !ok {
			f.t.Fatalf("backend connected without %s", k)
		}
	}
	xenbus.WriteState(ctx, c, fp, xenbus.StateConnected)
}

// failHandshake fails the test with what both ends' directories hold, so
// a handshake that stalls says which end stopped where.
func (f *frontend) failHandshake(c *xenstore.Client, d xenbus.Device, err error) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var dump []string
	for _, dir := range []string{d.BackendPath(), d.FrontendPath()} {
		keys, lerr := c.Directory(ctx, dir)
		if lerr != nil {
			dump = append(dump, fmt.Sprintf("%s: %v", dir, lerr))
			continue
		}
		for _, k := range keys {
			v, rerr := c.Read(ctx, dir+"/"+k)
			if rerr != nil {
				dump = append(dump, fmt.Sprintf("%s/%s: %v", dir, k, rerr))
			} else {
				dump = append(dump, fmt.Sprintf("%s/%s = %q", dir, k, v))
			}
		}
	}
	f.t.Fatalf("frontend handshake: %v\n  %s", err, strings.Join(dump, "\n  "))
}

// push writes raw request slots and notifies.
func (f *frontend) push(reqs ...blkif.Request) {
	for i := range reqs {
		blkif.EncodeRequest(f.r.Request(), &reqs[i])
		f.r.CommitRequest()
	}
	if f.r.PushRequests() {
		f.kick()
	}
}

// responses waits for n responses.
func (f *frontend) responses(n int, timeout time.Duration) []blkif.Response {
	f.t.Helper()
	var out []blkif.Response
	deadline := time.After(timeout)
	for len(out) < n {
		for f.r.Unconsumed() > 0 && len(out) < n {
			f.buf = f.r.NextResponse(f.buf)
			out = append(out, blkif.DecodeResponse(f.buf))
		}
		if len(out) == n || f.r.FinalCheckForResponses() {
			continue
		}
		select {
		case <-f.fromBack:
		case <-deadline:
			f.t.Fatalf("%d of %d responses after %v", len(out), n, timeout)
		}
	}
	return out
}

// io runs one read or write of whole pages at sector, through freshly
// granted pages, and returns the status.
func (f *frontend) io(op uint8, sector uint64, data []byte) int16 {
	f.t.Helper()
	r := blkif.Request{Operation: op, Sector: sector}
	var pages [][]byte
	for off := 0; off < len(data); off += blkif.PageSize {
		ref, p := f.share()
		if op == blkif.OpWrite {
			copy(p, data[off:])
		}
		r.Seg[r.NrSegments] = blkif.Segment{Gref: ref, FirstSect: 0, LastSect: blkif.SectorsPerPage - 1}
		r.NrSegments++
		pages = append(pages, p)
	}
	f.id++
	r.ID = f.id<<8 | 0x5a
	f.push(r)
	rsp := f.responses(1, 10*time.Second)[0]
	if rsp.ID != r.ID || rsp.Operation != op {
		f.t.Fatalf("response %+v to request id %#x op %d", rsp, r.ID, op)
	}
	if op == blkif.OpRead && rsp.Status == blkif.StatusOkay {
		for i, p := range pages {
			copy(data[i*blkif.PageSize:], p)
		}
	}
	return rsp.Status
}

// A hostile request and the status it must get.
type hostile struct {
	r      blkif.Request
	status int16
}

// hostileRequests is the garbage a frontend may put on the ring (good is a
// granted page): bad segment counts, reserved and ungranted grant
// references, sector bounds outside the page or the disk, operations not
// offered.
func hostileRequests(good grant.Ref) []hostile {
	full := blkif.Segment{Gref: good, LastSect: 7}
	return []hostile{
		{blkif.Request{Operation: blkif.OpWrite, NrSegments: 12, Seg: [11]blkif.Segment{full}}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpWrite, NrSegments: 255, Seg: [11]blkif.Segment{full}}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpRead, NrSegments: 0}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpWrite, NrSegments: 1, Seg: [11]blkif.Segment{{Gref: 2, LastSect: 7}}}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpWrite, NrSegments: 1, Seg: [11]blkif.Segment{{Gref: 0x7fffffff, LastSect: 7}}}, blkif.StatusError}, // not granted
		{blkif.Request{Operation: blkif.OpWrite, NrSegments: 2, Seg: [11]blkif.Segment{full, {Gref: 4000, LastSect: 7}}}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpRead, NrSegments: 1, Seg: [11]blkif.Segment{{Gref: good, FirstSect: 7, LastSect: 3}}}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpWrite, NrSegments: 1, Sector: diskSectors - 7, Seg: [11]blkif.Segment{full}}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpWrite, NrSegments: 1, Sector: ^uint64(0) - 1, Seg: [11]blkif.Segment{full}}, blkif.StatusError},
		{blkif.Request{Operation: blkif.OpDiscard, NrSegments: 1}, blkif.StatusNotSupported},
		{blkif.Request{Operation: blkif.OpIndirect, NrSegments: 1}, blkif.StatusNotSupported},
		{blkif.Request{Operation: 0xff, NrSegments: 0xff}, blkif.StatusNotSupported},
	}
}
