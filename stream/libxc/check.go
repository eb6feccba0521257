package libxc

import (
	"fmt"

	"github.com/xensr/xensr/stream"
)

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
}

func fieldErr(field string, err error) error { return &bodyError{field, err} }

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
			return fieldErr("p2m_start_pfn", fmt.Errorf("%w: start %#x > end %#x", stream.ErrValue, rec.StartPFN, rec.EndPFN))
		}
		fpp := uint32(PageSize) / uint32(c.width)
		if want := int(rec.EndPFN/fpp + 1 - rec.StartPFN/fpp); len(rec.Frames) != want {
			return fieldErr("p2m_pfn", fmt.Errorf("%w: %d frames for pfns %#x-%#x, want %d", stream.ErrLength, len(rec.Frames), rec.StartPFN, rec.EndPFN, want))
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
			return fieldErr("CPUID_policy", fmt.Errorf("%w: empty policy", stream.ErrLength))
		}
	case *X86MSRPolicy:
		if len(rec.Entries) == 0 {
			return fieldErr("MSR_policy", fmt.Errorf("%w: empty policy", stream.ErrLength))
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
		if !r.Checkpointed {
			return fieldErr("type", fmt.Errorf("%w: CHECKPOINT_DIRTY_PFN_LIST in a stream not declared checkpointed", stream.ErrOrder))
		}
	case *End:
		if c.dom == DomainX86PV && !c.vcpu0Basic {
			return fieldErr("type", fmt.Errorf("%w: END before vCPU 0's X86_PV_VCPU_BASIC", stream.ErrOrder))
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
			return fieldErr(fmt.Sprintf("pfn[%d]", i), fmt.Errorf("%w: page type %#x", stream.ErrValue, uint8(t)))
		}
		if c.dom == DomainX86PV && int64(e&PFNMask) > c.maxPFN {
			return fieldErr(fmt.Sprintf("pfn[%d]", i), fmt.Errorf("%w: pfn %#x beyond the P2M's max pfn %#x", stream.ErrValue, e&PFNMask, c.maxPFN))
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
	if n == 0 { // tolerated by Xen: older senders wrote empty records
		return nil
	}
	switch v.Kind {
	case TypeX86PVVCPUBasic:
		want := VCPUBasicSize64
		if c.width == 4 {
			want = VCPUBasicSize32
		}
		if n != want {
			return fieldErr("context", fmt.Errorf("%w: %d bytes, want %d for a %d-byte guest", stream.ErrLength, n, want, c.width))
		}
		if v.VCPU == 0 {
			c.vcpu0Basic = true
		}
	case TypeX86PVVCPUExtended:
		if n > VCPUExtendedMax {
			return fieldErr("context", fmt.Errorf("%w: %d bytes, max %d", stream.ErrLength, n, VCPUExtendedMax))
		}
	case TypeX86PVVCPUXSave:
		if n < VCPUXSaveMin {
			return fieldErr("context", fmt.Errorf("%w: %d bytes, min %d", stream.ErrLength, n, VCPUXSaveMin))
		}
	case TypeX86PVVCPUMSRs:
		if n%vcpuMSRSize != 0 {
			return fieldErr("context", fmt.Errorf("%w: %d bytes, not a multiple of %d", stream.ErrLength, n, vcpuMSRSize))
		}
	}
	return nil
}
