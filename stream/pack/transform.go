package pack

import (
	"bytes"
	"encoding/binary"
)

// A transform is applied to a page before compression and undone after
// decompression; page blocks record the one used for each page. Both are
// bijections on 4 KiB, so a page that gains nothing is merely not helped.
const (
	// xformNone stores the page as it is.
	xformNone = 0
	// xformBranch rewrites the 32-bit displacement of x86 CALL/JMP rel32
	// (opcodes E8/E9) as a target relative to the start of the page store,
	// so that calls to one function from many places become one repeated
	// byte string (the branch converter of xz/7-Zip, for guest kernel text).
	xformBranch = 1
	// xformTable replaces each 64-bit word by its difference from the word
	// before: page-table entries of a PV guest (PFNs in ascending runs with
	// the same flags) become mostly one repeated value.
	xformTable = 2
)

// xformFor chooses the transform of a page: page tables (by their libxc
// type, or, for the page tables of HVM guests and other arrays of ascending
// numbers such as a PV guest's P2M, by their contents) are delta-coded,
// everything else gets the branch converter.
func xformFor(pageTable bool, p []byte) byte {
	if pageTable || looksLikeTable(p) {
		return xformTable
	}
	return xformBranch
}

// looksLikeTable reports whether at least half of the page's 64-bit words
// differ from the word before by a small non-zero amount (below 2^16 either
// way): measured on a real PV image, such pages shrink by a third or more
// when delta-coded, and code or text pages do not qualify.
func looksLikeTable(p []byte) bool {
	const lim, need = 1 << 16, pageSize / 8 / 2
	n, prev := 0, binary.LittleEndian.Uint64(p)
	for i := 8; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		if d := v - prev; d != 0 && (d < lim || -d < lim) {
			if n++; n >= need {
				return true
			}
		} else if n+(len(p)-i)/8-1 < need {
			return false // even the words left could not make it
		}
		prev = v
	}
	return false
}

// applyXform writes page src transformed into dst (the same slice or one
// that does not overlap it); pos is the page's position in the store of
// unique pages ((id-1)*4096), which the branch converter needs.
func applyXform(x byte, dst, src []byte, pos uint32) {
	switch x {
	case xformBranch:
		copy(dst, src)
		branch(dst, pos, true)
	case xformTable:
		for i := len(src) - 8; i >= 8; i -= 8 {
			binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])-binary.LittleEndian.Uint64(src[i-8:]))
		}
		copy(dst[:min(len(dst), 8)], src)
	default:
		copy(dst, src)
	}
}

// undoXform reverses applyXform.
func undoXform(x byte, p []byte, pos uint32) {
	switch x {
	case xformBranch:
		branch(p, pos, false)
	case xformTable:
		for i := 8; i+8 <= len(p); i += 8 {
			binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])+binary.LittleEndian.Uint64(p[i-8:]))
		}
	}
}

// branch converts (enc) or restores the rel32 operands of E8/E9 opcodes in
// p. A candidate is an E8/E9 byte whose operand lies within p and whose top
// byte is 0x00 or 0xFF (a displacement within ±16 MiB); the operand is
// rewritten modulo 2^25 and sign-extended, so its top byte stays 0x00 or
// 0xFF. After any E8/E9 byte the scan skips its four operand bytes whether
// or not it converted them: the decisions then depend only on bytes the
// conversion never changes, and the decoder makes the same ones.
func branch(p []byte, pos uint32, enc bool) {
	end := len(p) - 4 // last opcode position + 1
	var e8, e9 nextByte
	for i := 0; i < end; {
		j := min(e8.at(p[:end], i, 0xe8), e9.at(p[:end], i, 0xe9))
		if j >= end {
			return
		}
		i = j
		if top := p[i+4]; top == 0 || top == 0xff {
			v := binary.LittleEndian.Uint32(p[i+1:])
			at := pos + uint32(i) + 5
			if enc {
				v += at
			} else {
				v -= at
			}
			v &= 1<<25 - 1
			if v&(1<<24) != 0 {
				v |= 0xff << 24
			}
			binary.LittleEndian.PutUint32(p[i+1:], v)
		}
		i += 5
	}
}

// A nextByte remembers where a byte value next occurs in a slice, so that
// the search for E8 and for E9 (bytes.IndexByte, with vector instructions)
// each pass over the slice once.
type nextByte struct {
	pos   int  // index of the next occurrence found, or none
	valid bool // pos is known
}

// none is what nextByte.at returns when c does not occur again.
const none = 1 << 30

// at returns the index of the first c in b at or after from, or none.
func (n *nextByte) at(b []byte, from int, c byte) int {
	if !n.valid || n.pos < from {
		n.valid = true
		if k := bytes.IndexByte(b[from:], c); k >= 0 {
			n.pos = from + k
		} else {
			n.pos = none
		}
	}
	return n.pos
}
