// Package pack stores Xen save images compactly and gives random access to
// their pages. A packed file holds the image's bytes outside page contents
// (headers, records, PFN lists: the skeleton) and its page contents
// deduplicated by content (a keyed hash finds a candidate, a byte comparison
// confirms it), zero pages stored as nothing, each page transformed to
// compress better (x86 branch targets made absolute, page tables and other
// arrays of ascending numbers delta-coded), all compressed with zstd in
// independent blocks on every core, each block with a CRC-32C; an index at
// the end finds any page by checkpoint round and PFN. Unpacking reproduces
// the image bit for bit. Every record a valid stream holds (up to the
// record cap, stream.DefaultMaxRecordSize) is packed: records and PFN
// lists longer than a skeleton block are cut into several ops.
//
// Memory and output are bounded; a packed file is not trusted. Every size
// it declares (window, block lengths, run lengths, index counts) is checked
// against a hard limit and against the sizes it must agree with before
// anything is allocated or written, and a violation is a
// *stream.FormatError (field, offset, expected and actual) wrapping
// ErrLimit or ErrCorrupt (ErrTruncated, which is stream.ErrTruncated, for a
// cut file):
//
//   - Pack keeps the dedupe window of pages (Options.Window × 4 KiB), one
//     record of the image (at most the record cap), a few blocks in
//     flight per core and the index being built (3 to 25 bytes a page).
//   - Unpack keeps at most Window pages plus a page block at each edge
//     ((Window + 2048) × 4097 bytes; Window ≤ MaxWindow, 1 GiB of pages),
//     blocks read ahead up to 32 MiB (compressed plus raw; one larger
//     block, up to MaxBlock raw plus its compressed bytes, is read alone)
//     and a 64 KiB write buffer. It writes at most 512 page bytes per byte
//     of PFN list it decompressed: every run of pages needs as many PFN
//     entries before it, and a run stands for at most MaxRun pages.
//   - Open (and so `xsrpack stat`) keeps the index block (at most MaxBlock
//     raw bytes, plus its compressed bytes while reading it), 16 bytes per
//     page block and 8 per skeleton block; it refuses an index that lists
//     more page occurrences than the skeleton's PFN lists can hold (8 raw
//     bytes each). The first Page call builds a table of 16 bytes per page
//     occurrence; Page and NonPage each decompress one block at a time.
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
// each hold at most window pages (plus a block or two). Every page of a
// run has its PFN entry in a 'D' op before it. The index block lists the
// page blocks (first id u32,
// count u32 each, after their number u32), then the number of page
// occurrences u64 and, per occurrence, three zigzag varints: the change of
// checkpoint round, the PFN's distance from the previous PFN plus one, and
// the id's distance from the last non-zero id plus one, shifted up by one so
// that 0 stands for a zero page.
package pack

import (
	"errors"
	"fmt"
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

// Limits that bound what a reader allocates and writes. Every size a
// packed file declares is checked against them, and against the other
// sizes it must agree with, before anything is allocated or written.
const (
	blockHeader = 13
	fileHeader  = int64(len(Magic) + 4)
	// MaxBlock is the largest raw skeleton or index block (Pack makes
	// skeleton blocks of about 1 MiB; the index takes 3 to 25 bytes a
	// page). A page block holds at most 1024 pages: its raw length is
	// exactly 8 + 4097 bytes a page.
	MaxBlock     = 64 << 20
	pageSize     = 4096
	pagesPerP    = 1024
	maxPageBlock = 8 + pagesPerP*(pageSize+1)
	skelFlush    = 1 << 20
	trailerSz    = 16
	// MaxRun is the most pages one skeleton run op may stand for: what
	// one PAGE_DATA record of the largest size a stream may hold
	// (stream.DefaultMaxRecordSize) can carry.
	MaxRun = stream.DefaultMaxRecordSize / pageSize
	// maxRatio bounds a zstd frame's raw size by its compressed size: a
	// block yields at most 128 KiB and takes at least 4 bytes.
	maxRatio = 32 << 10
	// aheadBudget bounds the bytes (compressed plus raw) of the blocks
	// Unpack reads and decodes ahead of the one it writes; a single
	// block larger than that is still read, alone.
	aheadBudget = 32 << 20
	// DefaultWindow is the dedupe window (in unique pages) when
	// Options.Window is zero: 128 MiB of pages; MaxWindow the largest a
	// packed file may declare (1 GiB of pages), which bounds what
	// Unpack keeps.
	DefaultWindow = 1 << 15
	MaxWindow     = 1 << 18
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors; a *stream.FormatError of layer "pack" wraps one of them.
// ErrTruncated is stream.ErrTruncated, so errors.Is(err,
// stream.ErrTruncated) (and io.ErrUnexpectedEOF) hold for a cut file.
var (
	ErrMagic     = errors.New("not a packed image")
	ErrChecksum  = errors.New("block checksum mismatch")
	ErrTruncated = stream.ErrTruncated
	ErrCorrupt   = errors.New("packed image corrupt")
	// ErrLimit reports a declared size past a hard limit or past what
	// the rest of the file allows (a bomb, or corruption).
	ErrLimit  = errors.New("declared size past its limit")
	ErrNoPage = errors.New("no such page")
)

// formatErr returns the *stream.FormatError of the pack layer: what is wrong
// and at which offset of the packed file.
func formatErr(off int64, what string, err error) error {
	return &stream.FormatError{Layer: "pack", Offset: off, Index: -1, Field: what, Err: err}
}

// sizeErr is a formatErr that says what the format allows and what the
// file declares.
func sizeErr(off int64, field string, err error, expected string, actual any) error {
	return &stream.FormatError{Layer: "pack", Offset: off, Index: -1, Field: field, Err: err,
		Expected: expected, Actual: fmt.Sprint(actual)}
}
