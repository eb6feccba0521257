// Package pack stores Xen save images compactly and gives random access to
// their pages. A packed file holds the image's bytes outside page contents
// (headers, records, PFN lists: the skeleton) and its page contents
// deduplicated by content (a keyed hash finds a candidate, a byte comparison
// confirms it), zero pages stored as nothing, each page transformed to
// compress better (x86 branch targets made absolute, page tables and other
// arrays of ascending numbers delta-coded), all compressed with zstd in
// independent blocks on every core, each block with a CRC-32C; an index at
// the end finds any page by checkpoint round and PFN. Unpacking reproduces
// the image bit for bit. Memory is bounded in both directions: the dedupe
// window of pages (Options.Window), a few blocks, one record, and in Pack
// the index being built (about 3 bytes a page).
//
// Both directions stream: Pack reads the image from an io.Reader (a pipe
// from `xl save`) and Unpack writes to an io.Writer (a pipe into `xl
// restore`), reading the packed file front to back; only Open, for random
// access, needs an io.ReaderAt. Pages are parsed with stream/image, so every
// layer the walker knows (xl save files, libxl and libxc streams,
// checkpointed streams) is packed.
//
// File layout (integers little-endian):
//
//	"XSRPACK2" window u32
//	block*     kind u8 ('S' skeleton, 'P' pages, 'I' index), raw length u32,
//	           compressed length u32, CRC-32C of the compressed bytes u32,
//	           zstd frame
//	"XSRPEND2" offset of the index block u64
//
// Pages are numbered 1, 2, ... in order of first appearance (id 0 is the
// zero page). A page block holds the next unique pages: first id u32, count
// u32, count transformed pages, then count transform codes u8 (none, x86
// branch converter, page-table delta: see transform.go). A skeleton block is
// a list of ops: 'L' u32 n, n literal bytes; 'D' u32 n, n u64 words each
// stored as its difference from the one before (PFN lists); 'Z' u32 n, n
// zero pages; 'N' u32
// n, the next n new pages in id order; 'R' u32 n, n u32 ids of pages seen
// before. Page blocks come before the skeleton blocks that use them. A
// reference names one of the last window unique pages, so Pack and Unpack
// each hold at most window pages (plus a block or two). The index block lists the page blocks (first id u32,
// count u32 each, after their number u32), then the number of page
// occurrences u64 and, per occurrence, three zigzag varints: the change of
// checkpoint round, the PFN's distance from the previous PFN plus one, and
// the id's distance from the last non-zero id plus one, shifted up by one so
// that 0 stands for a zero page.
package pack

import (
	"errors"
	"hash/crc32"

	"github.com/xensr/xensr/stream"
)

// Magic opens a packed file; EndMagic opens its trailer.
const (
	Magic    = "XSRPACK2"
	EndMagic = "XSRPEND2"
)

// Block kinds.
const (
	kindSkeleton = 'S'
	kindPages    = 'P'
	kindIndex    = 'I'
)

// Limits that bound what a reader allocates for a block.
const (
	blockHeader = 13
	fileHeader  = int64(len(Magic) + 4)
	// MaxBlock is the largest raw block: page blocks hold 1024 pages,
	// skeleton blocks about 1 MiB, and the index up to 30 bytes a page.
	MaxBlock  = 64 << 20
	pageSize  = 4096
	pagesPerP = 1024
	skelFlush = 1 << 20
	trailerSz = 16
	// DefaultWindow is the dedupe window (in unique pages) when
	// Options.Window is zero: 128 MiB of pages; MaxWindow the largest a
	// packed file may declare (4 GiB of pages).
	DefaultWindow = 1 << 15
	MaxWindow     = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors; a *stream.FormatError of layer "pack" wraps one of them.
var (
	ErrMagic     = errors.New("not a packed image")
	ErrChecksum  = errors.New("block checksum mismatch")
	ErrTruncated = errors.New("packed image truncated")
	ErrCorrupt   = errors.New("packed image corrupt")
	ErrNoPage    = errors.New("no such page")
)

// formatErr returns the *stream.FormatError of the pack layer: what is wrong
// and at which offset of the packed file.
func formatErr(off int64, what string, err error) error {
	return &stream.FormatError{Layer: "pack", Offset: off, Index: -1, Field: what, Err: err}
}
