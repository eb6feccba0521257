package grant

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// A Grant names one granted page: the granting domain and the reference.
type Grant struct {
	Domid uint32
	Ref   Ref
}

// A Frame is a page of a guest: its domain and guest frame number.
type Frame struct {
	Domid uint32
	GFN   uint64
}

// A Request asks for a mapping of grants.
type Request struct {
	Grants     []Grant
	Writable   bool
	Persistent bool   // kept across requests (blkback's persistent grants)
	Holder     string // who holds it, for diagnostics
	// Frames are the guest frames behind Grants when the caller knows them
	// (from the ring request or the guest's grant table); otherwise the
	// Tracker asks its Resolver.
	Frames []uint64
}

// A Mapping is what a Mapper returns: an opaque handle and the memory.
type Mapping struct {
	Handle uint64 // gntdev's index, or a fake's id
	Mem    []byte
}

// A Mapper maps and unmaps grants and copies through them: gntdev on Linux
// (Device), a fake in tests.
type Mapper interface {
	Map(grants []Grant, writable bool) (Mapping, error)
	Unmap(m Mapping) error
}

// A Resolver finds the guest frame behind a grant, e.g. by reading the
// granting guest's grant table.
type Resolver func(g Grant) (uint64, error)

// ErrQuiesced reports a mapping or copy refused because the Tracker is
// quiesced.
var ErrQuiesced = errors.New("grant: tracker quiesced")

// ErrUnknownMapping reports an Unmap of a mapping the Tracker does not hold.
var ErrUnknownMapping = errors.New("grant: mapping not tracked")

// A Tracked is one mapping held through the Tracker.
type Tracked struct {
	ID      uint64
	Request Request
	Mapping Mapping
	Frames  []uint64 // resolved frames, one per grant (0 when unknown)
}

// A Tracker is the one door to grant mappings: it records every mapping
// and can quiesce. Safe for concurrent use.
type Tracker struct {
	m        Mapper
	resolve  Resolver
	mu       sync.Mutex
	cond     *sync.Cond
	held     map[uint64]*Tracked
	next     uint64
	inflight int
	quiesced bool
}

// NewTracker returns a Tracker over m; resolve may be nil.
func NewTracker(m Mapper, resolve Resolver) *Tracker {
	t := &Tracker{m: m, resolve: resolve, held: map[uint64]*Tracked{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

func (t *Tracker) enter() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.quiesced {
		return ErrQuiesced
	}
	t.inflight++
	return nil
}

func (t *Tracker) leave() {
	t.mu.Lock()
	t.inflight--
	t.cond.Broadcast()
	t.mu.Unlock()
}

// Map maps the grants of r and records the mapping.
func (t *Tracker) Map(r Request) (*Tracked, error) {
	if len(r.Grants) == 0 {
		return nil, errors.New("grant: Map of no grants")
	}
	if err := t.enter(); err != nil {
		return nil, err
	}
	defer t.leave()
	frames := make([]uint64, len(r.Grants))
	for i, g := range r.Grants {
		switch {
		case i < len(r.Frames):
			frames[i] = r.Frames[i]
		case t.resolve != nil:
			f, err := t.resolve(g)
			if err != nil {
				return nil, fmt.Errorf("grant: resolving dom%d ref %d: %w", g.Domid, g.Ref, err)
			}
			frames[i] = f
		}
	}
	m, err := t.m.Map(r.Grants, r.Writable)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.next++
	tr := &Tracked{ID: t.next, Request: r, Mapping: m, Frames: frames}
	t.held[tr.ID] = tr
	t.mu.Unlock()
	return tr, nil
}

// Unmap unmaps a mapping made by Map (Xen marks its frames dirty then).
func (t *Tracker) Unmap(tr *Tracked) error {
	t.mu.Lock()
	if t.held[tr.ID] != tr {
		t.mu.Unlock()
		return ErrUnknownMapping
	}
	delete(t.held, tr.ID)
	t.mu.Unlock()
	return t.m.Unmap(tr.Mapping)
}

// Do runs fn (a grant copy, or any work through mappings) as an in-flight
// operation: refused while quiesced, waited for by Quiesce.
func (t *Tracker) Do(fn func() error) error {
	if err := t.enter(); err != nil {
		return err
	}
	defer t.leave()
	return fn()
}

// Held returns the mappings held now, by ID.
func (t *Tracker) Held() []*Tracked {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Tracked, 0, len(t.held))
	for _, tr := range t.held {
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Quiesce refuses new mappings and operations, waits (until ctx ends) for
// those in flight, unmaps everything held, and returns the guest frames
// that were mapped writable, sorted: the pages a save must send again.
// On a deadline it returns ctx's error with nothing unmapped; the Tracker
// stays quiesced until Resume.
func (t *Tracker) Quiesce(ctx context.Context) ([]Frame, error) {
	t.mu.Lock()
	t.quiesced = true
	stop := context.AfterFunc(ctx, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer stop()
	for t.inflight > 0 && ctx.Err() == nil {
		t.cond.Wait()
	}
	if t.inflight > 0 {
		n := t.inflight
		t.mu.Unlock()
		return nil, fmt.Errorf("grant: quiesce: %d operations still in flight: %w", n, ctx.Err())
	}
	held := t.held
	t.held = map[uint64]*Tracked{}
	t.mu.Unlock()

	// Frames unmapped before now were marked dirty by Xen at their unmap;
	// the ones still mapped are the ones the last pass would miss.
	set := map[Frame]bool{}
	var errs []error
	for _, tr := range held {
		if tr.Request.Writable {
			for i, f := range tr.Frames {
				set[Frame{tr.Request.Grants[i].Domid, f}] = true
			}
		}
		if err := t.m.Unmap(tr.Mapping); err != nil {
			errs = append(errs, fmt.Errorf("grant: unmapping %d grants of %q: %w", len(tr.Request.Grants), tr.Request.Holder, err))
		}
	}
	frames := make([]Frame, 0, len(set))
	for f := range set {
		frames = append(frames, f)
	}
	sort.Slice(frames, func(i, j int) bool {
		if frames[i].Domid != frames[j].Domid {
			return frames[i].Domid < frames[j].Domid
		}
		return frames[i].GFN < frames[j].GFN
	})
	return frames, errors.Join(errs...)
}

// Resume lets mappings and operations start again.
func (t *Tracker) Resume() {
	t.mu.Lock()
	t.quiesced = false
	t.mu.Unlock()
}

// A Bitmap is a dirty bitmap of a save loop (hypercall.DirtyBitmap has
// this method).
type Bitmap interface{ Set(pfn uint64) }

// MergeDirty marks the frames of domain dom in bm and returns how many it
// marked.
func MergeDirty(bm Bitmap, dom uint32, frames []Frame) int {
	n := 0
	for _, f := range frames {
		if f.Domid == dom {
			bm.Set(f.GFN)
			n++
		}
	}
	return n
}
