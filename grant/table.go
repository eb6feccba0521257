// Package grant tracks the grant mappings a backend holds, so that it can
// quiesce before the last dirty-bitmap pass of a save or migration, and
// decodes grant-table entries.
//
// Xen marks a frame dirty for log-dirty only when its grant is unmapped: a
// backend that keeps a frontend's page mapped and writes to it after the
// guest is suspended changes memory the final pass never sees (the memory
// corruption reported on xen-devel in 2014). Every mapping of a Go backend
// goes through a Tracker; Quiesce stops new mappings and copies, waits for
// those in flight, unmaps everything, and returns the guest frames that were
// mapped writable, to be sent again.
//
// The Linux wrappers of /dev/xen/gntdev and /dev/xen/gntalloc build on
// Linux only; the Tracker and the codecs are portable.
package grant

import (
	"encoding/binary"
	"fmt"
)

// A Ref is a grant reference.
type Ref uint32

// Grant entry flags (public/grant_table.h, GTF_*).
const (
	TypeInvalid        = 0
	TypePermitAccess   = 1
	TypeAcceptTransfer = 2
	TypeTransitive     = 3
	TypeMask           = 3

	FlagReadonly = 1 << 2
	FlagReading  = 1 << 3
	FlagWriting  = 1 << 4
	FlagPWT      = 1 << 5
	FlagPCD      = 1 << 6
	FlagPAT      = 1 << 7
	FlagSubPage  = 1 << 8
)

// Entry sizes of the two grant-table versions.
const (
	EntrySizeV1 = 8
	EntrySizeV2 = 16
)

// EntryV1 is a grant_entry_v1_t.
type EntryV1 struct {
	Flags uint16
	Domid uint16 // the domain allowed to map
	Frame uint32 // the granting guest's frame
}

// DecodeV1 decodes the grant-table page b (EntrySizeV1 bytes an entry).
func DecodeV1(b []byte) []EntryV1 {
	out := make([]EntryV1, len(b)/EntrySizeV1)
	for i := range out {
		e := b[i*EntrySizeV1:]
		out[i] = EntryV1{binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])}
	}
	return out
}

// AppendV1 appends the encoding of e.
func AppendV1(b []byte, e EntryV1) []byte {
	b = binary.LittleEndian.AppendUint16(b, e.Flags)
	b = binary.LittleEndian.AppendUint16(b, e.Domid)
	return binary.LittleEndian.AppendUint32(b, e.Frame)
}

// EntryV2 is a grant_entry_v2_t, with the union decoded by type: Frame for
// full pages and sub-pages, PageOff/Length for sub-pages, TransDomid and
// TransRef for transitive grants. Raw keeps the 12 union bytes as they are.
type EntryV2 struct {
	Flags      uint16
	Domid      uint16
	Frame      uint64
	PageOff    uint16
	Length     uint16
	TransDomid uint16
	TransRef   uint32
	Raw        [12]byte
}

// DecodeV2 decodes the grant-table page b (EntrySizeV2 bytes an entry).
func DecodeV2(b []byte) []EntryV2 {
	le := binary.LittleEndian
	out := make([]EntryV2, len(b)/EntrySizeV2)
	for i := range out {
		e := b[i*EntrySizeV2:]
		v := EntryV2{Flags: le.Uint16(e), Domid: le.Uint16(e[2:])}
		copy(v.Raw[:], e[4:16])
		switch {
		case v.Flags&TypeMask == TypeTransitive:
			v.TransDomid, v.TransRef = le.Uint16(e[4:]), le.Uint32(e[8:])
		case v.Flags&FlagSubPage != 0:
			v.PageOff, v.Length, v.Frame = le.Uint16(e[4:]), le.Uint16(e[6:]), le.Uint64(e[8:])
		default:
			v.Frame = le.Uint64(e[8:])
		}
		out[i] = v
	}
	return out
}

// AppendV2 appends the encoding of e from its typed fields.
func AppendV2(b []byte, e EntryV2) []byte {
	le := binary.LittleEndian
	b = le.AppendUint16(b, e.Flags)
	b = le.AppendUint16(b, e.Domid)
	switch {
	case e.Flags&TypeMask == TypeTransitive:
		b = le.AppendUint16(b, e.TransDomid)
		b = le.AppendUint16(b, 0)
		b = le.AppendUint32(b, e.TransRef)
		b = le.AppendUint32(b, 0)
	case e.Flags&FlagSubPage != 0:
		b = le.AppendUint16(b, e.PageOff)
		b = le.AppendUint16(b, e.Length)
		b = le.AppendUint64(b, e.Frame)
	default:
		b = le.AppendUint32(b, 0)
		b = le.AppendUint64(b, e.Frame)
	}
	return b
}

// String describes an entry's flags as Xen's debug keys do.
func FlagsString(f uint16) string {
	t := [...]string{"invalid", "permit_access", "accept_transfer", "transitive"}[f&TypeMask]
	s := t
	for _, fl := range []struct {
		bit  uint16
		name string
	}{{FlagReadonly, "readonly"}, {FlagReading, "reading"}, {FlagWriting, "writing"}, {FlagSubPage, "sub_page"}} {
		if f&fl.bit != 0 {
			s += "|" + fl.name
		}
	}
	return s
}

// Active reports whether the grant is mapped by its grantee right now
// (GTF_reading or GTF_writing), as a save tool inspecting a guest's table
// sees it.
func (e EntryV1) Active() bool { return e.Flags&(FlagReading|FlagWriting) != 0 }

// String formats the entry.
func (e EntryV1) String() string {
	return fmt.Sprintf("%s dom%d frame %#x", FlagsString(e.Flags), e.Domid, e.Frame)
}
