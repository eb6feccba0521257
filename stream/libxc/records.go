package libxc

import (
	"encoding/binary"
	"fmt"
)

// A RecordType is the type field of a libxc record, optional bit included.
type RecordType uint32

// The record types of the libxc stream specification (revision 3).
const (
	TypeEnd                    RecordType = 0x00
	TypePageData               RecordType = 0x01
	TypeX86PVInfo              RecordType = 0x02
	TypeX86PVP2MFrames         RecordType = 0x03
	TypeX86PVVCPUBasic         RecordType = 0x04
	TypeX86PVVCPUExtended      RecordType = 0x05
	TypeX86PVVCPUXSave         RecordType = 0x06
	TypeSharedInfo             RecordType = 0x07
	TypeX86TSCInfo             RecordType = 0x08
	TypeHVMContext             RecordType = 0x09
	TypeHVMParams              RecordType = 0x0a
	TypeToolstack              RecordType = 0x0b // deprecated
	TypeX86PVVCPUMSRs          RecordType = 0x0c
	TypeVerify                 RecordType = 0x0d
	TypeCheckpoint             RecordType = 0x0e
	TypeCheckpointDirtyPFNList RecordType = 0x0f
	TypeStaticDataEnd          RecordType = 0x10
	TypeX86CPUIDPolicy         RecordType = 0x11
	TypeX86MSRPolicy           RecordType = 0x12

	// OptionalBit marks a record a restorer may ignore when it does not
	// know the type.
	OptionalBit RecordType = 0x80000000
)

var typeNames = [...]string{
	"END", "PAGE_DATA", "X86_PV_INFO", "X86_PV_P2M_FRAMES", "X86_PV_VCPU_BASIC",
	"X86_PV_VCPU_EXTENDED", "X86_PV_VCPU_XSAVE", "SHARED_INFO", "X86_TSC_INFO",
	"HVM_CONTEXT", "HVM_PARAMS", "TOOLSTACK", "X86_PV_VCPU_MSRS", "VERIFY",
	"CHECKPOINT", "CHECKPOINT_DIRTY_PFN_LIST", "STATIC_DATA_END",
	"X86_CPUID_POLICY", "X86_MSR_POLICY",
}

// Known reports whether t (without the optional bit) is a type of the specification.
func (t RecordType) Known() bool { return t&^OptionalBit < RecordType(len(typeNames)) }

// Optional reports whether the optional bit is set.
func (t RecordType) Optional() bool { return t&OptionalBit != 0 }

// String returns the specification's name of the type.
func (t RecordType) String() string {
	if t.Known() && !t.Optional() {
		return typeNames[t]
	}
	if t.Optional() {
		return fmt.Sprintf("OPTIONAL(%#x)", uint32(t))
	}
	return fmt.Sprintf("UNKNOWN(%#x)", uint32(t))
}

// A Record is one decoded libxc record. The concrete types are the pointers
// *End, *PageData, *X86PVInfo, *X86PVP2MFrames, *VCPUContext, *SharedInfo,
// *X86TSCInfo, *HVMContext, *HVMParams, *Toolstack, *Verify, *Checkpoint,
// *CheckpointDirtyPFNList, *StaticDataEnd, *X86CPUIDPolicy, *X86MSRPolicy and
// *Raw (unknown or undecodable types).
type Record interface {
	// Type returns the record's type field.
	Type() RecordType
	// appendBody appends the record's encoded body (without padding).
	appendBody(b []byte) []byte
	// decode parses body into the record, reusing its slices.
	decode(body []byte) error
}

// End marks the end of the stream; it has no fields.
type End struct{}

// PageShift is the only page size the x86 streams use: 4 KiB.
const PageShift = 12

// PageSize is 1 << PageShift.
const PageSize = 1 << PageShift

// A PageType is a XEN_DOMCTL_PFINFO_* type, as kept in bits 60-63 of a
// PAGE_DATA PFN entry.
type PageType uint8

// The page types.
const (
	PageNormal   PageType = 0x0
	PageL1       PageType = 0x1
	PageL2       PageType = 0x2
	PageL3       PageType = 0x3
	PageL4       PageType = 0x4
	PageL1Pinned PageType = 0x9
	PageL2Pinned PageType = 0xa
	PageL3Pinned PageType = 0xb
	PageL4Pinned PageType = 0xc
	PageBroken   PageType = 0xd
	PageXAlloc   PageType = 0xe
	PageXTab     PageType = 0xf
)

// HasData reports whether a page of this type carries page_data in the
// record: normal pages and page tables, pinned or not.
func (t PageType) HasData() bool { return t <= PageL4 || (t >= PageL1Pinned && t <= PageL4Pinned) }

// Valid reports whether t is a type of the specification (5-8 are reserved).
func (t PageType) Valid() bool { return t < 5 || t > 8 }

// String returns the specification's short name of the type.
func (t PageType) String() string {
	names := [16]string{"NOTAB", "L1TAB", "L2TAB", "L3TAB", "L4TAB", "RSVD5", "RSVD6", "RSVD7", "RSVD8",
		"L1TAB_PIN", "L2TAB_PIN", "L3TAB_PIN", "L4TAB_PIN", "BROKEN", "XALLOC", "XTAB"}
	return names[t&0xf]
}

// PFN entry layout in PAGE_DATA records.
const (
	PFNMask       = 1<<52 - 1          // bits 0-51: the PFN
	PFNReserved   = uint64(0xff) << 52 // bits 52-59: reserved, zero
	pageTypeShift = 60                 // bits 60-63: the page type
)

// PFNEntry builds a PAGE_DATA PFN entry from a PFN and a page type.
func PFNEntry(pfn uint64, t PageType) uint64 { return pfn&PFNMask | uint64(t)<<pageTypeShift }

// PageData carries guest memory: Count PFN entries and the contents of those
// pages whose type has data, in order. Decoded by a Reader, Entries and Data
// alias the Reader's buffers and are valid until its next Next.
type PageData struct {
	Reserved uint32   // the reserved word after count; zero in valid streams
	Entries  []uint64 // PFN entries: PFN in bits 0-51, type in bits 60-63
	Data     []byte   // page contents, PageSize bytes per page with data
}

// PFN returns the PFN of entry i.
func (p *PageData) PFN(i int) uint64 { return p.Entries[i] & PFNMask }

// PageType returns the page type of entry i.
func (p *PageData) PageType(i int) PageType { return PageType(p.Entries[i] >> pageTypeShift) }

// DataPages returns how many entries carry page contents.
func (p *PageData) DataPages() int {
	n := 0
	for _, e := range p.Entries {
		if PageType(e >> pageTypeShift).HasData() {
			n++
		}
	}
	return n
}

// Pages calls fn for every entry in order with its PFN, type and contents
// (nil for types without data), stopping when fn returns false. The data
// slices alias the record.
func (p *PageData) Pages(fn func(i int, pfn uint64, t PageType, data []byte) bool) {
	off := 0
	for i, e := range p.Entries {
		t := PageType(e >> pageTypeShift)
		var d []byte
		if t.HasData() && off+PageSize <= len(p.Data) {
			d = p.Data[off : off+PageSize : off+PageSize]
			off += PageSize
		}
		if !fn(i, e&PFNMask, t, d) {
			return
		}
	}
}

// X86PVInfo describes a PV guest's width and paging levels.
type X86PVInfo struct {
	GuestWidth uint8  // 4 or 8 bytes
	PTLevels   uint8  // 3 or 4
	Reserved1  uint16 // zero
	Reserved2  uint32 // zero
}

// X86PVP2MFrames lists the frames holding a PV guest's P2M for the PFN range
// StartPFN..EndPFN (inclusive).
type X86PVP2MFrames struct {
	StartPFN uint32
	EndPFN   uint32
	Frames   []uint64
}

// VCPUContext is the body of the four per-vCPU PV records (BASIC, EXTENDED,
// XSAVE, MSRS): a vCPU id and an opaque context blob. Kind says which.
type VCPUContext struct {
	Kind     RecordType // TypeX86PVVCPUBasic, ...Extended, ...XSave or ...MSRs
	VCPU     uint32
	Reserved uint32
	Context  []byte
}

// SharedInfo is the content of the PV shared info page.
type SharedInfo struct{ Data []byte }

// X86TSCInfo is the domain's TSC state (XEN_DOMCTL_gettscinfo).
type X86TSCInfo struct {
	Mode        uint32
	KHz         uint32
	Nsec        uint64
	Incarnation uint32
	Reserved    uint32
}

// HVMContext is the HVM context blob from XEN_DOMCTL_gethvmcontext.
type HVMContext struct{ Data []byte }

// An HVMParam is one HVM parameter.
type HVMParam struct{ Index, Value uint64 }

// HVMParams carries HVM parameters.
type HVMParams struct {
	Reserved uint32
	Params   []HVMParam
}

// Toolstack is the deprecated opaque toolstack blob.
type Toolstack struct{ Data []byte }

// Verify announces that further memory records follow for debugging.
type Verify struct{}

// Checkpoint ends one consistent round of a checkpointed stream.
type Checkpoint struct{}

// CheckpointDirtyPFNList is COLO's back-channel list of dirty PFNs.
type CheckpointDirtyPFNList struct{ PFNs []uint64 }

// StaticDataEnd marks the end of the state that does not depend on guest
// execution (v3 streams).
type StaticDataEnd struct{}

// A CPUIDLeaf is one xen_cpuid_leaf_t.
type CPUIDLeaf struct{ Leaf, Subleaf, A, B, C, D uint32 }

// X86CPUIDPolicy is the domain's CPUID policy.
type X86CPUIDPolicy struct{ Leaves []CPUIDLeaf }

// An MSREntry is one xen_msr_entry_t.
type MSREntry struct {
	Index uint32
	Flags uint32
	Value uint64
}

// X86MSRPolicy is the domain's MSR policy.
type X86MSRPolicy struct{ Entries []MSREntry }

// Raw is a record kept as its type and body: an unknown type, or, in relaxed
// mode, a known type whose body could not be decoded (Err says why).
type Raw struct {
	RecType RecordType
	Body    []byte
	Err     error
}

// Sizes fixed by Xen's public headers.
const (
	VCPUBasicSize64 = 5168 // sizeof(vcpu_guest_context_x86_64_t)
	VCPUBasicSize32 = 2800 // sizeof(vcpu_guest_context_x86_32_t)
	VCPUExtendedMax = 128
	VCPUXSaveMin    = 16
	vcpuMSRSize     = 16 // sizeof(xen_domctl_vcpu_msr_t)
	cpuidLeafSize   = 24
	msrEntrySize    = 16
	hvmParamSize    = 16
	tscInfoSize     = 24
	pvInfoSize      = 8
)

func (*End) Type() RecordType                    { return TypeEnd }
func (*PageData) Type() RecordType               { return TypePageData }
func (*X86PVInfo) Type() RecordType              { return TypeX86PVInfo }
func (*X86PVP2MFrames) Type() RecordType         { return TypeX86PVP2MFrames }
func (v *VCPUContext) Type() RecordType          { return v.Kind }
func (*SharedInfo) Type() RecordType             { return TypeSharedInfo }
func (*X86TSCInfo) Type() RecordType             { return TypeX86TSCInfo }
func (*HVMContext) Type() RecordType             { return TypeHVMContext }
func (*HVMParams) Type() RecordType              { return TypeHVMParams }
func (*Toolstack) Type() RecordType              { return TypeToolstack }
func (*Verify) Type() RecordType                 { return TypeVerify }
func (*Checkpoint) Type() RecordType             { return TypeCheckpoint }
func (*CheckpointDirtyPFNList) Type() RecordType { return TypeCheckpointDirtyPFNList }
func (*StaticDataEnd) Type() RecordType          { return TypeStaticDataEnd }
func (*X86CPUIDPolicy) Type() RecordType         { return TypeX86CPUIDPolicy }
func (*X86MSRPolicy) Type() RecordType           { return TypeX86MSRPolicy }
func (r *Raw) Type() RecordType                  { return r.RecType }

var le = binary.LittleEndian

// A bodyError is a structural problem with a record body: the field and the
// sentinel, turned into a FormatError by the Reader.
type bodyError struct {
	field     string
	err       error
	want, got string // expected versus actual, if known
}

func (e *bodyError) Error() string { return e.field + ": " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }
