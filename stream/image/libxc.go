package image

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/xensr/xensr/stream"
)

// The walker's view of the libxc layer: the two headers, the record type
// names and the PAGE_DATA layout it needs for offsets, statistics and
// structural checks. Full libxc decoding and validation belong to package
// stream/libxc.

// Libxc image and domain header sizes.
const (
	LibxcImageHeaderSize  = 24
	LibxcDomainHeaderSize = 16
	libxcIdent            = 0x58454E46 // "XENF"
)

// A LibxcImageHeader is the big-endian libxc image header.
type LibxcImageHeader struct {
	Marker   uint64 // all ones
	ID       uint32 // "XENF"
	Version  uint32 // 2 or 3
	Options  uint16 // bit 0: big-endian
	Reserved [6]byte
}

// A LibxcDomainHeader is the libxc domain header.
type LibxcDomainHeader struct {
	Type      uint32 // 1 x86 PV, 2 x86 HVM
	PageShift uint16
	Reserved  uint16
	XenMajor  uint32
	XenMinor  uint32
}

func parseLibxcImageHeader(b []byte) LibxcImageHeader {
	h := LibxcImageHeader{
		Marker:  binary.BigEndian.Uint64(b[0:8]),
		ID:      binary.BigEndian.Uint32(b[8:12]),
		Version: binary.BigEndian.Uint32(b[12:16]),
		Options: binary.BigEndian.Uint16(b[16:18]),
	}
	copy(h.Reserved[:], b[18:24])
	return h
}

// AppendBinary appends the encoded header.
func (h LibxcImageHeader) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, h.Marker)
	b = binary.BigEndian.AppendUint32(b, h.ID)
	b = binary.BigEndian.AppendUint32(b, h.Version)
	b = binary.BigEndian.AppendUint16(b, h.Options)
	return append(b, h.Reserved[:]...), nil
}

func parseLibxcDomainHeader(b []byte) LibxcDomainHeader {
	return LibxcDomainHeader{
		Type:      binary.LittleEndian.Uint32(b[0:4]),
		PageShift: binary.LittleEndian.Uint16(b[4:6]),
		Reserved:  binary.LittleEndian.Uint16(b[6:8]),
		XenMajor:  binary.LittleEndian.Uint32(b[8:12]),
		XenMinor:  binary.LittleEndian.Uint32(b[12:16]),
	}
}

// AppendBinary appends the encoded header.
func (h LibxcDomainHeader) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint32(b, h.Type)
	b = binary.LittleEndian.AppendUint16(b, h.PageShift)
	b = binary.LittleEndian.AppendUint16(b, h.Reserved)
	b = binary.LittleEndian.AppendUint32(b, h.XenMajor)
	return binary.LittleEndian.AppendUint32(b, h.XenMinor), nil
}

// DomainTypeName names a libxc domain type.
func DomainTypeName(t uint32) string {
	switch t {
	case 1:
		return "x86 PV"
	case 2:
		return "x86 HVM"
	case 3:
		return "ARM"
	}
	return fmt.Sprintf("type %#x", t)
}

// Libxc record types the walker treats specially.
const (
	LibxcEnd        = 0x00
	LibxcPageData   = 0x01
	LibxcCheckpoint = 0x0e
	libxcOptional   = 0x80000000
)

var libxcNames = []string{
	"END", "PAGE_DATA", "X86_PV_INFO", "X86_PV_P2M_FRAMES", "X86_PV_VCPU_BASIC",
	"X86_PV_VCPU_EXTENDED", "X86_PV_VCPU_XSAVE", "SHARED_INFO", "X86_TSC_INFO",
	"HVM_CONTEXT", "HVM_PARAMS", "TOOLSTACK", "X86_PV_VCPU_MSRS", "VERIFY",
	"CHECKPOINT", "CHECKPOINT_DIRTY_PFN_LIST", "STATIC_DATA_END",
	"X86_CPUID_POLICY", "X86_MSR_POLICY",
}

// LibxcTypeName names a libxc record type.
func LibxcTypeName(t uint32) string {
	if int(t) < len(libxcNames) {
		return libxcNames[t]
	}
	if t&libxcOptional != 0 {
		return fmt.Sprintf("UNKNOWN_OPTIONAL(%#x)", t)
	}
	return fmt.Sprintf("UNKNOWN(%#x)", t)
}

// Page types as stored in bits 60-63 of a PAGE_DATA PFN entry.
const (
	PageNotab  = 0x0
	PageL1     = 0x1
	PageL2     = 0x2
	PageL3     = 0x3
	PageL4     = 0x4
	PagePinned = 0x8 // OR-ed into L1-L4: the page table is pinned
	PageBroken = 0xd
	PageXalloc = 0xe
	PageXtab   = 0xf
	pageSize   = 4096
	pfnMask    = 0x000fffffffffffff
	pfnResMask = 0x0ff0000000000000 // bits 52-59
)

// PageTypeName names a page type (the high nibble of a PAGE_DATA entry).
func PageTypeName(t int) string {
	switch t {
	case PageNotab:
		return "NOTAB"
	case PageL1, PageL2, PageL3, PageL4:
		return fmt.Sprintf("L%dTAB", t)
	case PageL1 | PagePinned, PageL2 | PagePinned, PageL3 | PagePinned, PageL4 | PagePinned:
		return fmt.Sprintf("L%dTAB|PIN", t&7)
	case PageBroken:
		return "BROKEN"
	case PageXalloc:
		return "XALLOC"
	case PageXtab:
		return "XTAB"
	}
	return fmt.Sprintf("INVALID(%#x)", t)
}

// pageHasData reports whether a page of type t carries 4096 bytes of data.
func pageHasData(t int) bool { return t != PageBroken && t != PageXalloc && t != PageXtab }

// PageStats summarises PAGE_DATA records.
type PageStats struct {
	Records   int       `json:"records"`    // PAGE_DATA records
	Pages     int64     `json:"pages"`      // PFN entries
	DataPages int64     `json:"data_pages"` // entries carrying 4096 bytes
	ZeroPages int64     `json:"zero_pages"` // data pages whose bytes are all zero
	MinPFN    uint64    `json:"min_pfn"`
	MaxPFN    uint64    `json:"max_pfn"`
	ByType    [16]int64 `json:"-"` // entries per page type (the PFN entry's high nibble)
}

// Types returns the non-zero per-type counts keyed by PageTypeName.
func (s *PageStats) Types() map[string]int64 {
	m := map[string]int64{}
	for t, n := range s.ByType {
		if n > 0 {
			m[PageTypeName(t)] = n
		}
	}
	return m
}

// MarshalJSON encodes the statistics with the per-type counts by name.
func (s PageStats) MarshalJSON() ([]byte, error) {
	type plain PageStats
	return json.Marshal(struct {
		plain
		Types map[string]int64 `json:"types"`
	}{plain(s), s.Types()})
}

func (s *PageStats) add(o *PageStats) {
	if o.Pages > 0 {
		if s.Pages == 0 || o.MinPFN < s.MinPFN {
			s.MinPFN = o.MinPFN
		}
		if o.MaxPFN > s.MaxPFN {
			s.MaxPFN = o.MaxPFN
		}
	}
	s.Records += o.Records
	s.Pages += o.Pages
	s.DataPages += o.DataPages
	s.ZeroPages += o.ZeroPages
	for t, n := range o.ByType {
		s.ByType[t] += n
	}
}

// pageData checks a PAGE_DATA body and returns its statistics; field names the
// part at fault on error.
func pageData(body []byte, strict bool) (st PageStats, field string, err error) {
	if len(body) < 8 {
		return st, "length", stream.ErrLength
	}
	count := binary.LittleEndian.Uint32(body[0:4])
	if strict && binary.LittleEndian.Uint32(body[4:8]) != 0 {
		return st, "reserved", stream.ErrReserved
	}
	if count == 0 || uint64(count) > uint64(len(body)-8)/8 {
		return st, "count", stream.ErrLength
	}
	st.Records = 1
	pfns := body[8 : 8+8*int(count)]
	data := body[8+8*int(count):]
	for i := 0; i < int(count); i++ {
		e := binary.LittleEndian.Uint64(pfns[8*i:])
		t := int(e >> 60)
		pfn := e & pfnMask
		if strict && e&pfnResMask != 0 {
			return st, fmt.Sprintf("pfn[%d]", i), stream.ErrReserved
		}
		if strict && t >= 5 && t <= 8 {
			return st, fmt.Sprintf("pfn[%d].type", i), stream.ErrValue
		}
		st.ByType[t]++
		if st.Pages == 0 || pfn < st.MinPFN {
			st.MinPFN = pfn
		}
		if pfn > st.MaxPFN {
			st.MaxPFN = pfn
		}
		st.Pages++
		if pageHasData(t) {
			st.DataPages++
		}
	}
	if uint64(len(data)) != uint64(st.DataPages)*pageSize {
		return st, "length", stream.ErrLength
	}
	for p := 0; p < len(data); p += pageSize {
		if allZero(data[p : p+pageSize]) {
			st.ZeroPages++
		}
	}
	return st, "", nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
