package libxc

import (
	"fmt"
	"slices"

	"github.com/xensr/xensr/stream"
)

// MaxPVVCPUs is the most vCPUs Xen 4.17 gives a PV domain (MAX_VIRT_CPUS on
// x86): without a configured count, vCPU ids must be below it.
const MaxPVVCPUs = 8192

// checker holds the cross-record state of strict validation: the rules of
// verify-stream-v2 and of Xen's C restore (xg_sr_restore*.c).
type checker struct {
	version    uint32
	dom        DomainType
	staticEnd  bool
	pvInfo     bool
	width      uint8
	maxPFN     int64 // highest PFN the P2M frames cover; -1 before any
	vcpu0Basic bool
	hvmContext bool // an HVM_CONTEXT was read
	vcpus      int  // vCPU ids must be below this

	// The PV P2M frame list: frames[i] is the PFN holding P2M frame i, as
	// the X86_PV_P2M_FRAMES records set it. framePFNs is its sorted set
	// of distinct PFNs and frameState the page type last sent for each in
	// PAGE_DATA after the record that named it (frameUnsent before any).
	frames     []uint64
	framePFNs  []uint64
	frameState []uint8
}

// frameState values.
const (
	frameUnsent uint8 = iota
	frameNormal
	frameOther
)

func fieldErr(field string, err error) error { return &bodyError{field: field, err: err} }

// wantErr is fieldErr with expected versus actual.
func wantErr(field string, err error, want, got string) error {
	return &bodyError{field: field, err: err, want: want, got: got}
}

func pvOnly(t RecordType) bool {
	switch t {
	case TypeX86PVInfo, TypeX86PVP2MFrames, TypeX86PVVCPUBasic, TypeX86PVVCPUExtended,
		TypeX86PVVCPUXSave, TypeX86PVVCPUMSRs, TypeSharedInfo:
		return true
	}
	return false
}

func (c *checker) record(r *Reader, rec Record) error {
	t := rec.Type()
	if raw, ok := rec.(*Raw); ok {
		if !raw.RecType.Optional() {
			return fieldErr("type", stream.ErrUnknownType)
		}
		return nil
	}
	if pvOnly(t) && c.dom != DomainX86PV {
		return fieldErr("type", fmt.Errorf("%w: %v in an %v stream", stream.ErrOrder, t, c.dom))
	}
	if (t == TypeHVMContext || t == TypeHVMParams) && c.dom != DomainX86HVM {
		return fieldErr("type", fmt.Errorf("%w: %v in an %v stream", stream.ErrOrder, t, c.dom))
	}
	if c.version < HeaderVersion3 && (t == TypeStaticDataEnd || t == TypeX86CPUIDPolicy || t == TypeX86MSRPolicy) {
		return fieldErr("type", fmt.Errorf("%w: %v in a v2 stream", stream.ErrOrder, t))
	}
	switch rec := rec.(type) {
	case *StaticDataEnd:
		if c.staticEnd {
			return fieldErr("type", fmt.Errorf("%w: second STATIC_DATA_END", stream.ErrOrder))
		}
		c.staticEnd = true
	case *PageData:
		if err := c.staticDataBefore(t); err != nil {
			return err
		}
		return c.pageData(rec)
	case *X86PVInfo:
		if c.pvInfo {
			return fieldErr("type", fmt.Errorf("%w: second X86_PV_INFO", stream.ErrOrder))
		}
		if !(rec.GuestWidth == 8 && rec.PTLevels == 4) && !(rec.GuestWidth == 4 && rec.PTLevels == 3) {
			return fieldErr("guest_width", fmt.Errorf("%w: width %d with %d page-table levels", stream.ErrValue, rec.GuestWidth, rec.PTLevels))
		}
		if rec.Reserved1 != 0 || rec.Reserved2 != 0 {
			return fieldErr("reserved", stream.ErrReserved)
		}
		c.pvInfo, c.width = true, rec.GuestWidth
	case *X86PVP2MFrames:
		if err := c.staticDataBefore(t); err != nil {
			return err
		}
		if !c.pvInfo {
			return fieldErr("type", fmt.Errorf("%w: X86_PV_P2M_FRAMES before X86_PV_INFO", stream.ErrOrder))
		}
		if rec.StartPFN > rec.EndPFN {
			return wantErr("p2m_start_pfn", fmt.Errorf("%w: start pfn after end pfn", stream.ErrValue), fmt.Sprintf("at most the end pfn %#x", rec.EndPFN), fmt.Sprintf("%#x", rec.StartPFN))
		}
		fpp := uint32(PageSize) / uint32(c.width)
		if want := int(rec.EndPFN/fpp + 1 - rec.StartPFN/fpp); len(rec.Frames) != want {
			return wantErr("p2m_pfn", fmt.Errorf("%w: frames for pfns %#x-%#x", stream.ErrLength, rec.StartPFN, rec.EndPFN),
				fmt.Sprintf("%d frames", want), fmt.Sprintf("%d", len(rec.Frames)))
		}
		if err := c.p2mFrames(rec, fpp); err != nil {
			return err
		}
		c.maxPFN = max(c.maxPFN, int64(rec.EndPFN))
	case *SharedInfo:
		if !c.pvInfo {
			return fieldErr("type", fmt.Errorf("%w: SHARED_INFO before X86_PV_INFO", stream.ErrOrder))
		}
	case *VCPUContext:
		return c.vcpu(rec)
	case *X86TSCInfo:
		if rec.Reserved != 0 {
			return fieldErr("reserved", stream.ErrReserved)
		}
	case *X86CPUIDPolicy:
		if len(rec.Leaves) == 0 {
			return wantErr("CPUID_policy", fmt.Errorf("%w: empty policy", stream.ErrLength), fmt.Sprintf("at least %d bytes", cpuidLeafSize), "0 bytes")
		}
	case *X86MSRPolicy:
		if len(rec.Entries) == 0 {
			return wantErr("MSR_policy", fmt.Errorf("%w: empty policy", stream.ErrLength), fmt.Sprintf("at least %d bytes", msrEntrySize), "0 bytes")
		}
	case *HVMParams:
		if rec.Reserved != 0 {
			return fieldErr("reserved", stream.ErrReserved)
		}
	case *Checkpoint:
		if !r.Checkpointed {
			return fieldErr("type", fmt.Errorf("%w: CHECKPOINT in a stream not declared checkpointed", stream.ErrOrder))
		}
	case *CheckpointDirtyPFNList:
		// Only the COLO secondary sends it, on the back channel; Xen's
		// restore has no handler ("mandatory record not handled").
		return fieldErr("type", fmt.Errorf("%w: CHECKPOINT_DIRTY_PFN_LIST belongs to COLO's back channel; a restore refuses it", stream.ErrUnknownType))
	case *Toolstack:
		// Deprecated; Xen 4.17's restore has no handler for it.
		return fieldErr("type", fmt.Errorf("%w: TOOLSTACK is not handled by Xen 4.17's restore", stream.ErrUnknownType))
	case *HVMContext:
		c.hvmContext = true
	case *End:
		switch c.dom {
		case DomainX86PV:
			if !c.vcpu0Basic {
				return fieldErr("type", fmt.Errorf("%w: END before vCPU 0's X86_PV_VCPU_BASIC", stream.ErrOrder))
			}
			return c.p2mComplete()
		case DomainX86HVM:
			if !c.hvmContext {
				return wantErr("type", fmt.Errorf("%w: END of an HVM stream without HVM_CONTEXT", stream.ErrOrder), "an HVM_CONTEXT record before END", "none")
			}
		}
	}
	return nil
}

// p2mFrames records an X86_PV_P2M_FRAMES record in the frame list. Xen
// accepts frame records in any order as long as the list is whole at END;
// this checker is stricter on purpose: a record may not leave a gap after
// the frames already covered (Xen writes one record from frame 0), which
// keeps the frame list as large as the frame records read and no larger.
func (c *checker) p2mFrames(rec *X86PVP2MFrames, fpp uint32) error {
	first := int(rec.StartPFN / fpp)
	if first > len(c.frames) {
		return wantErr("p2m_start_pfn", fmt.Errorf("%w: frames %d-%d left uncovered", stream.ErrOrder, len(c.frames), first-1),
			fmt.Sprintf("a start PFN at most %#x", uint64(len(c.frames))*uint64(fpp)), fmt.Sprintf("%#x", rec.StartPFN))
	}
	if end := first + len(rec.Frames); end > len(c.frames) {
		c.frames = slices.Grow(c.frames, end-len(c.frames))[:end]
	}
	copy(c.frames[first:], rec.Frames)
	// The set of frame PFNs: states of PFNs named before carry over.
	pfns := slices.Clone(c.frames)
	slices.Sort(pfns)
	pfns = slices.Compact(pfns)
	states := make([]uint8, len(pfns))
	for i, p := range pfns {
		if j, ok := slices.BinarySearch(c.framePFNs, p); ok {
			states[i] = c.frameState[j]
		}
	}
	c.framePFNs, c.frameState = pfns, states
	return nil
}

// notePage tracks the type last sent for a PFN that holds a P2M frame.
func (c *checker) notePage(pfn uint64, t PageType) {
	if len(c.framePFNs) == 0 {
		return
	}
	if j, ok := slices.BinarySearch(c.framePFNs, pfn); ok {
		if t == PageNormal {
			c.frameState[j] = frameNormal
		} else {
			c.frameState[j] = frameOther
		}
	}
}

// p2mComplete checks the P2M frame list at END as Xen's restore does when
// it rewrites the guest's P2M: every frame up to max_pfn is named, by a PFN
// at most max_pfn that was sent as a normal page.
func (c *checker) p2mComplete() error {
	if c.maxPFN < 0 {
		return wantErr("type", fmt.Errorf("%w: END of a PV stream without X86_PV_P2M_FRAMES", stream.ErrOrder), "an X86_PV_P2M_FRAMES record", "none")
	}
	fpp := int64(PageSize) / int64(c.width)
	if want := c.maxPFN/fpp + 1; int64(len(c.frames)) < want {
		return wantErr("p2m_frames", fmt.Errorf("%w: P2M frame list incomplete", stream.ErrOrder),
			fmt.Sprintf("%d frames for max pfn %#x", want, c.maxPFN), fmt.Sprintf("%d", len(c.frames)))
	}
	for i, pfn := range c.frames {
		if int64(pfn) > c.maxPFN || pfn > PFNMask {
			return wantErr(fmt.Sprintf("p2m_pfn[%d]", i), fmt.Errorf("%w: P2M frame pfn beyond max pfn", stream.ErrValue),
				fmt.Sprintf("at most %#x", c.maxPFN), fmt.Sprintf("%#x", pfn))
		}
		j, _ := slices.BinarySearch(c.framePFNs, pfn)
		switch c.frameState[j] {
		case frameUnsent:
			return wantErr(fmt.Sprintf("p2m_pfn[%d]", i), fmt.Errorf("%w: P2M frame pfn %#x never sent in PAGE_DATA after the frame list", stream.ErrValue, pfn),
				"a normal page", "not sent")
		case frameOther:
			return wantErr(fmt.Sprintf("p2m_pfn[%d]", i), fmt.Errorf("%w: P2M frame pfn %#x is not a normal page", stream.ErrValue, pfn),
				"a normal page", "another page type")
		}
	}
	return nil
}

// staticDataBefore enforces that memory records follow STATIC_DATA_END in
// v3 streams (v2 streams imply it at the first of them).
func (c *checker) staticDataBefore(t RecordType) error {
	if c.version >= HeaderVersion3 && !c.staticEnd {
		return fieldErr("type", fmt.Errorf("%w: %v before STATIC_DATA_END", stream.ErrOrder, t))
	}
	c.staticEnd = true
	return nil
}

func (c *checker) pageData(p *PageData) error {
	if len(p.Entries) == 0 {
		return fieldErr("count", fmt.Errorf("%w: count is 0", stream.ErrLength))
	}
	if p.Reserved != 0 {
		return fieldErr("reserved", stream.ErrReserved)
	}
	for i, e := range p.Entries {
		if e&PFNReserved != 0 {
			return fieldErr(fmt.Sprintf("pfn[%d]", i), stream.ErrReserved)
		}
		if t := PageType(e >> pageTypeShift); !t.Valid() {
			return wantErr(fmt.Sprintf("pfn[%d]", i), fmt.Errorf("%w: reserved page type", stream.ErrValue), "a page type other than 5-8", fmt.Sprintf("%#x", uint8(t)))
		}
		if c.dom == DomainX86PV && int64(e&PFNMask) > c.maxPFN {
			return wantErr(fmt.Sprintf("pfn[%d]", i), fmt.Errorf("%w: pfn beyond the P2M's max pfn", stream.ErrValue),
				fmt.Sprintf("at most %#x", c.maxPFN), fmt.Sprintf("%#x", e&PFNMask))
		}
	}
	if c.dom == DomainX86PV {
		for _, e := range p.Entries {
			c.notePage(e&PFNMask, PageType(e>>pageTypeShift))
		}
	}
	return nil
}

func (c *checker) vcpu(v *VCPUContext) error {
	if !c.pvInfo {
		return fieldErr("type", fmt.Errorf("%w: %v before X86_PV_INFO", stream.ErrOrder, v.Kind))
	}
	if v.Reserved != 0 {
		return fieldErr("reserved", stream.ErrReserved)
	}
	n := len(v.Context)
	if n == 0 { // tolerated by Xen, whatever the id: older senders wrote empty records
		return nil
	}
	if max := c.vcpus; uint64(v.VCPU) >= uint64(max) {
		return wantErr("vcpu_id", fmt.Errorf("%w: vCPU id beyond the domain's vCPUs", stream.ErrValue),
			fmt.Sprintf("below %d", max), fmt.Sprintf("%d", v.VCPU))
	}
	switch v.Kind {
	case TypeX86PVVCPUBasic:
		want := VCPUBasicSize64
		if c.width == 4 {
			want = VCPUBasicSize32
		}
		if n != want {
			return wantErr("context", fmt.Errorf("%w: context of a %d-byte guest", stream.ErrLength, c.width), stream.Bytes(want), stream.Bytes(n))
		}
		if v.VCPU == 0 {
			c.vcpu0Basic = true
		}
	case TypeX86PVVCPUExtended:
		if n > VCPUExtendedMax {
			return wantErr("context", stream.ErrLength, "at most "+stream.Bytes(VCPUExtendedMax), stream.Bytes(n))
		}
	case TypeX86PVVCPUXSave:
		if n < VCPUXSaveMin {
			return wantErr("context", stream.ErrLength, "at least "+stream.Bytes(VCPUXSaveMin), stream.Bytes(n))
		}
	case TypeX86PVVCPUMSRs:
		if n%vcpuMSRSize != 0 {
			return wantErr("context", stream.ErrLength, fmt.Sprintf("a multiple of %d bytes", vcpuMSRSize), stream.Bytes(n))
		}
	}
	return nil
}
