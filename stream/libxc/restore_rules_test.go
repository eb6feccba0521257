package libxc

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/xensr/xensr/stream"
)

// TestXenRestoreRules covers the streams of issue 14 item 3 that Xen 4.17's
// restore (xg_sr_restore*.c) refuses and strict mode once accepted. Each
// case names the C check it follows.
func TestXenRestoreRules(t *testing.T) {
	pv := func(edit func([]Record) []Record) []byte { return encode(t, 3, DomainX86PV, edit(validPV())...) }
	hvm := func(edit func([]Record) []Record) []byte { return encode(t, 3, DomainX86HVM, edit(validHVM())...) }
	frames := func(pfns ...uint64) func([]Record) []Record {
		return func(r []Record) []Record {
			f := recordTable[3].sample().(*X86PVP2MFrames)
			copy(f.Frames, pfns)
			r[4] = f
			return r
		}
	}
	vcpu := func(id uint32) func([]Record) []Record {
		return func(r []Record) []Record {
			return append(r, &VCPUContext{Kind: TypeX86PVVCPUExtended, VCPU: id, Context: make([]byte, 8)})
		}
	}
	cases := []struct {
		name         string
		stream       []byte
		checkpointed bool
		vcpus        int
		want         error
		index        int
		field        string
	}{
		// restore(): "Mandatory record %#x (%s) not handled".
		{"TOOLSTACK", hvm(func(r []Record) []Record { return append(r, &Toolstack{Data: []byte{1}}) }), false, 0, stream.ErrUnknownType, 7, "type"},
		{"TOOLSTACK in PV", pv(func(r []Record) []Record { return append(r, &Toolstack{}) }), false, 0, stream.ErrUnknownType, 10, "type"},
		{"CHECKPOINT_DIRTY_PFN_LIST checkpointed", hvm(func(r []Record) []Record {
			return append(r, &Checkpoint{}, &CheckpointDirtyPFNList{PFNs: []uint64{1}})
		}), true, 0, stream.ErrUnknownType, 8, "type"},
		// update_guest_p2m(): frame pfn out of range / bad type / bad mfn.
		{"P2M frame past max_pfn", pv(frames(0x2000)), false, 0, stream.ErrValue, 10, "p2m_pfn[0]"},
		{"P2M frame not a normal page", pv(frames(0x1fff)), false, 0, stream.ErrValue, 10, "p2m_pfn[0]"},
		{"P2M frame an XTAB page", pv(frames(0x100, 7)), false, 0, stream.ErrValue, 10, "p2m_pfn[1]"},
		{"P2M frame never sent", pv(frames(0x100, 0x101, 0x102, 0x1ffe)), false, 0, stream.ErrValue, 10, "p2m_pfn[3]"},
		{"P2M frames with a gap", pv(func(r []Record) []Record {
			return append(r[:5], append([]Record{&X86PVP2MFrames{StartPFN: 0x4000, EndPFN: 0x4000, Frames: []uint64{0x100}}}, r[5:]...)...)
		}), false, 0, stream.ErrOrder, 5, "p2m_start_pfn"},
		{"P2M frames with a gap after an extension", pv(func(r []Record) []Record {
			return append(r[:5], append([]Record{&X86PVP2MFrames{StartPFN: 0x2000, EndPFN: 0x2000, Frames: []uint64{0x100}}, &X86PVP2MFrames{StartPFN: 0x2400, EndPFN: 0x2400, Frames: []uint64{0x100}}}, r[5:]...)...)
		}), false, 0, stream.ErrOrder, 6, "p2m_start_pfn"},
		{"PV without P2M frames", pv(func(r []Record) []Record { return append(r[:4], r[6:]...) }), false, 0, stream.ErrOrder, 8, "type"},
		// handle_x86_pv_vcpu_blob(): "vcpu_id (%u) exceeds domain max".
		{"vCPU 0xffffffff", pv(vcpu(0xffffffff)), false, 0, stream.ErrValue, 10, "vcpu_id"},
		{"vCPU at MaxPVVCPUs", pv(vcpu(MaxPVVCPUs)), false, 0, stream.ErrValue, 10, "vcpu_id"},
		{"vCPU at the configured count", pv(vcpu(2)), false, 2, stream.ErrValue, 10, "vcpu_id"},
		// x86_hvm_stream_complete(): xc_domain_hvm_setcontext of no context fails.
		{"HVM without HVM_CONTEXT", hvm(func(r []Record) []Record { return append(r[:5], r[6:]...) }), false, 0, stream.ErrOrder, 6, "type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd := NewReader(bytes.NewReader(tc.stream))
			rd.Checkpointed, rd.VCPUs = tc.checkpointed, tc.vcpus
			var err error
			for err == nil {
				_, err = rd.Next()
			}
			var fe *stream.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, tc.want) || fe.Index != tc.index || fe.Field != tc.field {
				t.Fatalf("err = %v, want %v at record %d field %q", err, tc.want, tc.index, tc.field)
			}
			if fe.TypeName == "" {
				t.Errorf("error does not name the record type: %v", err)
			}
		})
	}
	// The counterparts pass: vCPU 1 of 2, an empty record of any id (Xen
	// skips those), HVM with its context.
	for name, b := range map[string][]byte{
		"vCPU below the count": pv(vcpu(1)),
		"empty vCPU record":    pv(func(r []Record) []Record { return append(r, &VCPUContext{Kind: TypeX86PVVCPUXSave, VCPU: 0xffffffff}) }),
	} {
		rd := NewReader(bytes.NewReader(b))
		rd.VCPUs = 2
		var err error
		for err == nil {
			_, err = rd.Next()
		}
		if err != io.EOF {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestErrorNames checks the error text of issue 14 item 7: record types by
// name, lengths as expected versus actual, a reserved page type named by
// its entry, and no phantom record for a missing END.
func TestErrorNames(t *testing.T) {
	hvm := func(edit func([]Record) []Record) []byte { return encode(t, 3, DomainX86HVM, edit(validHVM())...) }
	rsvd := hvm(func(r []Record) []Record {
		r[3] = &PageData{Entries: []uint64{PFNEntry(1, PageNormal), PFNEntry(2, PageNormal), PFNEntry(3, PageNormal), PFNEntry(4, PageType(6))},
			Data: make([]byte, 4*PageSize)}
		return r
	})
	noEnd := hvm(func(r []Record) []Record { return r })
	noEnd = noEnd[:len(noEnd)-8]
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"length", hvm(func(r []Record) []Record { r[4] = &Raw{RecType: TypeX86TSCInfo, Body: make([]byte, 16)}; return r }),
			"libxc: record 4 (X86_TSC_INFO) at offset 4224, field body_length: bad record length: expected 24 bytes, got 16 bytes"},
		{"reserved page type", rsvd,
			"libxc: record 3 (PAGE_DATA) at offset 104, field pfn[3]: invalid field value: reserved page type 0x6: expected a page type other than 5-8, got 0x6"},
		{"missing END", noEnd,
			"libxc: at offset 4304, field END: stream ended before the END record: expected an END record, got end of input"},
	}
	for _, tc := range cases {
		err := readAll(tc.in, false)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, err, tc.want)
		}
	}
}
