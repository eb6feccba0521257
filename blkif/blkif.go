// Package blkif is the Xen block-device protocol of
// xen/include/public/io/blkif.h: the request and response layouts that
// travel in the slots of a shared ring (package ring), the operation and
// status codes, and the checks a backend makes on a request before it
// touches a disk or a grant.
//
// A request is decoded from a private copy of its ring slot (a frontend may
// rewrite the slot while the backend reads it). Check validates a decoded
// request against the disk and returns a *stream.FormatError (layer
// "blkif") naming the field at fault; StatusFor turns any error into the
// response status the frontend sees. Indirect requests are not supported
// (a backend that does not advertise feature-max-indirect-segments never
// receives one from a conforming frontend; it answers EOPNOTSUPP).
package blkif

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/ring"
	"github.com/xensr/xensr/stream"
)

// Operations (BLKIF_OP_*).
const (
	OpRead           = 0
	OpWrite          = 1
	OpWriteBarrier   = 2
	OpFlushDiskcache = 3
	OpReserved1      = 4
	OpDiscard        = 5
	OpIndirect       = 6
)

// OpName returns the name of an operation code.
func OpName(op uint8) string {
	switch op {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpWriteBarrier:
		return "write_barrier"
	case OpFlushDiskcache:
		return "flush_diskcache"
	case OpReserved1:
		return "reserved_1"
	case OpDiscard:
		return "discard"
	case OpIndirect:
		return "indirect"
	}
	return fmt.Sprintf("op_%d", op)
}

// Response statuses (BLKIF_RSP_*).
const (
	StatusOkay         = 0
	StatusError        = -1
	StatusNotSupported = -2
)

// Sizes and limits.
const (
	// MaxSegments is BLKIF_MAX_SEGMENTS_PER_REQUEST.
	MaxSegments = 11
	// SectorSize is the unit of sector numbers, segment bounds and the
	// "sectors" node: always 512 bytes.
	SectorSize = 512
	// PageSize is the size of a granted data page.
	PageSize = 4096
	// SectorsPerPage is how many sectors a segment's page holds: first_sect
	// and last_sect lie in [0, SectorsPerPage).
	SectorsPerPage = PageSize / SectorSize
	// SegmentSize is sizeof(struct blkif_request_segment) (gref, first,
	// last, two bytes of padding).
	SegmentSize = 8
	// RequestSize is sizeof(struct blkif_request) on x86-64.
	RequestSize = 24 + MaxSegments*SegmentSize
	// ResponseSize is sizeof(struct blkif_response).
	ResponseSize = 16
	// EntrySize is the size of a ring slot (the union of the two).
	EntrySize = max(RequestSize, ResponseSize)
	// ReservedGrants is GNTTAB_NR_RESERVED_ENTRIES: grant references below
	// it belong to the toolstack (console, xenstore), never to I/O.
	ReservedGrants = 8
)

// Field offsets in a request and a response.
const (
	offOperation  = 0
	offNrSegments = 1
	offHandle     = 2
	offID         = 8
	offSector     = 16
	offSeg        = 24

	offRspID        = 0
	offRspOperation = 8
	offRspStatus    = 10
)

// VDISK_* flags of the backend's "info" node.
const (
	InfoCDROM     = 0x1
	InfoRemovable = 0x2
	InfoReadOnly  = 0x4
)

// RingSize is the number of requests a one-page ring holds.
var RingSize = ring.Size(PageSize, EntrySize)

// A Segment is one struct blkif_request_segment: sectors FirstSect to
// LastSect (inclusive) of the granted page Gref.
type Segment struct {
	Gref                grant.Ref
	FirstSect, LastSect uint8
}

// A Request is a decoded struct blkif_request.
type Request struct {
	Operation  uint8
	NrSegments uint8
	Handle     uint16
	ID         uint64
	Sector     uint64
	Seg        [MaxSegments]Segment
}

// DecodeRequest decodes a request from b, a private copy of a ring slot of
// at least RequestSize bytes. It checks nothing but the length: Check
// validates.
func DecodeRequest(b []byte, r *Request) error {
	if len(b) < RequestSize {
		return &stream.FormatError{Layer: "blkif", Index: -1, Field: "request",
			Err: fmt.Errorf("%w: %d bytes, want %d", stream.ErrTruncated, len(b), RequestSize)}
	}
	le := binary.LittleEndian
	r.Operation = b[offOperation]
	r.NrSegments = b[offNrSegments]
	r.Handle = le.Uint16(b[offHandle:])
	r.ID = le.Uint64(b[offID:])
	r.Sector = le.Uint64(b[offSector:])
	for i := range r.Seg {
		s := b[offSeg+i*SegmentSize:]
		r.Seg[i] = Segment{grant.Ref(le.Uint32(s)), s[4], s[5]}
	}
	return nil
}

// EncodeRequest writes r into b (RequestSize bytes), padding zeroed: what a
// frontend puts in a ring slot.
func EncodeRequest(b []byte, r *Request) {
	le := binary.LittleEndian
	clear(b[:RequestSize])
	b[offOperation] = r.Operation
	b[offNrSegments] = r.NrSegments
	le.PutUint16(b[offHandle:], r.Handle)
	le.PutUint64(b[offID:], r.ID)
	le.PutUint64(b[offSector:], r.Sector)
	for i, s := range r.Seg {
		o := offSeg + i*SegmentSize
		le.PutUint32(b[o:], uint32(s.Gref))
		b[o+4], b[o+5] = s.FirstSect, s.LastSect
	}
}

// A Response is a struct blkif_response.
type Response struct {
	ID        uint64
	Operation uint8
	Status    int16
}

// EncodeResponse writes r into b (ResponseSize bytes), padding zeroed.
func EncodeResponse(b []byte, r Response) {
	clear(b[:ResponseSize])
	binary.LittleEndian.PutUint64(b[offRspID:], r.ID)
	b[offRspOperation] = r.Operation
	binary.LittleEndian.PutUint16(b[offRspStatus:], uint16(r.Status))
}

// DecodeResponse decodes a response from b (ResponseSize bytes).
func DecodeResponse(b []byte) Response {
	return Response{binary.LittleEndian.Uint64(b[offRspID:]), b[offRspOperation], int16(binary.LittleEndian.Uint16(b[offRspStatus:]))}
}

// ErrNotSupported reports an operation the backend does not offer; the
// frontend gets StatusNotSupported.
var ErrNotSupported = errors.New("operation not supported")

// A Disk describes what Check validates against.
type Disk struct {
	Sectors  uint64 // capacity in SectorSize units
	ReadOnly bool
}

// Check validates r, decoded from the ring slot of free-running index idx
// at byte offset off of the shared ring: a supported operation, a segment
// count the operation allows, grant references outside the reserved ones,
// sector bounds inside a page, and a sector range inside the disk. The
// error is a *stream.FormatError wrapping stream.ErrValue (or
// ErrNotSupported for an operation the backend does not offer).
func (r *Request) Check(d Disk, idx uint32, off int64) error {
	bad := func(field string, err error) error {
		return &stream.FormatError{Layer: "blkif", Offset: off, Index: int(idx), Type: uint32(r.Operation), TypeName: OpName(r.Operation), Field: field, Err: err}
	}
	switch r.Operation {
	case OpRead, OpWrite:
		if r.NrSegments == 0 {
			return bad("nr_segments", fmt.Errorf("%w: %s of 0 segments, want 1..%d", stream.ErrValue, OpName(r.Operation), MaxSegments))
		}
		if r.Operation == OpWrite && d.ReadOnly {
			return bad("operation", fmt.Errorf("%w: write to a read-only disk", stream.ErrValue))
		}
	case OpFlushDiskcache:
		// May carry data: a write whose completion also flushes (Linux
		// blkfront sends writes with FUA or a preflush this way).
		if r.NrSegments > 0 && d.ReadOnly {
			return bad("operation", fmt.Errorf("%w: write to a read-only disk", stream.ErrValue))
		}
	default:
		return bad("operation", fmt.Errorf("%w: %s (%d)", ErrNotSupported, OpName(r.Operation), r.Operation))
	}
	if r.NrSegments > MaxSegments {
		return bad("nr_segments", fmt.Errorf("%w: %d segments, want at most %d", stream.ErrValue, r.NrSegments, MaxSegments))
	}
	total := uint64(0)
	for i := range int(r.NrSegments) {
		s := r.Seg[i]
		if s.Gref < ReservedGrants {
			return bad(fmt.Sprintf("seg[%d].gref", i), fmt.Errorf("%w: grant reference %d is reserved (want >= %d)", stream.ErrValue, s.Gref, ReservedGrants))
		}
		if s.LastSect >= SectorsPerPage || s.FirstSect > s.LastSect {
			return bad(fmt.Sprintf("seg[%d].last_sect", i), fmt.Errorf("%w: sectors %d..%d, want first <= last < %d", stream.ErrValue, s.FirstSect, s.LastSect, SectorsPerPage))
		}
		total += uint64(s.LastSect-s.FirstSect) + 1
	}
	if total == 0 {
		// A flush without data covers no sectors: its sector_number is
		// no position (Linux blkfront sends (sector_t)-1 there) and, as
		// Linux's blkback does, only requests with sectors are checked
		// against the disk.
		return nil
	}
	if r.Sector > d.Sectors || total > d.Sectors-r.Sector {
		return bad("sector_number", fmt.Errorf("%w: sectors %d+%d beyond the disk's %d", stream.ErrValue, r.Sector, total, d.Sectors))
	}
	return nil
}

// Sectors returns the number of sectors the first NrSegments segments
// cover (of a request that passed Check).
func (r *Request) Sectors() uint64 {
	n := uint64(0)
	for _, s := range r.Seg[:min(int(r.NrSegments), MaxSegments)] {
		n += uint64(s.LastSect-s.FirstSect) + 1
	}
	return n
}

// StatusFor returns the response status for the outcome of a request: Okay
// for nil, NotSupported for ErrNotSupported, Error for anything else.
func StatusFor(err error) int16 {
	switch {
	case err == nil:
		return StatusOkay
	case errors.Is(err, ErrNotSupported):
		return StatusNotSupported
	}
	return StatusError
}
