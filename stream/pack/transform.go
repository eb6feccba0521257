package pack

import (
	"encoding/binary"
	"math/bits"
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
		copy(dst[:8], src[:8])
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
	for i := 0; i < end; {
		j := indexBranch(p[i:end])
		if j < 0 {
			return
		}
		i += j
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

// indexBranch returns the index of the first 0xE8 or 0xE9 byte of b, or -1.
// It tests eight bytes at a time: E8 and E9 differ only in bit 0.
func indexBranch(b []byte) int {
	const ones, highs, pat = 0x0101010101010101, 0x8080808080808080, 0xe9e9e9e9e9e9e9e9
	i := 0
	for ; i+8 <= len(b); i += 8 {
		y := (binary.LittleEndian.Uint64(b[i:]) | ones) ^ pat
		if m := (y - ones) &^ y & highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if b[i]|1 == 0xe9 {
			return i
		}
	}
	return -1
}
