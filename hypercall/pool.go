package hypercall

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"unsafe"
)

// An Allocator provides memory the hypervisor may read and write during a
// hypercall: privcmd.BufferDevice (pinned pages of /dev/xen/hypercall) or
// privcmd.LockedMemory (the mlock fallback).
type Allocator interface {
	Alloc(size int) ([]byte, error) // size is a multiple of 4096
	Free(b []byte) error
	Pinned() bool // pages never move (no EFAULT from page migration)
}

// A Direction says which way a buffer's contents travel.
type Direction uint8

// The directions. Out and InOut buffers are handed out zeroed, so Xen never
// sees stale data of an earlier user; In buffers are zeroed when they go
// back to the pool, so nothing the caller put there lingers in it.
const (
	In    Direction = 1 << iota // to Xen: filled by the caller before the call
	Out                         // from Xen: read by the caller after the call
	InOut = In | Out
)

// Size classes: 4 KiB to 4 MiB in powers of two; larger buffers are
// allocated and freed directly.
const (
	minClassShift = 12
	maxClassShift = 22
	numClasses    = maxClassShift - minClassShift + 1
)

// ErrLeak reports buffers not returned to the pool when it was closed.
var ErrLeak = errors.New("hypercall: buffers leaked")

// ErrPoolClosed reports a Get on a closed pool.
var ErrPoolClosed = errors.New("hypercall: pool closed")

// A Pool hands out hypercall buffers by size class and takes them back, so
// the hot path allocates nothing once warm. Safe for concurrent use.
type Pool struct {
	alloc Allocator

	mu          sync.Mutex
	free        [numClasses][]*block
	outstanding int
	closed      bool
	allocated   int // bytes obtained from the Allocator and still held
}

type block struct {
	mem   []byte
	class int // -1: outside the classes
}

// NewPool returns a Pool drawing memory from a.
func NewPool(a Allocator) *Pool { return &Pool{alloc: a} }

// Pinned reports whether the pool's memory is pinned by the kernel.
func (p *Pool) Pinned() bool { return p.alloc.Pinned() }

func class(size int) int {
	if size <= 1<<minClassShift {
		return 0
	}
	c := bits.Len(uint(size-1)) - minClassShift
	if c >= numClasses {
		return -1
	}
	return c
}

// A Buf is raw hypercall memory from a Pool.
type Buf struct {
	b   *block
	n   int
	dir Direction
	p   *Pool
}

// Get returns a buffer of at least size bytes for the direction.
func (p *Pool) Get(size int, dir Direction) (Buf, error) {
	if size <= 0 {
		size = 1
	}
	c := class(size)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return Buf{}, ErrPoolClosed
	}
	var b *block
	if c >= 0 {
		if l := p.free[c]; len(l) > 0 {
			b = l[len(l)-1]
			p.free[c] = l[:len(l)-1]
		}
	}
	p.outstanding++
	p.mu.Unlock()
	if b == nil {
		n := (size + 4095) &^ 4095
		if c >= 0 {
			n = 1 << (c + minClassShift)
		}
		mem, err := p.alloc.Alloc(n)
		if err != nil {
			p.mu.Lock()
			p.outstanding--
			p.mu.Unlock()
			return Buf{}, fmt.Errorf("hypercall: allocating %d bytes: %w", n, err)
		}
		b = &block{mem: mem, class: c}
		p.mu.Lock()
		p.allocated += n
		p.mu.Unlock()
	} else if dir&Out != 0 {
		clear(b.mem[:size])
	}
	return Buf{b: b, n: size, dir: dir, p: p}, nil
}

// Bytes returns the buffer's memory (len = the size asked for).
func (b Buf) Bytes() []byte { return b.b.mem[:b.n] }

// Addr returns the address to pass to the hypervisor.
func (b Buf) Addr() uint64 { return uint64(uintptr(unsafe.Pointer(&b.b.mem[0]))) }

// Direction returns the buffer's direction.
func (b Buf) Direction() Direction { return b.dir }

// Free returns the buffer to its pool. Using it afterwards is a bug.
func (b Buf) Free() {
	if b.b == nil {
		return
	}
	p := b.p
	if b.dir&In != 0 {
		clear(b.b.mem[:b.n])
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outstanding--
	if b.b.class < 0 || p.closed {
		p.allocated -= len(b.b.mem)
		p.alloc.Free(b.b.mem)
		return
	}
	p.free[b.b.class] = append(p.free[b.b.class], b.b)
}

// Outstanding returns how many buffers are out of the pool.
func (p *Pool) Outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outstanding
}

// Allocated returns how many bytes the pool holds from its Allocator.
func (p *Pool) Allocated() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocated
}

// Close frees the pooled memory. It reports ErrLeak (with the count) when
// buffers are still out; they are freed when returned.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c := range p.free {
		for _, b := range p.free[c] {
			p.allocated -= len(b.mem)
			p.alloc.Free(b.mem)
		}
		p.free[c] = nil
	}
	if p.outstanding > 0 {
		return fmt.Errorf("%w: %d still out", ErrLeak, p.outstanding)
	}
	return nil
}

// A Buffer is a typed hypercall buffer: n values of T in pool memory. T
// must be a plain-data type (integers, arrays and structs of them) laid out
// as Xen's C structure.
type Buffer[T any] struct {
	Buf
	n int
}

// Get returns a typed buffer of n values of T.
func Get[T any](p *Pool, n int, dir Direction) (Buffer[T], error) {
	var zero T
	b, err := p.Get(n*int(unsafe.Sizeof(zero)), dir)
	return Buffer[T]{b, n}, err
}

// Slice returns the values, aliasing the buffer.
func (b Buffer[T]) Slice() []T {
	if b.n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b.b.mem[0])), b.n)
}
