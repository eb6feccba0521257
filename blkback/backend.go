package blkback

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/evtchn"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/ring"
	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
)

// Events is what a Backend needs of an event-channel device
// (*evtchn.Device has these methods).
type Events interface {
	BindInterdomain(dom uint32, remote evtchn.Port) (evtchn.Port, error)
	Unbind(p evtchn.Port) error
	Notify(p evtchn.Port) error
	Pending(dst []evtchn.Port, buf []byte) ([]evtchn.Port, error)
	Unmask(ports ...evtchn.Port) error
}

// Config is what a Backend serves and through what.
type Config struct {
	Store    *xenstore.Client
	Device   xenbus.Device // Kind "vbd"; its nodes written by the toolstack (AddDevice)
	Disk     Disk
	Sectors  uint64 // capacity in 512-byte sectors
	ReadOnly bool
	Tracker  *grant.Tracker
	Events   Events
	// RingFrame, if set, finds the guest frame behind the ring's grant
	// (TableResolver), so that a Quiesce reports it. The data pages, mapped
	// only while a request runs, need none: Pause returns after they are
	// unmapped, which marks them dirty.
	RingFrame grant.Resolver
	// Copy, if set, moves the data by grant copy instead of mappings.
	Copy Copier
	Logf func(format string, args ...any) // nil: silent
}

// The protocol the backend speaks (the frontend's "protocol" node; absent
// means the backend's native ABI, which is this one).
const protocolNative = "x86_64-abi"

// A Backend is one virtual block device, from the handshake to the close.
type Backend struct {
	cfg Config

	mu      sync.Mutex
	srv     *Server
	port    evtchn.Port
	paused  bool
	serving sync.Mutex // held while the Server runs
	kick    chan struct{}
	last    Stats // of the Server that disconnected
}

// New returns a Backend; Run serves it.
func New(cfg Config) *Backend {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &Backend{cfg: cfg, kick: make(chan struct{}, 1)}
}

// DiskEntries returns the nodes a toolstack writes for a disk of this
// backend (libxl's disk device-add: the backend's and the frontend's), for
// xenbus.Add. vdev is the guest's name for it (xvda...), params the
// backing file, backendType the "type" node.
func DiskEntries(d xenbus.Device, vdev, params, backendType string, readOnly bool) (back, front []xenbus.Entry) {
	mode := "w"
	if readOnly {
		mode = "r"
	}
	initialising := strconv.Itoa(int(xenbus.StateInitialising))
	back = []xenbus.Entry{
		{Key: "frontend-id", Value: strconv.FormatUint(uint64(d.FrontDomid), 10)},
		{Key: "online", Value: "1"},
		{Key: "removable", Value: "0"},
		{Key: "bootable", Value: "1"},
		{Key: "state", Value: initialising},
		{Key: "dev", Value: vdev},
		{Key: "type", Value: backendType},
		{Key: "mode", Value: mode},
		{Key: "device-type", Value: "disk"},
		{Key: "discard-enable", Value: "0"},
		{Key: "params", Value: params},
	}
	front = []xenbus.Entry{
		{Key: "backend-id", Value: strconv.FormatUint(uint64(d.BackDomid), 10)},
		{Key: "state", Value: initialising},
		{Key: "virtual-device", Value: strconv.FormatUint(uint64(d.Devid), 10)},
		{Key: "device-type", Value: "disk"},
	}
	return back, front
}

// VdevXvd returns the device number of xvdX (X = 'a' + disk): Xen's
// encoding 202<<8 | disk<<4 for the first 16 disks.
func VdevXvd(disk int) uint32 { return 202<<8 | uint32(disk)<<4 }

// ErrClosed reports a Run that ended because the frontend closed.
var ErrClosed = errors.New("blkback: frontend closed the device")

// Run performs the backend's half of the handshake, serves requests until
// the frontend closes the device or ctx ends, and disconnects. It returns
// ErrClosed after a close by the frontend.
func (b *Backend) Run(ctx context.Context) error {
	c, d := b.cfg.Store, b.cfg.Device
	bp, fp := d.BackendPath(), d.FrontendPath()
	info := 0
	if b.cfg.ReadOnly {
		info |= blkif.InfoReadOnly
	}
	for _, e := range []xenbus.Entry{
		{Key: "feature-flush-cache", Value: "1"},
		{Key: "sectors", Value: strconv.FormatUint(b.cfg.Sectors, 10)},
		{Key: "info", Value: strconv.Itoa(info)},
		{Key: "sector-size", Value: strconv.Itoa(blkif.SectorSize)},
		{Key: "physical-sector-size", Value: strconv.Itoa(blkif.SectorSize)},
	} {
		if err := c.Write(ctx, bp+"/"+e.Key, []byte(e.Value)); err != nil {
			return fmt.Errorf("blkback: %w", err)
		}
	}
	if err := xenbus.WriteState(ctx, c, bp, xenbus.StateInitWait); err != nil {
		return err
	}
	b.cfg.Logf("blkback: %s InitWait, waiting for the frontend", bp)
	st, err := xenbus.WaitState(ctx, c, fp, func(s xenbus.State) bool { return s >= xenbus.StateInitialised })
	if err != nil {
		return err
	}
	if st != xenbus.StateInitialised && st != xenbus.StateConnected {
		xenbus.WriteState(context.WithoutCancel(ctx), c, bp, xenbus.StateClosed)
		b.cfg.Logf("blkback: %s Closed: the frontend went %v before connecting", bp, st)
		return fmt.Errorf("%w (state %v before connecting)", ErrClosed, st)
	}
	if err := b.connect(ctx); err != nil {
		xenbus.WriteState(context.WithoutCancel(ctx), c, bp, xenbus.StateClosed)
		b.cfg.Logf("blkback: %s Closed: connecting failed: %v", bp, err)
		return err
	}
	if err := xenbus.WriteState(ctx, c, bp, xenbus.StateConnected); err != nil {
		b.disconnect()
		return err
	}
	b.cfg.Logf("blkback: %s Connected (event channel %d)", bp, b.port)
	err = b.loop(ctx)
	b.disconnect()
	bg := context.WithoutCancel(ctx)
	xenbus.WriteState(bg, c, bp, xenbus.StateClosing)
	if errors.Is(err, ErrClosed) {
		xenbus.WaitState(ctx, c, fp, func(s xenbus.State) bool { return s == xenbus.StateClosed || s == xenbus.StateUnknown })
	}
	xenbus.WriteState(bg, c, bp, xenbus.StateClosed)
	return err
}

// readFront reads a frontend node as an unsigned number.
func (b *Backend) readFront(ctx context.Context, key string) (uint64, error) {
	p := b.cfg.Device.FrontendPath() + "/" + key
	v, err := b.cfg.Store.Read(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("blkback: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("blkback: %s = %q is not a number", p, v)
	}
	return n, nil
}

// connect reads the frontend's transport parameters, maps the ring and
// binds the event channel.
func (b *Backend) connect(ctx context.Context) error {
	fp := b.cfg.Device.FrontendPath()
	if v, err := b.cfg.Store.Read(ctx, fp+"/protocol"); err == nil && string(v) != protocolNative {
		return fmt.Errorf("blkback: frontend protocol %q, only %q is served", v, protocolNative)
	}
	if v, err := b.cfg.Store.Read(ctx, fp+"/ring-page-order"); err == nil && string(v) != "0" {
		return fmt.Errorf("blkback: frontend asks for ring-page-order %s, not offered", v)
	}
	ref, err := b.readFront(ctx, "ring-ref")
	if err != nil {
		return err
	}
	remote, err := b.readFront(ctx, "event-channel")
	if err != nil {
		return err
	}
	dom := b.cfg.Device.FrontDomid
	var frame uint64
	if b.cfg.RingFrame != nil {
		// Serving does not need the frame; a quiesce does, and reports 0
		// (unknown) for it: say so now.
		if frame, err = b.cfg.RingFrame(grant.Grant{Domid: dom, Ref: grant.Ref(ref)}); err != nil {
			b.cfg.Logf("blkback: ring ref %d: guest frame unknown: %v", ref, err)
			frame = 0
		} else {
			b.cfg.Logf("blkback: ring ref %d is guest frame %#x", ref, frame)
		}
	}
	srv, err := NewServer(b.cfg.Tracker, dom, grant.Ref(ref), frame, b.cfg.Disk, blkif.Disk{Sectors: b.cfg.Sectors, ReadOnly: b.cfg.ReadOnly})
	if err != nil {
		return err
	}
	if b.cfg.Copy != nil {
		srv.UseCopy(b.cfg.Copy)
	}
	port, err := b.cfg.Events.BindInterdomain(dom, evtchn.Port(remote))
	if err != nil {
		srv.Close()
		return err
	}
	b.mu.Lock()
	b.srv, b.port = srv, port
	b.mu.Unlock()
	return nil
}

func (b *Backend) disconnect() {
	b.mu.Lock()
	srv, port := b.srv, b.port
	b.srv = nil
	if srv != nil {
		b.last = srv.Stats()
	}
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
		b.cfg.Events.Unbind(port)
	}
}

// Stats returns the Server's counters (zero before the connection; after
// a disconnection, the counters it ended with).
func (b *Backend) Stats() Stats {
	b.mu.Lock()
	srv, last := b.srv, b.last
	b.mu.Unlock()
	if srv == nil {
		return last
	}
	return srv.Stats()
}

// loop serves on every event until the frontend leaves Connected or ctx
// ends.
func (b *Backend) loop(ctx context.Context) error {
	c, fp := b.cfg.Store, b.cfg.Device.FrontendPath()
	w, err := c.Watch(ctx, fp+"/state")
	if err != nil {
		return err
	}
	defer w.Stop(context.WithoutCancel(ctx))
	fired := make(chan error, 1)
	go func() {
		buf := make([]byte, 64*evtchn.PortSize)
		var ps []evtchn.Port
		for {
			var err error
			ps, err = b.cfg.Events.Pending(ps[:0], buf)
			if err != nil {
				fired <- err
				return
			}
			if slices.Contains(ps, b.port) {
				b.Kick()
			}
			if err := b.cfg.Events.Unmask(ps...); err != nil {
				fired <- err
				return
			}
		}
	}()
	b.Kick() // requests may be waiting from before the connection
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-fired:
			return fmt.Errorf("blkback: event channel: %w", err)
		case <-w.C:
			st, err := xenbus.ReadState(ctx, c, fp)
			if err != nil {
				return err
			}
			if st != xenbus.StateConnected && st != xenbus.StateInitialised {
				b.cfg.Logf("blkback: frontend %s went %v", fp, st)
				return ErrClosed
			}
		case <-b.kick:
			if err := b.serve(); err != nil {
				return err
			}
		}
	}
}

// Kick makes the loop look at the ring (as an event would).
func (b *Backend) Kick() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// serve runs the Server once unless paused, and notifies the frontend.
func (b *Backend) serve() error {
	b.serving.Lock()
	defer b.serving.Unlock()
	b.mu.Lock()
	srv, port, paused := b.srv, b.port, b.paused
	b.mu.Unlock()
	if paused || srv == nil {
		return nil
	}
	notify, err := srv.Serve()
	if notify {
		if nerr := b.cfg.Events.Notify(port); nerr != nil {
			return nerr
		}
	}
	if errors.Is(err, grant.ErrQuiesced) {
		return nil // paused by the Tracker's owner; Resume serves what waits
	}
	return err
}

// Pause stops taking requests and returns once the requests being handled
// are answered (their responses pushed and the frontend notified). Then
// the Tracker's Quiesce finds nothing in flight and unmaps the ring.
func (b *Backend) Pause() {
	b.mu.Lock()
	b.paused = true
	b.mu.Unlock()
	b.serving.Lock() // waits for a Serve in progress
	b.serving.Unlock()
}

// Resume maps the ring again if a Quiesce unmapped it (after the Tracker's
// Resume), and serves what waited.
func (b *Backend) Resume() error {
	b.mu.Lock()
	srv := b.srv
	b.paused = false
	b.mu.Unlock()
	if srv != nil {
		if err := srv.remap(); err != nil {
			return err
		}
	}
	b.Kick()
	return nil
}

// remap maps the ring again when the Tracker no longer holds it, keeping
// the ring indices.
func (s *Server) remap() error {
	for _, h := range s.tr.Held() {
		if h == s.ringM {
			return nil
		}
	}
	m, err := s.tr.Map(s.ringM.Request)
	if err != nil {
		return fmt.Errorf("blkback: mapping the ring again: %w", err)
	}
	back, err := ring.NewBack(m.Mapping.Mem, blkif.EntrySize)
	if err != nil {
		s.tr.Unmap(m)
		return err
	}
	back.ReqCons, back.RspProdPvt = s.back.ReqCons, s.back.RspProdPvt
	s.ringM, s.back = m, back
	return nil
}

// Quiesce is the save loop's hook before its final pass (the guest
// suspended): Pause, then the Tracker's Quiesce, which unmaps everything
// and reports the guest frames that were mapped writable; it returns those
// of this backend's guest, to be sent again. On an error the backend stays
// paused; Unquiesce undoes either outcome.
func (b *Backend) Quiesce(ctx context.Context) ([]uint64, error) {
	b.Pause()
	frames, err := b.cfg.Tracker.Quiesce(ctx)
	var gfns []uint64
	for _, f := range frames {
		if f.Domid == b.cfg.Device.FrontDomid {
			gfns = append(gfns, f.GFN)
		}
	}
	return gfns, err
}

// Unquiesce is the hook after a failed migration, before the guest runs
// again on this host: the Tracker takes mappings again, the ring is mapped
// again and what waited on it is served.
func (b *Backend) Unquiesce() error {
	b.cfg.Tracker.Resume()
	return b.Resume()
}
