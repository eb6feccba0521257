// Package ring is the Xen shared I/O ring of xen/include/public/io/ring.h
// over a []byte: the shared page(s) that a frontend grants and a backend
// maps. It knows the header (producer and event indices), the ring size
// rule, and the notification rules, for both ends; the entries are opaque
// fixed-size slots whose layout belongs to the device protocol (package
// blkif for block devices).
//
// The indices are free-running 32-bit counters (RING_IDX); a slot is the
// index modulo the ring size, a power of two, so no index a peer writes can
// address outside the ring. The indices in the shared page are read and
// written with atomic operations, which are also the memory barriers the C
// macros place (xen_mb, xen_wmb). A backend copies each request out of the
// shared page once and decodes the copy: the frontend may change the slot
// at any time.
package ring

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Layout of the shared ring header (struct *_sring): the four indices, a
// 4-byte per-protocol private area and padding, then the entries.
const (
	offReqProd  = 0
	offReqEvent = 4
	offRspProd  = 8
	offRspEvent = 12
	// HeaderSize is offsetof(struct *_sring, ring): where the entries start.
	HeaderSize = 64
)

// Size returns the number of entries of a ring of entrySize-byte entries in
// a shared area of pageLen bytes: the largest power of two that fits
// (__RING_SIZE), 0 when none does.
func Size(pageLen, entrySize int) uint32 {
	if entrySize <= 0 || pageLen < HeaderSize+entrySize {
		return 0
	}
	n := uint32((pageLen - HeaderSize) / entrySize)
	for n&(n-1) != 0 {
		n &= n - 1
	}
	return n
}

// shared is the shared area.
type shared struct {
	mem   []byte
	entry int
	size  uint32
}

func newShared(mem []byte, entrySize int) (shared, error) {
	n := Size(len(mem), entrySize)
	if n == 0 {
		return shared{}, fmt.Errorf("ring: %d bytes hold no %d-byte entry after the %d-byte header", len(mem), entrySize, HeaderSize)
	}
	if uintptr(unsafe.Pointer(&mem[0]))%4 != 0 {
		return shared{}, fmt.Errorf("ring: shared area is not 4-byte aligned")
	}
	return shared{mem, entrySize, n}, nil
}

func (s *shared) idx(off int) *uint32 { return (*uint32)(unsafe.Pointer(&s.mem[off])) }
func (s *shared) load(off int) uint32 { return atomic.LoadUint32(s.idx(off)) }
func (s *shared) store(off int, v uint32) {
	atomic.StoreUint32(s.idx(off), v)
}

// slot returns the entry of free-running index i.
func (s *shared) slot(i uint32) []byte {
	o := HeaderSize + int(i&(s.size-1))*s.entry
	return s.mem[o : o+s.entry : o+s.entry]
}

// SlotOffset returns the byte offset in the shared area of the entry of
// free-running index i, for error reports.
func (s *shared) SlotOffset(i uint32) int64 {
	return int64(HeaderSize + int(i&(s.size-1))*s.entry)
}

// Init initialises a shared area as a frontend does before granting it
// (SHARED_RING_INIT): producers 0, event indices 1, header padding zero.
func Init(mem []byte) {
	clear(mem[:HeaderSize])
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&mem[offReqEvent])), 1)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&mem[offRspEvent])), 1)
}

// notifyNeeded is the rule of RING_PUSH_*_AND_CHECK_NOTIFY: the peer asked
// to be woken at event index ev; a push from old to new wakes it when ev
// lies in (old, new].
func notifyNeeded(old, new, ev uint32) bool { return new-ev < new-old }

// A Back is the backend's end of a ring: it consumes requests and produces
// responses. Not safe for concurrent use.
type Back struct {
	s shared
	// ReqCons is the next request to consume; RspProdPvt the next response
	// slot, not yet visible to the frontend until PushResponses.
	ReqCons, RspProdPvt uint32
}

// NewBack attaches to a shared area that the frontend initialised
// (BACK_RING_ATTACH at index 0).
func NewBack(mem []byte, entrySize int) (*Back, error) {
	s, err := newShared(mem, entrySize)
	if err != nil {
		return nil, err
	}
	return &Back{s: s}, nil
}

// Size returns the number of entries.
func (b *Back) Size() uint32 { return b.s.size }

// SlotOffset returns the byte offset of the slot of index i.
func (b *Back) SlotOffset(i uint32) int64 { return b.s.SlotOffset(i) }

// Unconsumed returns how many requests may be consumed now
// (RING_HAS_UNCONSUMED_REQUESTS): what the frontend produced, capped by the
// response slots still free, so a frontend that writes a wild req_prod
// cannot make the backend consume more than a ring's worth.
func (b *Back) Unconsumed() uint32 {
	req := b.s.load(offReqProd) - b.ReqCons
	rsp := b.s.size - (b.ReqCons - b.RspProdPvt)
	return min(req, rsp)
}

// NextRequest copies the request at ReqCons into dst (entrySize bytes) and
// advances ReqCons. Call it only when Unconsumed is non-zero.
func (b *Back) NextRequest(dst []byte) []byte {
	dst = append(dst[:0], b.s.slot(b.ReqCons)...)
	b.ReqCons++
	return dst
}

// Response returns the slot for the next response (at RspProdPvt) to be
// written in place, then CommitResponse.
func (b *Back) Response() []byte { return b.s.slot(b.RspProdPvt) }

// CommitResponse advances RspProdPvt past the slot Response returned.
func (b *Back) CommitResponse() { b.RspProdPvt++ }

// PushResponses makes the private responses visible (rsp_prod) and reports
// whether the frontend asked to be notified of them
// (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
func (b *Back) PushResponses() (notify bool) {
	old := b.s.load(offRspProd)
	b.s.store(offRspProd, b.RspProdPvt)
	return notifyNeeded(old, b.RspProdPvt, b.s.load(offRspEvent))
}

// FinalCheckForRequests reports whether requests are waiting; when none
// are it first asks the frontend to notify at the next one (req_event) and
// looks again, closing the race with a request produced meanwhile
// (RING_FINAL_CHECK_FOR_REQUESTS).
func (b *Back) FinalCheckForRequests() bool {
	if b.Unconsumed() > 0 {
		return true
	}
	b.s.store(offReqEvent, b.ReqCons+1)
	return b.Unconsumed() > 0
}

// A Front is the frontend's end of a ring: it produces requests and
// consumes responses. Go frontends are for tests and tools (a backend's
// conformance suite, a hostile peer); not safe for concurrent use.
type Front struct {
	s shared
	// ReqProdPvt is the next request slot, not yet visible to the backend
	// until PushRequests; RspCons the next response to consume.
	ReqProdPvt, RspCons uint32
}

// NewFront initialises mem (Init) and returns the frontend's end.
func NewFront(mem []byte, entrySize int) (*Front, error) {
	s, err := newShared(mem, entrySize)
	if err != nil {
		return nil, err
	}
	Init(mem)
	return &Front{s: s}, nil
}

// Size returns the number of entries.
func (f *Front) Size() uint32 { return f.s.size }

// Free returns how many request slots are free (RING_FREE_REQUESTS).
func (f *Front) Free() uint32 { return f.s.size - (f.ReqProdPvt - f.RspCons) }

// Request returns the slot for the next request, to be written in place,
// then CommitRequest.
func (f *Front) Request() []byte { return f.s.slot(f.ReqProdPvt) }

// CommitRequest advances ReqProdPvt past the slot Request returned.
func (f *Front) CommitRequest() { f.ReqProdPvt++ }

// PushRequests makes the private requests visible (req_prod) and reports
// whether the backend asked to be notified (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY).
func (f *Front) PushRequests() (notify bool) {
	old := f.s.load(offReqProd)
	f.s.store(offReqProd, f.ReqProdPvt)
	return notifyNeeded(old, f.ReqProdPvt, f.s.load(offReqEvent))
}

// SetReqProd writes req_prod directly: a hostile or buggy frontend in
// tests.
func (f *Front) SetReqProd(v uint32) { f.s.store(offReqProd, v) }

// Unconsumed returns how many responses wait (RING_HAS_UNCONSUMED_RESPONSES).
func (f *Front) Unconsumed() uint32 { return f.s.load(offRspProd) - f.RspCons }

// NextResponse copies the response at RspCons into dst and advances RspCons.
func (f *Front) NextResponse(dst []byte) []byte {
	dst = append(dst[:0], f.s.slot(f.RspCons)...)
	f.RspCons++
	return dst
}

// FinalCheckForResponses is FinalCheckForRequests for the frontend
// (RING_FINAL_CHECK_FOR_RESPONSES).
func (f *Front) FinalCheckForResponses() bool {
	if f.Unconsumed() > 0 {
		return true
	}
	f.s.store(offRspEvent, f.RspCons+1)
	return f.Unconsumed() > 0
}
