package grant

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// fakeMapper counts live mappings.
type fakeMapper struct {
	mu   sync.Mutex
	next uint64
	live map[uint64][]Grant
	fail bool
}

func newFake() *fakeMapper { return &fakeMapper{live: map[uint64][]Grant{}} }

func (f *fakeMapper) Map(g []Grant, writable bool) (Mapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return Mapping{}, errors.New("map failed")
	}
	f.next++
	f.live[f.next] = g
	return Mapping{Handle: f.next, Mem: make([]byte, 4096*len(g))}, nil
}

func (f *fakeMapper) Unmap(m Mapping) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.live[m.Handle]; !ok {
		return errors.New("double unmap")
	}
	delete(f.live, m.Handle)
	return nil
}

func (f *fakeMapper) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

// frameOf is the fake guest's grant table: ref r of domain d is frame 1000*d+r.
func frameOf(g Grant) (uint64, error) { return uint64(g.Domid)*1000 + uint64(g.Ref), nil }

// TestRapidQuiesce runs random concurrent map/unmap/copy operations, then
// Quiesce: the frames reported are exactly the writable ones still mapped,
// and nothing stays mapped.
func TestRapidQuiesce(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := newFake()
		tr := NewTracker(f, frameOf)
		workers := rapid.IntRange(1, 4).Draw(rt, "workers")
		type op struct {
			kind     int // 0 map, 1 unmap, 2 copy
			dom      uint32
			refs     []Ref
			writable bool
		}
		plans := make([][]op, workers)
		for w := range plans {
			for i := rapid.IntRange(0, 12).Draw(rt, "ops"); i > 0; i-- {
				plans[w] = append(plans[w], op{
					kind:     rapid.IntRange(0, 2).Draw(rt, "kind"),
					dom:      uint32(rapid.IntRange(1, 3).Draw(rt, "dom")),
					refs:     rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Ref { return Ref(rapid.IntRange(0, 20).Draw(t, "ref")) }), 1, 3).Draw(rt, "refs"),
					writable: rapid.Bool().Draw(rt, "writable"),
				})
			}
		}
		var wg sync.WaitGroup
		for _, plan := range plans {
			wg.Add(1)
			go func(plan []op) {
				defer wg.Done()
				var mine []*Tracked
				for _, o := range plan {
					switch o.kind {
					case 0:
						var gs []Grant
						for _, r := range o.refs {
							gs = append(gs, Grant{o.dom, r})
						}
						if m, err := tr.Map(Request{Grants: gs, Writable: o.writable, Holder: "test"}); err == nil {
							mine = append(mine, m)
						}
					case 1:
						if len(mine) > 0 {
							tr.Unmap(mine[0])
							mine = mine[1:]
						}
					case 2:
						tr.Do(func() error { time.Sleep(time.Microsecond); return nil })
					}
				}
			}(plan)
		}
		wg.Wait()
		want := map[Frame]bool{}
		for _, h := range tr.Held() {
			if h.Request.Writable {
				for _, g := range h.Request.Grants {
					fr, _ := frameOf(g)
					want[Frame{g.Domid, fr}] = true
				}
			}
		}
		got, err := tr.Quiesce(context.Background())
		if err != nil {
			rt.Fatal(err)
		}
		if len(got) != len(want) {
			rt.Fatalf("Quiesce reported %d frames, want %d", len(got), len(want))
		}
		for _, fr := range got {
			if !want[fr] {
				rt.Fatalf("frame %+v reported but not writable-mapped", fr)
			}
		}
		if f.count() != 0 || len(tr.Held()) != 0 {
			rt.Fatalf("%d mappings left after Quiesce", f.count())
		}
		if _, err := tr.Map(Request{Grants: []Grant{{1, 1}}}); !errors.Is(err, ErrQuiesced) {
			rt.Fatalf("Map while quiesced: %v", err)
		}
		tr.Resume()
		if _, err := tr.Map(Request{Grants: []Grant{{1, 1}}}); err != nil {
			rt.Fatalf("Map after Resume: %v", err)
		}
	})
}

// TestQuiesceWaitsForInFlight checks that Quiesce waits for a running copy
// and gives up at its deadline without unmapping.
func TestQuiesceWaitsForInFlight(t *testing.T) {
	f := newFake()
	tr := NewTracker(f, frameOf)
	tr.Map(Request{Grants: []Grant{{2, 5}}, Writable: true})
	release := make(chan struct{})
	started := make(chan struct{})
	go tr.Do(func() error { close(started); <-release; return nil })
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := tr.Quiesce(ctx); !errors.Is(err, context.DeadlineExceeded) || f.count() != 1 {
		t.Fatalf("Quiesce with a copy in flight: %v, %d mapped", err, f.count())
	}
	close(release)
	frames, err := tr.Quiesce(context.Background())
	if err != nil || len(frames) != 1 || frames[0] != (Frame{2, 2005}) {
		t.Fatalf("frames %v, %v", frames, err)
	}
	if err := tr.Do(func() error { return nil }); !errors.Is(err, ErrQuiesced) {
		t.Fatalf("Do while quiesced: %v", err)
	}
}

type bits map[uint64]bool

func (b bits) Set(p uint64) { b[p] = true }

func TestMergeDirty(t *testing.T) {
	b := bits{}
	if n := MergeDirty(b, 3, []Frame{{3, 10}, {4, 11}, {3, 12}}); n != 2 || !b[10] || !b[12] || b[11] {
		t.Fatalf("merged %d: %v", n, b)
	}
}

func TestUnmapUnknown(t *testing.T) {
	tr := NewTracker(newFake(), nil)
	m, _ := tr.Map(Request{Grants: []Grant{{1, 1}}, Frames: []uint64{77}})
	if m.Frames[0] != 77 {
		t.Fatalf("caller's frame not kept: %v", m.Frames)
	}
	tr.Unmap(m)
	if err := tr.Unmap(m); !errors.Is(err, ErrUnknownMapping) {
		t.Fatalf("double Unmap: %v", err)
	}
}

func TestEntryCodecs(t *testing.T) {
	v1 := []EntryV1{{TypePermitAccess | FlagReadonly, 0, 0x1234}, {TypePermitAccess | FlagWriting, 7, 0xfffff}}
	var b []byte
	for _, e := range v1 {
		b = AppendV1(b, e)
	}
	got := DecodeV1(b)
	if len(got) != 2 || got[1] != v1[1] || !got[1].Active() || got[0].Active() {
		t.Fatalf("v1 %v", got)
	}
	v2 := []EntryV2{
		{Flags: TypePermitAccess, Domid: 1, Frame: 1 << 40},
		{Flags: TypePermitAccess | FlagSubPage, Domid: 2, PageOff: 512, Length: 1024, Frame: 99},
		{Flags: TypeTransitive, Domid: 3, TransDomid: 4, TransRef: 8},
	}
	b = nil
	for _, e := range v2 {
		b = AppendV2(b, e)
	}
	for i, e := range DecodeV2(b) {
		e.Raw = [12]byte{}
		if e != v2[i] {
			t.Fatalf("v2[%d] = %+v, want %+v", i, e, v2[i])
		}
	}
	if s := FlagsString(TypePermitAccess | FlagReadonly | FlagReading); s != "permit_access|readonly|reading" {
		t.Fatal(s)
	}
}

func FuzzDecodeTable(f *testing.F) {
	f.Add(AppendV1(nil, EntryV1{1, 2, 3}))
	f.Add(AppendV2(nil, EntryV2{Flags: TypeTransitive, TransRef: 5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range DecodeV1(b) {
			if got := DecodeV1(AppendV1(nil, e))[0]; got != e {
				t.Fatalf("v1 round trip %+v %+v", e, got)
			}
		}
		for _, e := range DecodeV2(b) {
			_ = e
			_ = FlagsString(e.Flags)
		}
	})
}
