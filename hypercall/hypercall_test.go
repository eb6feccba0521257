package hypercall

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"unsafe"
)

// fakeAlloc hands out Go memory and counts.
type fakeAlloc struct {
	mu            sync.Mutex
	allocs, frees int
	pinned        bool
	fail          bool
	blocks        [][]byte
}

// mem finds the allocated memory at a hypercall address, as the hypervisor
// would through the guest handle.
func (f *fakeAlloc) mem(addr uint64, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.blocks {
		start := uint64(uintptr(unsafe.Pointer(&b[0])))
		if addr >= start && addr+uint64(n) <= start+uint64(len(b)) {
			off := int(addr - start)
			return b[off : off+n]
		}
	}
	panic("fake hypervisor: address outside hypercall buffers (EFAULT)")
}

func (f *fakeAlloc) Alloc(n int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, syscall.ENOMEM
	}
	f.allocs++
	b := make([]byte, n)
	f.blocks = append(f.blocks, b)
	return b, nil
}

func (f *fakeAlloc) Free([]byte) error {
	f.mu.Lock()
	f.frees++
	f.mu.Unlock()
	return nil
}

func (f *fakeAlloc) Pinned() bool { return f.pinned }

func TestPoolReusesBySizeClass(t *testing.T) {
	a := &fakeAlloc{}
	p := NewPool(a)
	b1, _ := p.Get(100, In)
	b1.Free()
	b2, _ := p.Get(4000, In) // same 4 KiB class
	if a.allocs != 1 {
		t.Fatalf("%d allocations, want 1 (reuse)", a.allocs)
	}
	b3, _ := p.Get(5000, In) // 8 KiB class
	if a.allocs != 2 || len(b3.b.mem) != 8192 || len(b3.Bytes()) != 5000 {
		t.Fatalf("allocs %d, block %d, len %d", a.allocs, len(b3.b.mem), len(b3.Bytes()))
	}
	big, _ := p.Get(5<<20, Out) // beyond the classes: freed directly
	big.Free()
	if a.frees != 1 {
		t.Fatalf("big buffer not freed directly (%d frees)", a.frees)
	}
	b2.Free()
	b3.Free()
	if err := p.Close(); err != nil || a.frees != 3 || p.Allocated() != 0 {
		t.Fatalf("Close: %v, frees %d, allocated %d", err, a.frees, p.Allocated())
	}
	if _, err := p.Get(1, In); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

func TestDirections(t *testing.T) {
	p := NewPool(&fakeAlloc{})
	b, _ := p.Get(64, In)
	copy(b.Bytes(), "secret")
	mem := b.b.mem
	b.Free() // In: scrubbed on the way back
	if string(mem[:6]) == "secret" {
		t.Fatal("In buffer not scrubbed when freed")
	}
	o, _ := p.Get(64, InOut)
	copy(o.Bytes(), "stale")
	o.Free()
	o2, _ := p.Get(64, Out) // Out: zeroed on the way out
	if o2.b != o.b || string(o2.Bytes()[:5]) != "\x00\x00\x00\x00\x00" {
		t.Fatal("Out buffer handed out with stale data")
	}
	o2.Free()
}

func TestLeakDetection(t *testing.T) {
	p := NewPool(&fakeAlloc{})
	b, _ := Get[uint64](p, 10, Out)
	if p.Outstanding() != 1 {
		t.Fatal("outstanding not counted")
	}
	if err := p.Close(); !errors.Is(err, ErrLeak) {
		t.Fatalf("Close with a buffer out: %v", err)
	}
	b.Free()
	if p.Outstanding() != 0 {
		t.Fatal("late Free not counted")
	}
}

func TestTypedBuffer(t *testing.T) {
	p := NewPool(&fakeAlloc{})
	defer p.Close()
	type pair struct{ A, B uint32 }
	b, err := Get[pair](p, 3, InOut)
	if err != nil {
		t.Fatal(err)
	}
	s := b.Slice()
	s[2] = pair{7, 9}
	if len(s) != 3 || le.Uint32(b.Bytes()[16:]) != 7 || le.Uint32(b.Bytes()[20:]) != 9 || len(b.Bytes()) != 24 {
		t.Fatalf("typed view wrong: %v % x", s, b.Bytes())
	}
	b.Free()
}

func TestAllocFailure(t *testing.T) {
	p := NewPool(&fakeAlloc{fail: true})
	if _, err := p.Get(10, In); !errors.Is(err, syscall.ENOMEM) || p.Outstanding() != 0 {
		t.Fatalf("err %v, outstanding %d", err, p.Outstanding())
	}
}

// faultyCaller fails the first n calls with EFAULT.
type faultyCaller struct{ n, calls int }

func (f *faultyCaller) Hypercall(op uint64, args [5]uint64) (uint64, error) {
	f.calls++
	if f.calls <= f.n {
		return 0, syscall.EFAULT
	}
	return 42, nil
}

func TestEFAULTRetryPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pinned    bool
		safe      Safety
		faults    int
		wantCalls int
		wantErr   bool
	}{
		{"safe, mlocked memory: retried", false, Safe, 2, 3, false},
		{"unsafe, mlocked memory: not retried", false, Unsafe, 2, 1, true},
		{"safe, pinned memory: EFAULT is real", true, Safe, 2, 1, true},
		{"safe, bounded", false, Safe, 100, MaxFaultRetries + 1, true},
	} {
		c := &faultyCaller{n: tc.faults}
		x := New(c, NewPool(&fakeAlloc{pinned: tc.pinned}))
		r, err := x.Call(OpXenVersion, [5]uint64{}, tc.safe)
		if c.calls != tc.wantCalls || (err != nil) != tc.wantErr || (err == nil && r != 42) {
			t.Errorf("%s: %d calls, err %v", tc.name, c.calls, err)
		}
		if err != nil && !errors.Is(err, syscall.EFAULT) {
			t.Errorf("%s: err %v, want EFAULT", tc.name, err)
		}
	}
}

// fakeXen answers domctls and sysctls the way Xen 4.17 lays them out,
// writing through the buffer addresses it is given.
type fakeXen struct {
	a       *fakeAlloc
	domains map[uint32]uint32 // domid -> flags
	paused  map[uint32]bool
	version uint32
}

func (f *fakeXen) Hypercall(op uint64, args [5]uint64) (uint64, error) {
	switch op {
	case OpXenVersion:
		return 4<<16 | 17, nil
	case OpDomctl:
		m := f.a.mem(args[0], domctlSize)
		if le.Uint32(m[4:]) != f.version {
			return 0, syscall.EACCES
		}
		dom := uint32(le.Uint16(m[8:]))
		flags, ok := f.domains[dom]
		if !ok {
			return 0, syscall.ESRCH
		}
		u := m[domctlUnion:]
		switch le.Uint32(m[0:]) {
		case domctlGetDomainInfo:
			if f.paused[dom] {
				flags |= DomainPaused
			}
			le.PutUint16(u[gdiDomain:], uint16(dom))
			le.PutUint32(u[gdiFlags:], flags)
			le.PutUint64(u[gdiTotPages:], 32768)
			le.PutUint32(u[gdiMaxVCPUID:], 1)
			le.PutUint32(u[gdiOnlineVCPUs:], 2)
		case domctlPauseDomain:
			f.paused[dom] = true
		case domctlUnpauseDomain:
			f.paused[dom] = false
		default:
			return 0, syscall.ENOSYS
		}
		return 0, nil
	case OpSysctl:
		m := f.a.mem(args[0], sysctlSize)
		u := m[sysctlUnion:]
		max := le.Uint32(u[gdilMaxDomains:])
		out := f.a.mem(le.Uint64(u[gdilBuffer:]), int(max)*gdiSize)
		n := 0
		for d := uint32(le.Uint16(u[gdilFirstDomain:])); d < 10 && n < int(max); d++ {
			if flags, ok := f.domains[d]; ok {
				le.PutUint16(out[n*gdiSize:], uint16(d))
				le.PutUint32(out[n*gdiSize+gdiFlags:], flags)
				n++
			}
		}
		le.PutUint32(u[gdilNumDomains:], uint32(n))
		return 0, nil
	}
	return 0, syscall.ENOSYS
}

func TestTypedHypercallsOnFake(t *testing.T) {
	a := &fakeAlloc{pinned: true}
	f := &fakeXen{a: a, domains: map[uint32]uint32{0: DomainRunning, 3: DomainBlocked | DomainHVM | DomainHAP}, paused: map[uint32]bool{}, version: DomctlInterfaceVersion}
	x := New(f, NewPool(a))
	defer func() {
		if err := x.Close(); err != nil {
			t.Fatal(err) // a leaked buffer in a wrapper shows up here
		}
	}()
	if ma, mi, err := x.Version(); ma != 4 || mi != 17 || err != nil {
		t.Fatalf("Version = %d.%d %v", ma, mi, err)
	}
	d, err := x.GetDomainInfo(3)
	if err != nil || d.TotPages != 32768 || d.OnlineVCPUs != 2 || d.State() != "-b----" {
		t.Fatalf("GetDomainInfo = %+v %v", d, err)
	}
	if err := x.PauseDomain(3); err != nil {
		t.Fatal(err)
	}
	if d, _ := x.GetDomainInfo(3); d.State() != "-bp---" {
		t.Fatalf("after pause: %s", d.State())
	}
	x.UnpauseDomain(3)
	list, err := x.GetDomainInfoList(0, 8)
	if err != nil || len(list) != 2 || list[1].Domain != 3 {
		t.Fatalf("GetDomainInfoList = %+v %v", list, err)
	}
	var he *Error
	if _, err := x.GetDomainInfo(9); !errors.As(err, &he) || !errors.Is(err, syscall.ESRCH) || he.Domain != 9 {
		t.Fatalf("missing domain: %v", err)
	}
	f.version = 0x16
	if _, err := x.GetDomainInfo(0); !errors.Is(err, ErrInterfaceVersion) {
		t.Fatalf("version mismatch: %v", err)
	}
}

func TestDirtyBitmap(t *testing.T) {
	d := NewDirtyBitmap(100)
	for _, p := range []uint64{0, 63, 64, 99, 300} {
		d.Set(p)
	}
	var got []uint64
	d.ForEach(func(p uint64) bool { got = append(got, p); return true })
	if d.Count() != 5 || len(got) != 5 || got[4] != 300 || !d.Test(64) || d.Test(65) {
		t.Fatalf("bitmap %v count %d", got, d.Count())
	}
	o := NewDirtyBitmap(10)
	o.Set(5)
	d.Or(o)
	if !d.Test(5) {
		t.Fatal("Or lost a frame")
	}
}

// BenchmarkPoolGetFree measures the hot path: 0 allocations once warm.
func BenchmarkPoolGetFree(b *testing.B) {
	p := NewPool(&fakeAlloc{pinned: true})
	defer p.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, err := Get[uint64](p, 512, Out)
		if err != nil {
			b.Fatal(err)
		}
		buf.Slice()[0] = 1
		buf.Free()
	}
}

func TestPoolHotPathAllocs(t *testing.T) {
	p := NewPool(&fakeAlloc{})
	defer p.Close()
	warm, _ := p.Get(4096, Out)
	warm.Free()
	if n := testing.AllocsPerRun(100, func() {
		b, _ := Get[uint32](p, 100, InOut)
		b.Free()
	}); n != 0 {
		t.Fatalf("%v allocations per Get/Free", n)
	}
}
