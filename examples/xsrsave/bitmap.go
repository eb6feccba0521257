package main

import "math/bits"

// Bitmap is a dirty-page bitmap in Xen's layout: bit p of the little-endian
// 64-bit word p/64 stands for guest frame p.
type Bitmap struct {
	Words []uint64
	Len   uint64 // number of frames covered
}

// NewBitmap returns an empty bitmap covering n frames.
func NewBitmap(n uint64) *Bitmap {
	return &Bitmap{Words: make([]uint64, (n+63)/64), Len: n}
}

// Set marks frame p.
func (b *Bitmap) Set(p uint64) {
	if p < b.Len {
		b.Words[p/64] |= 1 << (p % 64)
	}
}

// Test reports whether frame p is marked.
func (b *Bitmap) Test(p uint64) bool {
	return p < b.Len && b.Words[p/64]&(1<<(p%64)) != 0
}

// SetAll marks every frame.
func (b *Bitmap) SetAll() {
	for i := range b.Words {
		b.Words[i] = ^uint64(0)
	}
	b.trim()
}

// Clear unmarks every frame.
func (b *Bitmap) Clear() { clear(b.Words) }

// Or merges o into b.
func (b *Bitmap) Or(o *Bitmap) {
	for i := range b.Words {
		if i < len(o.Words) {
			b.Words[i] |= o.Words[i]
		}
	}
	b.trim()
}

// Count returns the number of marked frames.
func (b *Bitmap) Count() uint64 {
	var n int
	for _, w := range b.Words {
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}

// ForEach calls fn for every marked frame in ascending order, stopping at
// the first error.
func (b *Bitmap) ForEach(fn func(p uint64) error) error {
	for i, w := range b.Words {
		for w != 0 {
			j := bits.TrailingZeros64(w)
			w &= w - 1
			p := uint64(i)*64 + uint64(j)
			if p >= b.Len {
				return nil
			}
			if err := fn(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// trim clears the bits past Len in the last word.
func (b *Bitmap) trim() {
	if r := b.Len % 64; r != 0 && len(b.Words) > 0 {
		b.Words[len(b.Words)-1] &= (1 << r) - 1
	}
}
