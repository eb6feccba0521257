package blkif

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/xensr/xensr/internal/cheader"
	"github.com/xensr/xensr/ring"
	"github.com/xensr/xensr/stream"
)

// TestLayoutAgainstC compares the layouts and codes with
// xen/io/blkif.h (which brings in io/ring.h's DEFINE_RING_TYPES).
func TestLayoutAgainstC(t *testing.T) {
	want := map[string]uint64{
		"sizeof(struct blkif_request)":                       RequestSize,
		"sizeof(struct blkif_response)":                      ResponseSize,
		"sizeof(struct blkif_request_segment)":               SegmentSize,
		"sizeof(union blkif_sring_entry)":                    EntrySize,
		"offsetof(struct blkif_request, operation)":          offOperation,
		"offsetof(struct blkif_request, nr_segments)":        offNrSegments,
		"offsetof(struct blkif_request, handle)":             offHandle,
		"offsetof(struct blkif_request, id)":                 offID,
		"offsetof(struct blkif_request, sector_number)":      offSector,
		"offsetof(struct blkif_request, seg)":                offSeg,
		"offsetof(struct blkif_request_segment, first_sect)": 4,
		"offsetof(struct blkif_request_segment, last_sect)":  5,
		"offsetof(struct blkif_response, id)":                offRspID,
		"offsetof(struct blkif_response, operation)":         offRspOperation,
		"offsetof(struct blkif_response, status)":            offRspStatus,
		"offsetof(struct blkif_sring, ring)":                 ring.HeaderSize,
		"offsetof(struct blkif_sring, req_prod)":             0,
		"offsetof(struct blkif_sring, req_event)":            4,
		"offsetof(struct blkif_sring, rsp_prod)":             8,
		"offsetof(struct blkif_sring, rsp_event)":            12,
		"__CONST_RING_SIZE(blkif, 4096)":                     uint64(RingSize),
		"BLKIF_MAX_SEGMENTS_PER_REQUEST":                     MaxSegments,
		"BLKIF_OP_READ":                                      OpRead,
		"BLKIF_OP_WRITE":                                     OpWrite,
		"BLKIF_OP_WRITE_BARRIER":                             OpWriteBarrier,
		"BLKIF_OP_FLUSH_DISKCACHE":                           OpFlushDiskcache,
		"BLKIF_OP_RESERVED_1":                                OpReserved1,
		"BLKIF_OP_DISCARD":                                   OpDiscard,
		"BLKIF_OP_INDIRECT":                                  OpIndirect,
		"(uint16_t)BLKIF_RSP_EOPNOTSUPP":                     uint64(uint16(StatusNotSupported & 0xffff)),
		"(uint16_t)BLKIF_RSP_ERROR":                          uint64(uint16(StatusError & 0xffff)),
		"BLKIF_RSP_OKAY":                                     StatusOkay,
		"VDISK_CDROM":                                        InfoCDROM,
		"VDISK_REMOVABLE":                                    InfoRemovable,
		"VDISK_READONLY":                                     InfoReadOnly,
		"GNTTAB_NR_RESERVED_ENTRIES":                         ReservedGrants,
	}
	// The header declares only types and macros, which C allows inside
	// main, after cheader's prelude.
	body := "#include <xen/io/blkif.h>\n"
	var exprs []string
	for e := range want {
		exprs = append(exprs, e)
	}
	slices.Sort(exprs)
	for i, e := range exprs {
		body += cheader.Print(fmt.Sprint("v", i), e)
	}
	got := cheader.Run(t, body)
	for i, e := range exprs {
		if g := got[fmt.Sprint("v", i)]; g != want[e] {
			t.Errorf("%s: Go has %#x, C has %#x", e, want[e], g)
		}
	}
}

func TestRingSize(t *testing.T) {
	if RingSize != 32 {
		t.Fatalf("a one-page blkif ring holds %d requests, want 32", RingSize)
	}
}

func rw(op uint8, sector uint64, segs ...Segment) Request {
	r := Request{Operation: op, NrSegments: uint8(len(segs)), ID: 0xdeadbeef, Sector: sector}
	copy(r.Seg[:], segs)
	return r
}

// TestCheck is the table of hostile and valid requests: each bad one is
// refused naming its field, with the status a frontend would get.
func TestCheck(t *testing.T) {
	disk := Disk{Sectors: 1000}
	full := Segment{Gref: 9, FirstSect: 0, LastSect: 7}
	for _, tc := range []struct {
		name   string
		r      Request
		d      Disk
		field  string // "" for a valid request
		status int16
	}{
		{"read", rw(OpRead, 0, full), disk, "", StatusOkay},
		{"write to the last sectors", rw(OpWrite, 992, full), disk, "", StatusOkay},
		{"eleven segments", rw(OpRead, 0, slices.Repeat([]Segment{full}, 11)...), disk, "", StatusOkay},
		{"flush", rw(OpFlushDiskcache, 0), disk, "", StatusOkay},
		{"flush with data", rw(OpFlushDiskcache, 8, full), disk, "", StatusOkay},
		{"read of no segments", rw(OpRead, 0), disk, "nr_segments", StatusError},
		{"twelve segments", func() Request { r := rw(OpWrite, 0, full); r.NrSegments = 12; return r }(), disk, "nr_segments", StatusError},
		{"255 segments", func() Request { r := rw(OpRead, 0, full); r.NrSegments = 255; return r }(), disk, "nr_segments", StatusError},
		{"reserved grant", rw(OpRead, 0, Segment{Gref: 1, LastSect: 7}), disk, "seg[0].gref", StatusError},
		{"last sector past the page", rw(OpRead, 0, Segment{Gref: 9, FirstSect: 0, LastSect: 8}), disk, "seg[0].last_sect", StatusError},
		{"first after last", rw(OpRead, 0, full, Segment{Gref: 9, FirstSect: 5, LastSect: 4}), disk, "seg[1].last_sect", StatusError},
		{"past the end", rw(OpRead, 993, full), disk, "sector_number", StatusError},
		{"sector wraps", rw(OpWrite, ^uint64(0)-3, full), disk, "sector_number", StatusError},
		{"flush at sector -1, as Linux blkfront sends it", rw(OpFlushDiskcache, ^uint64(0)), disk, "", StatusOkay},
		{"flush with data past the end", rw(OpFlushDiskcache, 993, full), disk, "sector_number", StatusError},
		{"write to a read-only disk", rw(OpWrite, 0, full), Disk{Sectors: 1000, ReadOnly: true}, "operation", StatusError},
		{"barrier", rw(OpWriteBarrier, 0, full), disk, "operation", StatusNotSupported},
		{"discard", rw(OpDiscard, 0), disk, "operation", StatusNotSupported},
		{"indirect", rw(OpIndirect, 0), disk, "operation", StatusNotSupported},
		{"unknown op", rw(200, 0), disk, "operation", StatusNotSupported},
	} {
		err := tc.r.Check(tc.d, 77, 64+5*EntrySize)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var fe *stream.FormatError
		if !errors.As(err, &fe) || fe.Field != tc.field || fe.Layer != "blkif" || fe.Index != 77 || fe.Offset != 64+5*EntrySize {
			t.Errorf("%s: error %v, want a blkif FormatError at field %s, index 77", tc.name, err, tc.field)
			continue
		}
		if st := StatusFor(err); st != tc.status {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, st, tc.status, err)
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: message %q does not name the field", tc.name, err)
		}
		// The request is named by its operation, as stream's layers name
		// their records: "record 77 (write)", not "(type 0x1)".
		if want := "record 77 (" + OpName(tc.r.Operation) + ")"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: message %q does not name the operation (%q)", tc.name, err, want)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	r := rw(OpWrite, 12345, Segment{Gref: 100, FirstSect: 1, LastSect: 6}, Segment{Gref: 0xfffffff0, LastSect: 7})
	r.Handle = 51712
	b := make([]byte, EntrySize)
	EncodeRequest(b, &r)
	var got Request
	if err := DecodeRequest(b, &got); err != nil || got != r {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, r)
	}
	if err := DecodeRequest(b[:RequestSize-1], &got); !errors.Is(err, stream.ErrTruncated) {
		t.Fatalf("short slot: %v", err)
	}
	rsp := Response{ID: 1 << 60, Operation: OpFlushDiskcache, Status: StatusNotSupported}
	EncodeResponse(b, rsp)
	if DecodeResponse(b) != rsp {
		t.Fatalf("response round trip %+v", DecodeResponse(b))
	}
	if r.Sectors() != 6+8 {
		t.Fatalf("Sectors = %d", r.Sectors())
	}
}

// FuzzDecodeRequest decodes and checks any slot: no panic; a request that
// passes Check stays inside the disk and its pages, and encodes back to a
// slot that decodes to the same request.
func FuzzDecodeRequest(f *testing.F) {
	disk := Disk{Sectors: 1 << 20}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if err := DecodeRequest(b, &r); err != nil {
			if len(b) >= RequestSize {
				t.Fatalf("a %d-byte slot refused: %v", len(b), err)
			}
			return
		}
		err := r.Check(disk, 0, ring.HeaderSize)
		st := StatusFor(err)
		if err != nil {
			var fe *stream.FormatError
			if !errors.As(err, &fe) || st == StatusOkay {
				t.Fatalf("error %v (status %d) is not a FormatError with an error status", err, st)
			}
			return
		}
		// A request of no sectors (only a flush without data may be one)
		// touches nothing, whatever its sector_number says.
		if r.Sectors() == 0 && r.Operation != OpFlushDiskcache {
			t.Fatalf("accepted %+v with no sectors", r)
		}
		if (r.Sectors() > 0 && r.Sector+r.Sectors() > disk.Sectors) || r.NrSegments > MaxSegments {
			t.Fatalf("accepted %+v beyond the disk", r)
		}
		for _, s := range r.Seg[:r.NrSegments] {
			if s.FirstSect > s.LastSect || s.LastSect >= SectorsPerPage || s.Gref < ReservedGrants {
				t.Fatalf("accepted bad segment %+v", s)
			}
		}
		out := make([]byte, RequestSize)
		EncodeRequest(out, &r)
		var again Request
		if DecodeRequest(out, &again); again != r {
			t.Fatalf("re-encoded %+v decodes to %+v", r, again)
		}
	})
}
