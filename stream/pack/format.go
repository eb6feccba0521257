// Package pack stores Xen save images compactly and gives random access to
// their pages. A packed file holds the image's bytes outside page contents
// (headers, records, PFN lists: the skeleton) and its page contents
// deduplicated by content, zero pages stored as nothing, all compressed with
// zstd in independent blocks, each with a CRC-32C; an index at the end finds
// any page by checkpoint round and PFN. Unpacking reproduces the image bit
// for bit.
//
// Both directions stream: Pack reads the image from an io.Reader (a pipe
// from `xl save`) and Unpack writes to an io.Writer (a pipe into `xl
// restore`), reading the packed file front to back; only Open, for random
// access, needs an io.ReaderAt. Pages are parsed with stream/image, so every
// layer the walker knows (xl save files, libxl and libxc streams,
// checkpointed streams) is packed.
//
// File layout:
//
//	"XSRPACK1"
//	block*     kind u8 ('S' skeleton, 'P' pages, 'I' index), raw length u32,
//	           compressed length u32, CRC-32C of the compressed bytes u32,
//	           zstd frame
//	"XSRPEND1" offset of the index block u64
//
// A skeleton block is a list of ops: 'L' u32 n, n literal bytes; 'Z' u32 n,
// n zero pages; 'R' u32 n, n u32 page ids (1-based, in order of first
// appearance). A page block holds the contents of the next new pages. Page
// blocks come before the skeleton blocks that use them. The index block
// lists every page occurrence (round u32, PFN u64, id u32; id 0 is a zero
// page) and every page block (first id u32, count u32, offset u64).
package pack

import (
	"errors"
	"hash/crc32"

	"github.com/xensr/xensr/stream"
)

// Magic opens a packed file; EndMagic opens its trailer.
const (
	Magic    = "XSRPACK1"
	EndMagic = "XSRPEND1"
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
	// MaxBlock is the largest raw block: page blocks hold 1024 pages,
	// skeleton blocks about 1 MiB, and the index 16 bytes a page.
	MaxBlock  = 64 << 20
	pageSize  = 4096
	pagesPerP = 1024
	skelFlush = 1 << 20
	trailerSz = 16
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
