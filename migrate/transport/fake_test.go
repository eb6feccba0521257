package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/migrate"
)

// testDomain is a small in-memory HVM guest behind migrate.Domain.
type testDomain struct {
	mu       sync.Mutex
	info     hypercall.DomainInfo
	maxgpfn  uint64
	mem      map[uint64][]byte
	logDirty bool
	dirty    *hypercall.DirtyBitmap
	cleans   int

	// onClean runs after every CleanDirty while the guest runs (its
	// activity during the round that follows).
	onClean func(d *testDomain, call int)
	// onSuspend runs after the guest suspended.
	onSuspend  func()
	suspendErr error

	calls     int // every call, to prove a refused migration touched nothing
	resumes   int
	destroyed bool
}

func newTestDomain(pages int) *testDomain {
	d := &testDomain{
		info:    hypercall.DomainInfo{Domain: 9, Flags: hypercall.DomainHVM | hypercall.DomainHAP, TotPages: uint64(pages), MaxPages: uint64(pages)},
		maxgpfn: uint64(pages) + 64,
		mem:     map[uint64][]byte{},
	}
	for p := uint64(0); p < uint64(pages); p++ {
		d.write(p, uint32(p%7)) // some pages repeat, a few are zero
	}
	for p := d.maxgpfn - 3; p <= d.maxgpfn; p++ {
		d.write(p, 1000)
	}
	return d
}

// write fills frame p with contents of version v (zero for v == 0 on
// even frames) and marks it dirty under log-dirty.
func (d *testDomain) write(p uint64, v uint32) {
	pg := d.mem[p]
	if pg == nil {
		pg = make([]byte, migrate.PageSize)
		d.mem[p] = pg
	}
	clear(pg)
	if v != 0 || p%2 == 1 {
		for i := 0; i < len(pg); i += 8 {
			binary.LittleEndian.PutUint64(pg[i:], uint64(v)<<32|uint64(i))
		}
	}
	if d.logDirty {
		d.dirty.Set(p)
	}
}

// scribble fills frame p with random bytes (which no encoding shrinks)
// and marks it dirty under log-dirty.
func (d *testDomain) scribble(p uint64) {
	d.write(p, 1)
	rand.Read(d.mem[p])
}

func (d *testDomain) call() { d.mu.Lock(); d.calls++; d.mu.Unlock() }

func (d *testDomain) Info() (hypercall.DomainInfo, error) { d.call(); return d.info, nil }
func (d *testDomain) MaxGPFN() (uint64, error)            { d.call(); return d.maxgpfn, nil }

func (d *testDomain) suspended() bool { return d.info.Suspended() }

func (d *testDomain) Suspend() error {
	d.call()
	if d.suspendErr != nil {
		return d.suspendErr
	}
	d.info.Flags = d.info.Flags&^(0xff<<16) | hypercall.DomainShutdown | hypercall.ShutdownSuspend<<16
	if d.onSuspend != nil {
		d.onSuspend()
	}
	return nil
}

func (d *testDomain) Resume() error {
	d.call()
	if !d.info.Suspended() {
		return errors.New("test domain: resume while running")
	}
	d.info.Flags &^= hypercall.DomainShutdown | 0xff<<16
	d.resumes++
	return nil
}

func (d *testDomain) EnableLogDirty() error {
	d.call()
	d.logDirty = true
	d.dirty = hypercall.NewDirtyBitmap(d.maxgpfn + 1)
	return nil
}

func (d *testDomain) DisableLogDirty() error { d.call(); d.logDirty = false; return nil }

func (d *testDomain) CleanDirty(bm *hypercall.DirtyBitmap) (uint64, error) {
	d.call()
	if !d.logDirty {
		return 0, errors.New("test domain: log-dirty off")
	}
	copy(bm.Words, d.dirty.Words)
	n := uint64(d.dirty.Count())
	d.dirty.Clear()
	// The guest writes while the pages just collected are being sent:
	// the next call finds them.
	if !d.info.Suspended() && d.onClean != nil {
		d.onClean(d, d.cleans)
	}
	d.cleans++
	return n, nil
}

func (d *testDomain) PageTypes(pfns []uint64, types []uint32) error {
	d.call()
	for i, p := range pfns {
		if d.mem[p] == nil {
			types[i] = hypercall.PageTypeXTab
		} else {
			types[i] = hypercall.PageTypeNone
		}
	}
	return nil
}

type testMap struct{ pages [][]byte }

func (m testMap) Page(i int) ([]byte, error) {
	if m.pages[i] == nil {
		return nil, fmt.Errorf("test domain: page %d not populated", i)
	}
	return m.pages[i], nil
}
func (m testMap) Unmap() error { return nil }

func (d *testDomain) MapPages(pfns []uint64) (migrate.PageMap, error) {
	d.call()
	m := testMap{pages: make([][]byte, len(pfns))}
	for i, p := range pfns {
		m.pages[i] = d.mem[p]
	}
	return m, nil
}

func (d *testDomain) HVMContext() ([]byte, error) {
	d.call()
	return bytes.Repeat([]byte{0xc7}, 1024), nil
}
func (d *testDomain) HVMParam(idx uint32) (uint64, error) {
	d.call()
	switch idx {
	case hypercall.HVMParamStorePFN:
		return d.maxgpfn - 1, nil
	case hypercall.HVMParamConsolePFN:
		return d.maxgpfn, nil
	}
	return 0, nil
}
func (d *testDomain) CPUPolicy() ([]byte, []byte, error) {
	d.call()
	return bytes.Repeat([]byte{0x11}, 24*2), bytes.Repeat([]byte{0x22}, 16), nil
}
func (d *testDomain) TSCInfo() (hypercall.TSCInfo, error) {
	d.call()
	return hypercall.TSCInfo{KHz: 2000000, Incarnation: 1}, nil
}
func (d *testDomain) Destroy() error { d.call(); d.destroyed = true; return nil }

// testTarget is a Target that keeps the image it was given. Like
// migrate.Restore it "creates" a domain when the stream starts and
// destroys it if the stream fails.
type testTarget struct {
	mu         sync.Mutex
	names      map[uint32]string
	images     [][]byte
	created    int
	destroyed  int
	running    []string
	restoreErr error // Restore fails with this after reading the image
	unpauseErr error
	// reading, if set, is closed when a Restore has read its first bytes.
	reading chan struct{}
	read    atomic.Int64 // image bytes Restore has read so far
}

// readCounter counts what a Restore reads.
type readCounter struct {
	r io.Reader
	n *atomic.Int64
}

func (c readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type testIncoming struct {
	t       *testTarget
	name    string
	paused  bool
	removed bool
}

func (i *testIncoming) Rename(name string) error { i.name = name; return nil }
func (i *testIncoming) Unpause() error {
	if i.t.unpauseErr != nil {
		return i.t.unpauseErr
	}
	i.paused = false
	i.t.mu.Lock()
	i.t.running = append(i.t.running, i.name)
	i.t.mu.Unlock()
	return nil
}
func (i *testIncoming) Destroy() error {
	i.removed = true
	i.t.mu.Lock()
	i.t.destroyed++
	i.t.mu.Unlock()
	return nil
}

func (t *testTarget) DomainNames() (map[uint32]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := map[uint32]string{0: "Domain-0"}
	for k, v := range t.names {
		m[k] = v
	}
	return m, nil
}

func (t *testTarget) Restore(ctx context.Context, r io.Reader, opt migrate.RestoreOptions) (Incoming, error) {
	t.mu.Lock()
	t.created++
	t.mu.Unlock()
	var buf bytes.Buffer
	r = readCounter{r, &t.read}
	first := make([]byte, 1)
	n, err := io.ReadFull(r, first)
	buf.Write(first[:n])
	if t.reading != nil {
		close(t.reading)
	}
	if err == nil {
		_, err = io.Copy(&buf, r)
	}
	if err == nil {
		err = t.restoreErr
	}
	if err != nil {
		t.mu.Lock()
		t.destroyed++
		t.mu.Unlock()
		return nil, err
	}
	t.mu.Lock()
	t.images = append(t.images, buf.Bytes())
	t.mu.Unlock()
	return &testIncoming{t: t, name: opt.Name + opt.Suffix, paused: opt.Paused}, nil
}

// cutConn closes its connection once armed and budget more bytes have
// been written: a link cut at a chosen point.
type cutConn struct {
	net.Conn
	armed  atomic.Bool
	budget atomic.Int64
	cut    atomic.Bool
}

func (c *cutConn) arm(budget int64) { c.budget.Store(budget); c.armed.Store(true) }

func (c *cutConn) Write(p []byte) (int, error) {
	if c.armed.Load() {
		if c.budget.Add(-int64(len(p))) < 0 {
			c.cut.Store(true)
			c.Conn.Close()
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(p)
}
