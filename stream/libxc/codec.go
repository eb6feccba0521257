package libxc

import (
	"fmt"

	"github.com/xensr/xensr/stream"
)

// lengthErr reports a body whose length is wrong: want says what the type
// requires, got is the body's length.
func lengthErr(field, want string, got int) error {
	return &bodyError{field: field, err: stream.ErrLength, want: want, got: stream.Bytes(got)}
}

func emptyDecode(body []byte) error {
	if len(body) != 0 {
		return lengthErr("body_length", "0 bytes", len(body))
	}
	return nil
}

func (*End) appendBody(b []byte) []byte           { return b }
func (*End) decode(body []byte) error             { return emptyDecode(body) }
func (*Verify) appendBody(b []byte) []byte        { return b }
func (*Verify) decode(body []byte) error          { return emptyDecode(body) }
func (*Checkpoint) appendBody(b []byte) []byte    { return b }
func (*Checkpoint) decode(body []byte) error      { return emptyDecode(body) }
func (*StaticDataEnd) appendBody(b []byte) []byte { return b }
func (*StaticDataEnd) decode(body []byte) error   { return emptyDecode(body) }

// appendHeader appends the part of PAGE_DATA before the page contents.
func (p *PageData) appendHeader(b []byte) []byte {
	b = le.AppendUint32(b, uint32(len(p.Entries)))
	b = le.AppendUint32(b, p.Reserved)
	for _, e := range p.Entries {
		b = le.AppendUint64(b, e)
	}
	return b
}

func (p *PageData) appendBody(b []byte) []byte { return append(p.appendHeader(b), p.Data...) }

func (p *PageData) decode(body []byte) error {
	if len(body) < 8 {
		return lengthErr("count", "at least 8 bytes", len(body))
	}
	count := le.Uint32(body)
	p.Reserved = le.Uint32(body[4:])
	if uint64(count)*8 > uint64(len(body)-8) {
		return lengthErr("pfn", fmt.Sprintf("at least %d bytes for %d PFN entries", 8+uint64(count)*8, count), len(body))
	}
	p.Entries = decodeU64s(p.Entries, body[8:8+int(count)*8])
	p.Data = body[8+int(count)*8:]
	if n := p.DataPages(); len(p.Data) != n*PageSize {
		// A reserved page type (which has no data) is the likelier
		// fault than the length: name its entry.
		for i, e := range p.Entries {
			if t := PageType(e >> pageTypeShift); !t.Valid() {
				return &bodyError{field: fmt.Sprintf("pfn[%d]", i), err: fmt.Errorf("%w: reserved page type %#x", stream.ErrValue, uint8(t)),
					want: "a page type other than 5-8", got: fmt.Sprintf("%#x", uint8(t))}
			}
		}
		return lengthErr("page_data", fmt.Sprintf("%d bytes for %d entries with %d pages of data", 8+8*len(p.Entries)+n*PageSize, len(p.Entries), n), len(body))
	}
	return nil
}

func decodeU64s(dst []uint64, b []byte) []uint64 {
	n := len(b) / 8
	if cap(dst) < n {
		dst = make([]uint64, n)
	}
	dst = dst[:n]
	for i := range dst {
		dst[i] = le.Uint64(b[i*8:])
	}
	return dst
}

func (x *X86PVInfo) appendBody(b []byte) []byte {
	b = append(b, x.GuestWidth, x.PTLevels)
	b = le.AppendUint16(b, x.Reserved1)
	return le.AppendUint32(b, x.Reserved2)
}

func (x *X86PVInfo) decode(body []byte) error {
	if len(body) != pvInfoSize {
		return lengthErr("body_length", stream.Bytes(pvInfoSize), len(body))
	}
	x.GuestWidth, x.PTLevels = body[0], body[1]
	x.Reserved1, x.Reserved2 = le.Uint16(body[2:]), le.Uint32(body[4:])
	return nil
}

func (x *X86PVP2MFrames) appendBody(b []byte) []byte {
	b = le.AppendUint32(b, x.StartPFN)
	b = le.AppendUint32(b, x.EndPFN)
	for _, f := range x.Frames {
		b = le.AppendUint64(b, f)
	}
	return b
}

func (x *X86PVP2MFrames) decode(body []byte) error {
	if len(body) < 8 || len(body)%8 != 0 {
		return lengthErr("body_length", "8 bytes and a multiple of 8 bytes", len(body))
	}
	x.StartPFN, x.EndPFN = le.Uint32(body), le.Uint32(body[4:])
	x.Frames = decodeU64s(x.Frames, body[8:])
	return nil
}

func (v *VCPUContext) appendBody(b []byte) []byte {
	b = le.AppendUint32(b, v.VCPU)
	b = le.AppendUint32(b, v.Reserved)
	return append(b, v.Context...)
}

func (v *VCPUContext) decode(body []byte) error {
	if len(body) < 8 {
		return lengthErr("vcpu_id", "at least 8 bytes", len(body))
	}
	v.VCPU, v.Reserved, v.Context = le.Uint32(body), le.Uint32(body[4:]), body[8:]
	return nil
}

func (s *SharedInfo) appendBody(b []byte) []byte { return append(b, s.Data...) }
func (s *SharedInfo) decode(body []byte) error {
	if len(body) != PageSize {
		return lengthErr("shared_info", stream.Bytes(PageSize), len(body))
	}
	s.Data = body
	return nil
}

func (t *X86TSCInfo) appendBody(b []byte) []byte {
	b = le.AppendUint32(b, t.Mode)
	b = le.AppendUint32(b, t.KHz)
	b = le.AppendUint64(b, t.Nsec)
	b = le.AppendUint32(b, t.Incarnation)
	return le.AppendUint32(b, t.Reserved)
}

func (t *X86TSCInfo) decode(body []byte) error {
	if len(body) != tscInfoSize {
		return lengthErr("body_length", stream.Bytes(tscInfoSize), len(body))
	}
	t.Mode, t.KHz, t.Nsec = le.Uint32(body), le.Uint32(body[4:]), le.Uint64(body[8:])
	t.Incarnation, t.Reserved = le.Uint32(body[16:]), le.Uint32(body[20:])
	return nil
}

func (h *HVMContext) appendBody(b []byte) []byte { return append(b, h.Data...) }
func (h *HVMContext) decode(body []byte) error {
	if len(body) == 0 {
		return lengthErr("hvm_ctx", "at least 1 byte", 0)
	}
	h.Data = body
	return nil
}

func (h *HVMParams) appendBody(b []byte) []byte {
	b = le.AppendUint32(b, uint32(len(h.Params)))
	b = le.AppendUint32(b, h.Reserved)
	for _, p := range h.Params {
		b = le.AppendUint64(b, p.Index)
		b = le.AppendUint64(b, p.Value)
	}
	return b
}

func (h *HVMParams) decode(body []byte) error {
	if len(body) < 8 {
		return lengthErr("count", "at least 8 bytes", len(body))
	}
	count := le.Uint32(body)
	h.Reserved = le.Uint32(body[4:])
	if uint64(len(body)-8) != uint64(count)*hvmParamSize {
		return lengthErr("param", fmt.Sprintf("%d bytes for %d parameters", 8+uint64(count)*hvmParamSize, count), len(body))
	}
	h.Params = h.Params[:0]
	for b := body[8:]; len(b) >= hvmParamSize; b = b[hvmParamSize:] {
		h.Params = append(h.Params, HVMParam{le.Uint64(b), le.Uint64(b[8:])})
	}
	return nil
}

func (t *Toolstack) appendBody(b []byte) []byte { return append(b, t.Data...) }
func (t *Toolstack) decode(body []byte) error   { t.Data = body; return nil }

func (c *CheckpointDirtyPFNList) appendBody(b []byte) []byte {
	for _, p := range c.PFNs {
		b = le.AppendUint64(b, p)
	}
	return b
}

func (c *CheckpointDirtyPFNList) decode(body []byte) error {
	if len(body)%8 != 0 {
		return lengthErr("pfn", "a multiple of 8 bytes", len(body))
	}
	c.PFNs = decodeU64s(c.PFNs, body)
	return nil
}

func (c *X86CPUIDPolicy) appendBody(b []byte) []byte {
	for _, l := range c.Leaves {
		for _, v := range [6]uint32{l.Leaf, l.Subleaf, l.A, l.B, l.C, l.D} {
			b = le.AppendUint32(b, v)
		}
	}
	return b
}

func (c *X86CPUIDPolicy) decode(body []byte) error {
	if len(body)%cpuidLeafSize != 0 {
		return lengthErr("CPUID_policy", fmt.Sprintf("a multiple of %d bytes", cpuidLeafSize), len(body))
	}
	c.Leaves = c.Leaves[:0]
	for b := body; len(b) > 0; b = b[cpuidLeafSize:] {
		c.Leaves = append(c.Leaves, CPUIDLeaf{le.Uint32(b), le.Uint32(b[4:]), le.Uint32(b[8:]),
			le.Uint32(b[12:]), le.Uint32(b[16:]), le.Uint32(b[20:])})
	}
	return nil
}

func (m *X86MSRPolicy) appendBody(b []byte) []byte {
	for _, e := range m.Entries {
		b = le.AppendUint32(b, e.Index)
		b = le.AppendUint32(b, e.Flags)
		b = le.AppendUint64(b, e.Value)
	}
	return b
}

func (m *X86MSRPolicy) decode(body []byte) error {
	if len(body)%msrEntrySize != 0 {
		return lengthErr("MSR_policy", fmt.Sprintf("a multiple of %d bytes", msrEntrySize), len(body))
	}
	m.Entries = m.Entries[:0]
	for b := body; len(b) > 0; b = b[msrEntrySize:] {
		m.Entries = append(m.Entries, MSREntry{le.Uint32(b), le.Uint32(b[4:]), le.Uint64(b[8:])})
	}
	return nil
}

func (r *Raw) appendBody(b []byte) []byte { return append(b, r.Body...) }
func (r *Raw) decode(body []byte) error   { r.Body = body; return nil }
