package libxc

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/stream"
)

func TestValidStreams(t *testing.T) {
	for name, b := range map[string][]byte{
		"pv v3":  encode(t, 3, DomainX86PV, validPV()...),
		"hvm v3": encode(t, 3, DomainX86HVM, validHVM()...),
		"hvm v2": encode(t, 2, DomainX86HVM, validHVM()[3:]...),
	} {
		if err := readAll(b, false); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestInvalidStreams breaks one rule at a time and checks the error names
// the rule's sentinel, the record index and the field.
func TestInvalidStreams(t *testing.T) {
	pv := func(edit func([]Record) []Record) []byte { return encode(t, 3, DomainX86PV, edit(validPV())...) }
	hvm := func(edit func([]Record) []Record) []byte { return encode(t, 3, DomainX86HVM, edit(validHVM())...) }
	cases := []struct {
		name   string
		stream []byte
		want   error
		index  int
		field  string
	}{
		{"page data before STATIC_DATA_END", hvm(func(r []Record) []Record { r[2], r[3] = r[3], r[2]; return r }), stream.ErrOrder, 2, "type"},
		{"second STATIC_DATA_END", hvm(func(r []Record) []Record { return append(r[:4], append([]Record{&StaticDataEnd{}}, r[4:]...)...) }), stream.ErrOrder, 4, "type"},
		{"STATIC_DATA_END in v2", encode(t, 2, DomainX86HVM, validHVM()...), stream.ErrOrder, 0, "type"},
		{"PV record in HVM stream", hvm(func(r []Record) []Record { return append(r, &X86PVInfo{GuestWidth: 8, PTLevels: 4}) }), stream.ErrOrder, 7, "type"},
		{"HVM record in PV stream", pv(func(r []Record) []Record { return append(r, &HVMContext{Data: []byte{1}}) }), stream.ErrOrder, 10, "type"},
		{"bad width", pv(func(r []Record) []Record { r[0] = &X86PVInfo{GuestWidth: 8, PTLevels: 3}; return r }), stream.ErrValue, 0, "guest_width"},
		{"pv info reserved", pv(func(r []Record) []Record { r[0] = &X86PVInfo{GuestWidth: 8, PTLevels: 4, Reserved2: 1}; return r }), stream.ErrReserved, 0, "reserved"},
		{"second pv info", pv(func(r []Record) []Record { return append(r[:1], r...) }), stream.ErrOrder, 1, "type"},
		{"p2m before pv info", pv(func(r []Record) []Record { r[0] = &X86TSCInfo{}; return r }), stream.ErrOrder, 4, "type"},
		{"p2m frame count", pv(func(r []Record) []Record { r[4] = &X86PVP2MFrames{EndPFN: 0x1fff, Frames: []uint64{1}}; return r }), stream.ErrLength, 4, "p2m_pfn"},
		{"p2m start > end", pv(func(r []Record) []Record {
			r[4] = &X86PVP2MFrames{StartPFN: 2, EndPFN: 1, Frames: []uint64{1}}
			return r
		}), stream.ErrValue, 4, "p2m_start_pfn"},
		{"pfn beyond p2m", pv(func(r []Record) []Record {
			r[5] = &PageData{Entries: []uint64{PFNEntry(0x2000, PageNormal)}, Data: make([]byte, PageSize)}
			return r
		}), stream.ErrValue, 5, "pfn[0]"},
		{"pfn reserved bits", hvm(func(r []Record) []Record {
			r[3] = &PageData{Entries: []uint64{1, 2 | 1<<55}, Data: make([]byte, 2*PageSize)}
			return r
		}), stream.ErrReserved, 3, "pfn[1]"},
		{"page type 6", hvm(func(r []Record) []Record { r[3] = &PageData{Entries: []uint64{6 << 60}}; return r }), stream.ErrValue, 3, "pfn[0]"},
		{"page data count 0", hvm(func(r []Record) []Record { r[3] = &PageData{}; return r }), stream.ErrLength, 3, "count"},
		{"page data short", hvm(func(r []Record) []Record { r[3] = &PageData{Entries: []uint64{1}}; return r }), stream.ErrLength, 3, "page_data"},
		{"page data reserved", hvm(func(r []Record) []Record { r[3] = &PageData{Reserved: 1, Entries: []uint64{0xf << 60}}; return r }), stream.ErrReserved, 3, "reserved"},
		{"basic size", pv(func(r []Record) []Record {
			r[8] = &VCPUContext{Kind: TypeX86PVVCPUBasic, Context: make([]byte, VCPUBasicSize32)}
			return r
		}), stream.ErrLength, 8, "context"},
		{"extended too long", pv(func(r []Record) []Record {
			r[9] = &VCPUContext{Kind: TypeX86PVVCPUExtended, Context: make([]byte, 136)}
			return r
		}), stream.ErrLength, 9, "context"},
		{"xsave too short", pv(func(r []Record) []Record {
			return append(r, &VCPUContext{Kind: TypeX86PVVCPUXSave, Context: make([]byte, 8)})
		}), stream.ErrLength, 10, "context"},
		{"msrs not a multiple", pv(func(r []Record) []Record {
			return append(r, &VCPUContext{Kind: TypeX86PVVCPUMSRs, Context: make([]byte, 24)})
		}), stream.ErrLength, 10, "context"},
		{"vcpu reserved", pv(func(r []Record) []Record { return append(r, &VCPUContext{Kind: TypeX86PVVCPUMSRs, Reserved: 1}) }), stream.ErrReserved, 10, "reserved"},
		{"no vcpu0 basic", pv(func(r []Record) []Record { return r[:8] }), stream.ErrOrder, 8, "type"},
		{"shared info size", pv(func(r []Record) []Record { r[7] = &SharedInfo{Data: make([]byte, 100)}; return r }), stream.ErrLength, 7, "shared_info"},
		{"tsc reserved", hvm(func(r []Record) []Record { r[4] = &X86TSCInfo{Reserved: 1}; return r }), stream.ErrReserved, 4, "reserved"},
		{"hvm params reserved", hvm(func(r []Record) []Record { r[6] = &HVMParams{Reserved: 1}; return r }), stream.ErrReserved, 6, "reserved"},
		{"empty hvm context", hvm(func(r []Record) []Record { r[5] = &HVMContext{}; return r }), stream.ErrLength, 5, "hvm_ctx"},
		{"checkpoint undeclared", hvm(func(r []Record) []Record { return append(r, &Checkpoint{}) }), stream.ErrOrder, 7, "type"},
		{"unknown mandatory type", hvm(func(r []Record) []Record { return append(r, &Raw{RecType: 0x99}) }), stream.ErrUnknownType, 7, "type"},
		{"empty CPUID policy", hvm(func(r []Record) []Record { r[0] = &X86CPUIDPolicy{}; return r }), stream.ErrLength, 0, "CPUID_policy"},
		{"empty MSR policy", hvm(func(r []Record) []Record { r[1] = &X86MSRPolicy{}; return r }), stream.ErrLength, 1, "MSR_policy"},
		{"end with body", hvm(func(r []Record) []Record { return append(r, &Raw{RecType: TypeEnd, Body: []byte{1}}) }), stream.ErrLength, 7, "body_length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := readAll(tc.stream, false)
			var fe *stream.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FormatError", err)
			}
			if !errors.Is(err, tc.want) || fe.Index != tc.index || fe.Field != tc.field || fe.Layer != Layer {
				t.Fatalf("err = %v (index %d, field %q), want %v at index %d field %q", err, fe.Index, fe.Field, tc.want, tc.index, tc.field)
			}
			// The offset names the record's header: its type is there.
			if fe.Offset < 40 || fe.Offset%8 != 0 || RecordType(le.Uint32(tc.stream[fe.Offset:])) != RecordType(fe.Type) {
				t.Fatalf("offset %d does not point at a record of type %#x", fe.Offset, fe.Type)
			}
			// Relaxed reading gets through all of these.
			rd := NewReader(bytes.NewReader(tc.stream))
			rd.Relaxed = true
			for n := 0; ; n++ {
				if _, err := rd.Next(); err != nil {
					if !rd.Ended() {
						t.Fatalf("relaxed read stopped at record %d: %v", n, err)
					}
					break
				}
			}
		})
	}
}

func TestHeaderErrors(t *testing.T) {
	good := encode(t, 3, DomainX86HVM, validHVM()...)
	cases := []struct {
		name  string
		at    int
		val   byte
		field string
		want  error
	}{
		{"marker", 0, 0xfe, "marker", stream.ErrValue},
		{"id", 8, 'Y', "id", stream.ErrValue},
		{"version", 15, 4, "version", stream.ErrValue},
		{"big endian", 17, 1, "options", ErrBigEndian},
		{"reserved", 19, 1, "options", stream.ErrReserved},
		{"domain type", 24, 3, "type", stream.ErrValue},
		{"page shift", 28, 13, "page_shift", stream.ErrValue},
		{"domain reserved", 30, 1, "reserved", stream.ErrReserved},
	}
	for _, tc := range cases {
		b := bytes.Clone(good)
		b[tc.at] = tc.val
		err := readAll(b, false)
		var fe *stream.FormatError
		if !errors.As(err, &fe) || !errors.Is(err, tc.want) || fe.Field != tc.field || fe.Index != -1 {
			t.Errorf("%s: err = %v, want %v in field %s", tc.name, err, tc.want, tc.field)
		}
	}
	for n := 0; n < len(good); n += 7 {
		if err := readAll(good[:n], false); !errors.Is(err, stream.ErrTruncated) && !errors.Is(err, ErrNoEnd) {
			t.Fatalf("truncated at %d: err = %v", n, err)
		}
	}
}

// TestPadding checks that non-zero padding is an error naming the field.
func TestPadding(t *testing.T) {
	b := encode(t, 3, DomainX86HVM, append(validHVM(), &Toolstack{Data: []byte{1}})...)
	at := bytes.LastIndex(b, []byte{0x0b, 0, 0, 0, 1, 0, 0, 0}) + 8 + 1
	b[at] = 0xff
	var fe *stream.FormatError
	if err := readAll(b, false); !errors.As(err, &fe) || !errors.Is(err, stream.ErrPadding) || fe.Index != 7 {
		t.Fatalf("err = %v", err)
	}
}

// TestSizeCap checks that a lying length fails before any allocation of it.
func TestSizeCap(t *testing.T) {
	b := encode(t, 3, DomainX86HVM)
	end := len(b) - 8
	le.PutUint32(b[end:], uint32(TypeHVMContext))
	le.PutUint32(b[end+4:], 0xfffffff0)
	rd := NewReader(bytes.NewReader(b))
	rd.SetMaxRecordSize(1 << 20)
	allocs := testing.AllocsPerRun(1, func() { r := NewReader(bytes.NewReader(b)); r.SetMaxRecordSize(1 << 20); r.Next() })
	if _, err := rd.Next(); !errors.Is(err, stream.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if allocs > 20 {
		t.Fatalf("%v allocations for a rejected record", allocs)
	}
}

func TestCheckpointRounds(t *testing.T) {
	r := validHVM()
	b := encode(t, 3, DomainX86HVM, append(append(r, &Checkpoint{}), r[3:]...)...)
	if err := readAll(b, true); err != nil {
		t.Fatal(err)
	}
	out, n, counts := roundTrip(t, b, true)
	if !bytes.Equal(out, b) || n != int64(len(b)) || counts[TypePageData] != 2 {
		t.Fatalf("checkpointed round trip: %d of %d bytes equal=%v counts %v", n, len(b), bytes.Equal(out, b), counts)
	}
}
