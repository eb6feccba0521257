package libxc

import (
	"bytes"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// recordTable lists every record type of the libxc specification with its
// section and a valid sample. The round-trip test, the fuzz seeds and the
// generated streams all draw from it.
var recordTable = []struct {
	section string
	sample  func() Record
	dom     DomainType // domain type the record belongs to; 0 = both
}{
	{"END", func() Record { return &End{} }, 0},
	{"PAGE_DATA", func() Record {
		p := &PageData{Entries: []uint64{PFNEntry(1, PageNormal), PFNEntry(2, PageXTab), PFNEntry(3, PageL1Pinned)}}
		p.Data = bytes.Repeat([]byte{0xab}, 2*PageSize)
		return p
	}, 0},
	{"X86_PV_INFO", func() Record { return &X86PVInfo{GuestWidth: 8, PTLevels: 4} }, DomainX86PV},
	{"X86_PV_P2M_FRAMES", func() Record {
		return &X86PVP2MFrames{StartPFN: 0, EndPFN: 0x1fff, Frames: []uint64{0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10a, 0x10b, 0x10c, 0x10d, 0x10e, 0x10f}}
	}, DomainX86PV},
	{"X86_PV_VCPU_BASIC", func() Record { return &VCPUContext{Kind: TypeX86PVVCPUBasic, Context: make([]byte, VCPUBasicSize64)} }, DomainX86PV},
	{"X86_PV_VCPU_EXTENDED", func() Record { return &VCPUContext{Kind: TypeX86PVVCPUExtended, Context: make([]byte, 128)} }, DomainX86PV},
	{"X86_PV_VCPU_XSAVE", func() Record { return &VCPUContext{Kind: TypeX86PVVCPUXSave, Context: make([]byte, 832)} }, DomainX86PV},
	{"SHARED_INFO", func() Record { return &SharedInfo{Data: make([]byte, PageSize)} }, DomainX86PV},
	{"X86_TSC_INFO", func() Record { return &X86TSCInfo{Mode: 2, KHz: 2000000, Nsec: 123456789, Incarnation: 1} }, 0},
	{"HVM_CONTEXT", func() Record { return &HVMContext{Data: []byte("hvm context blob")} }, DomainX86HVM},
	{"HVM_PARAMS", func() Record { return &HVMParams{Params: []HVMParam{{1, 2}, {3, 0xfeff}}} }, DomainX86HVM},
	{"TOOLSTACK", func() Record { return &Toolstack{Data: []byte{1, 2, 3}} }, 0},
	{"X86_PV_VCPU_MSRS", func() Record { return &VCPUContext{Kind: TypeX86PVVCPUMSRs, VCPU: 0, Context: make([]byte, 32)} }, DomainX86PV},
	{"VERIFY", func() Record { return &Verify{} }, 0},
	{"CHECKPOINT", func() Record { return &Checkpoint{} }, 0},
	{"CHECKPOINT_DIRTY_PFN_LIST", func() Record { return &CheckpointDirtyPFNList{PFNs: []uint64{5, 9}} }, 0},
	{"STATIC_DATA_END", func() Record { return &StaticDataEnd{} }, 0},
	{"X86_CPUID_POLICY", func() Record {
		return &X86CPUIDPolicy{Leaves: []CPUIDLeaf{{0, 0xffffffff, 0xd, 0x68747541, 0x444d4163, 0x69746e65}}}
	}, 0},
	{"X86_MSR_POLICY", func() Record { return &X86MSRPolicy{Entries: []MSREntry{{0xce, 0, 1 << 31}}} }, 0},
	{"optional record", func() Record { return &Raw{RecType: OptionalBit | 0x42, Body: []byte("ignored")} }, 0},
}

// TestTableCoversSpec checks that the table names every type the
// specification defines, in order, and that the types print those names.
func TestTableCoversSpec(t *testing.T) {
	for i, name := range typeNames {
		if recordTable[i].section != name {
			t.Errorf("table[%d] = %s, want %s", i, recordTable[i].section, name)
		}
		if got := recordTable[i].sample().Type(); got != RecordType(i) || got.String() != name {
			t.Errorf("sample %s has type %v", name, got)
		}
	}
}

// TestRecordRoundTrip encodes each sample alone in a relaxed stream and
// decodes it back.
func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range recordTable {
		t.Run(tc.section, func(t *testing.T) {
			want := tc.sample()
			var buf bytes.Buffer
			w := NewWriter(&buf)
			w.WriteHeader(NewImageHeader(3), DomainHeader{Type: DomainX86PV, PageShift: PageShift})
			if err := w.WriteRecord(want); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if buf.Len()%8 != 0 {
				t.Fatalf("stream length %d not 8-aligned", buf.Len())
			}
			rd := NewReader(bytes.NewReader(buf.Bytes()))
			rd.Relaxed = true
			got, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// encode writes a stream of the given records (END added by Close).
func encode(t interface{ Fatal(args ...any) }, version uint32, dom DomainType, recs ...Record) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(NewImageHeader(version), DomainHeader{Type: dom, PageShift: PageShift, XenMajor: 4, XenMinor: 17}); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll decodes a stream strictly and returns the first error.
func readAll(b []byte, checkpointed bool) error {
	rd := NewReader(bytes.NewReader(b))
	rd.Checkpointed = checkpointed
	for {
		_, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// validPV returns the records of a small valid PV stream in the order Xen 4.17 writes them.
func validPV() []Record {
	page := &PageData{Entries: []uint64{PFNEntry(0, PageNormal), PFNEntry(0x1fff, PageL4Pinned), PFNEntry(7, PageXTab)}, Data: make([]byte, 2*PageSize)}
	// The P2M frame list (recordTable's sample) lives in PFNs
	// 0x100-0x10f: Xen's restore wants them sent as normal pages.
	for pfn := uint64(0x100); pfn < 0x110; pfn++ {
		page.Entries = append(page.Entries, PFNEntry(pfn, PageNormal))
		page.Data = append(page.Data, make([]byte, PageSize)...)
	}
	return []Record{
		&X86PVInfo{GuestWidth: 8, PTLevels: 4},
		recordTable[17].sample(), recordTable[18].sample(),
		&StaticDataEnd{},
		recordTable[3].sample(),
		page,
		&X86TSCInfo{},
		&SharedInfo{Data: make([]byte, PageSize)},
		&VCPUContext{Kind: TypeX86PVVCPUBasic, Context: make([]byte, VCPUBasicSize64)},
		&VCPUContext{Kind: TypeX86PVVCPUExtended, Context: make([]byte, 96)},
	}
}

// validHVM returns the records of a small valid HVM (PVH) stream.
func validHVM() []Record {
	return []Record{
		recordTable[17].sample(), recordTable[18].sample(), &StaticDataEnd{},
		&PageData{Entries: []uint64{PFNEntry(0xfeff0, PageNormal)}, Data: make([]byte, PageSize)},
		&X86TSCInfo{}, &HVMContext{Data: []byte{1}}, &HVMParams{Params: []HVMParam{{2, 3}}},
	}
}
