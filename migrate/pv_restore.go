package migrate

import (
	"errors"
	"fmt"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

// PVBuilder is what the restore of a PV domain asks of the hypervisor
// beyond Builder. For a PV domain Builder.MapWritable takes machine frames.
// Host.Builder's value implements it.
type PVBuilder interface {
	Builder
	// SetAddressSize sets the guest's address size in bits.
	SetAddressSize(dom, bits uint32) error
	// PopulatePV gives the domain a page at each PFN and returns their
	// MFNs.
	PopulatePV(dom uint32, pfns []uint64) ([]uint64, error)
	// SharedInfoFrame returns the MFN of the domain's shared info page.
	SharedInfoFrame(dom uint32) (uint64, error)
	// SetVCPUContext loads a vcpu_guest_context (MFN form).
	SetVCPUContext(dom, vcpu uint32, ctx []byte) error
	// SetExtVCPUContext, SetVCPUExtState and SetVCPUMSRs load the
	// extended context, XSAVE state and MSRs of a vCPU.
	SetExtVCPUContext(dom uint32, ctx []byte) error
	SetVCPUExtState(dom, vcpu uint32, state []byte) error
	SetVCPUMSRs(dom, vcpu uint32, msrs []byte) error
	// PinTables pins page tables (hypercall.MMUExtPinL*).
	PinTables(dom uint32, ops []hypercall.MMUExtOp) error
}

// ErrPVRestore: a PV stream the restore cannot load as it stands.
var ErrPVRestore = errors.New("migrate: PV stream not restorable")

// pvVCPU holds a vCPU's records until the stream ends.
type pvVCPU struct{ basic, ext, xsave, msrs []byte }

// pvRestore is the PV part of a restore: the P2M it builds and the
// records applied at the end.
type pvRestore struct {
	b         PVBuilder
	seenInfo  bool
	maxPFN    uint64
	framePFNs []uint64
	p2m       []uint64 // pfn -> mfn; invalidMFN until populated
	types     []uint8  // page type nibble per PFN, as the stream sent it
	vcpus     map[uint32]*pvVCPU
	shinfo    bool
	stage     []byte
	mfns      []uint64
}

func (rs *restorer) pvFormatErr(rec libxc.RecordType, field string, err error, want, got string) error {
	return rs.step("stream", &stream.FormatError{Layer: libxc.Layer, Offset: rs.off, Index: rs.stats.Records - 1, Type: uint32(rec),
		TypeName: rec.String(), Field: field, Err: err, Expected: want, Actual: got})
}

// pvRecord handles the PV-only records.
func (rs *restorer) pvRecord(rec libxc.Record) error {
	p := rs.pv
	switch r := rec.(type) {
	case *libxc.X86PVInfo:
		if p.seenInfo {
			return rs.pvFormatErr(libxc.TypeX86PVInfo, "type", stream.ErrOrder, "one X86_PV_INFO", "a second")
		}
		if r.GuestWidth != pv.Width64 || r.PTLevels != 4 {
			return rs.pvFormatErr(libxc.TypeX86PVInfo, "guest_width", fmt.Errorf("%w: %w", ErrPVRestore, ErrPV32), "8 bytes, 4 levels",
				fmt.Sprintf("%d bytes, %d levels", r.GuestWidth, r.PTLevels))
		}
		if err := p.b.SetAddressSize(rs.domid, 64); err != nil {
			return rs.step("set_address_size", err)
		}
		p.seenInfo = true
	case *libxc.X86PVP2MFrames:
		if !p.seenInfo {
			return rs.pvFormatErr(libxc.TypeX86PVP2MFrames, "type", stream.ErrOrder, "X86_PV_INFO first", "none yet")
		}
		if r.StartPFN != 0 || p.p2m != nil {
			return rs.pvFormatErr(libxc.TypeX86PVP2MFrames, "p2m_start_pfn", fmt.Errorf("%w: one frame record from PFN 0 is supported", ErrPVRestore),
				"0, once", fmt.Sprintf("%#x", r.StartPFN))
		}
		n := uint64(r.EndPFN) + 1
		if n > maxP2MSize || uint64(len(r.Frames)) != (n+entriesPerPage64-1)/entriesPerPage64 {
			return rs.pvFormatErr(libxc.TypeX86PVP2MFrames, "p2m_pfns", stream.ErrLength,
				fmt.Sprintf("%d frames for end pfn %#x", (n+entriesPerPage64-1)/entriesPerPage64, r.EndPFN), fmt.Sprint(len(r.Frames)))
		}
		p.maxPFN = uint64(r.EndPFN)
		p.framePFNs = append([]uint64(nil), r.Frames...)
		p.p2m = make([]uint64, n)
		for i := range p.p2m {
			p.p2m[i] = invalidMFN
		}
		p.types = make([]uint8, n)
	case *libxc.VCPUContext:
		if len(r.Context) == 0 {
			return nil
		}
		if r.VCPU >= rs.cfg.MaxVCPUs {
			return rs.pvFormatErr(r.Kind, "vcpu_id", stream.ErrValue, fmt.Sprintf("below %d", rs.cfg.MaxVCPUs), fmt.Sprint(r.VCPU))
		}
		v := p.vcpus[r.VCPU]
		if v == nil {
			v = &pvVCPU{}
			p.vcpus[r.VCPU] = v
		}
		b := append([]byte(nil), r.Context...)
		switch r.Kind {
		case libxc.TypeX86PVVCPUBasic:
			if len(b) != libxc.VCPUBasicSize64 {
				return rs.pvFormatErr(r.Kind, "context", stream.ErrLength, stream.Bytes(libxc.VCPUBasicSize64), stream.Bytes(len(b)))
			}
			v.basic = b
		case libxc.TypeX86PVVCPUExtended:
			v.ext = b
		case libxc.TypeX86PVVCPUXSave:
			v.xsave = b
		case libxc.TypeX86PVVCPUMSRs:
			v.msrs = b
		}
	case *libxc.SharedInfo:
		return rs.pvSharedInfo(r.Data)
	}
	return nil
}

// pvSharedInfo loads a SHARED_INFO record as libxc does: the vCPU info
// and arch parts, without the frame list list, every event channel
// masked and none pending.
func (rs *restorer) pvSharedInfo(old []byte) error {
	p := rs.pv
	if !p.seenInfo || len(old) != PageSize {
		return rs.pvFormatErr(libxc.TypeSharedInfo, "length", stream.ErrLength, "4096 bytes after X86_PV_INFO", stream.Bytes(len(old)))
	}
	frame, err := p.b.SharedInfoFrame(rs.domid)
	if err != nil {
		return rs.step("shared info frame", err)
	}
	m, err := p.b.MapWritable(rs.domid, []uint64{frame})
	if err != nil {
		return rs.step("map shared info", err)
	}
	defer m.Unmap()
	pg, err := m.Page(0)
	if err != nil {
		return rs.step("map shared info", err)
	}
	const archSize = 48
	copy(pg[:pv.SharedInfoEvtchnPending64], old[:pv.SharedInfoEvtchnPending64])
	copy(pg[pv.SharedInfoArch64:pv.SharedInfoArch64+archSize], old[pv.SharedInfoArch64:pv.SharedInfoArch64+archSize])
	le.PutUint64(pg[pv.SharedInfoArch64+8:], 0) // pfn_to_mfn_frame_list_list
	clear(pg[pv.SharedInfoEvtchnPending64:pv.SharedInfoEvtchnMask64])
	for i := 0; i < pv.LegacyMaxVCPUs; i++ {
		le.PutUint64(pg[i*pv.VCPUInfoSize+8:], 0) // evtchn_pending_sel
	}
	for i := pv.SharedInfoEvtchnMask64; i < pv.SharedInfoWallclock64; i++ {
		pg[i] = 0xff
	}
	p.shinfo = true
	return nil
}

// pvPageData loads one PAGE_DATA record of a PV stream: the frames and
// every frame its page tables name are populated, the page tables
// localised (PFN -> MFN) and the pages written. A page-table entry naming
// a PFN beyond the P2M is refused here, before the domain ever runs.
func (rs *restorer) pvPageData(r *libxc.PageData) error {
	p := rs.pv
	if p.p2m == nil {
		return rs.pvFormatErr(libxc.TypePageData, "type", stream.ErrOrder, "X86_PV_P2M_FRAMES before the pages", "none yet")
	}
	var need []uint64
	want := func(pfn uint64) {
		if p.p2m[pfn] == invalidMFN {
			p.p2m[pfn] = invalidMFN - 1 // queued
			need = append(need, pfn)
		}
	}
	var bad error
	r.Pages(func(i int, pfn uint64, t libxc.PageType, data []byte) bool {
		if pfn > p.maxPFN {
			bad = rs.pvFormatErr(libxc.TypePageData, fmt.Sprintf("pfn[%d]", i), fmt.Errorf("%w: pfn beyond the P2M", stream.ErrValue),
				fmt.Sprintf("at most %#x", p.maxPFN), fmt.Sprintf("%#x", pfn))
			return false
		}
		p.types[pfn] = uint8(t)
		if t == libxc.PageXTab || t == libxc.PageBroken {
			return true
		}
		want(pfn)
		if level := int(t & 7); data != nil && level >= 1 && level <= 4 {
			for j := 0; j < entriesPerPage64; j++ {
				pte := le.Uint64(data[j*8:])
				if pte&ptePresent == 0 {
					continue
				}
				target := pteFrame(pte)
				if target > p.maxPFN {
					bad = rs.pvFormatErr(libxc.TypePageData, fmt.Sprintf("page of pfn %#x, L%d[%d]", pfn, level, j),
						fmt.Errorf("%w: page-table entry %#016x names pfn %#x beyond the P2M", stream.ErrValue, pte, target),
						fmt.Sprintf("a pfn at most %#x", p.maxPFN), fmt.Sprintf("%#x", target))
					return false
				}
				want(target)
			}
		}
		return true
	})
	if bad != nil {
		for pfn := range p.p2m {
			if p.p2m[pfn] == invalidMFN-1 {
				p.p2m[pfn] = invalidMFN
			}
		}
		return bad
	}
	if len(need) > 0 {
		if rs.nPopulated+uint64(len(need)) > rs.maxPages {
			return rs.step("page data", fmt.Errorf("%w: frame %d of at most %d", ErrTooManyPages, rs.nPopulated+uint64(len(need)), rs.maxPages))
		}
		mfns, err := p.b.PopulatePV(rs.domid, need)
		if err != nil {
			return rs.step("populate_physmap", err)
		}
		if len(mfns) != len(need) {
			return rs.step("populate_physmap", fmt.Errorf("%d frames for %d pfns", len(mfns), len(need)))
		}
		for i, pfn := range need {
			p.p2m[pfn] = mfns[i]
		}
		rs.nPopulated += uint64(len(need))
	}
	p.mfns, p.stage = p.mfns[:0], p.stage[:0]
	r.Pages(func(i int, pfn uint64, t libxc.PageType, data []byte) bool {
		if data == nil {
			return true
		}
		p.mfns = append(p.mfns, p.p2m[pfn])
		p.stage = append(p.stage, data...)
		if level := int(t & 7); level >= 1 && level <= 4 {
			pg := p.stage[len(p.stage)-PageSize:]
			for j := 0; j < entriesPerPage64; j++ {
				pte := le.Uint64(pg[j*8:])
				if pte&ptePresent != 0 {
					le.PutUint64(pg[j*8:], pte&^pteFrameMask|p.p2m[pteFrame(pte)]<<12&pteFrameMask)
				}
			}
		}
		return true
	})
	if len(p.mfns) == 0 {
		return nil
	}
	m, err := p.b.MapWritable(rs.domid, p.mfns)
	if err != nil {
		return rs.step("map pages", err)
	}
	for i := range p.mfns {
		pg, err := m.Page(i)
		if err != nil {
			m.Unmap()
			return rs.step("map pages", fmt.Errorf("mfn %#x: %w", p.mfns[i], err))
		}
		copy(pg, p.stage[i*PageSize:(i+1)*PageSize])
	}
	if err := m.Unmap(); err != nil {
		return rs.step("unmap pages", err)
	}
	rs.stats.Pages += uint64(len(p.mfns))
	return nil
}

// pvMFN returns the MFN of pfn, which must be populated and, unless any
// is set, of page type want.
func (p *pvRestore) pvMFN(what string, pfn uint64, want libxc.PageType, any bool) (uint64, error) {
	if pfn > p.maxPFN || p.p2m[pfn] >= invalidMFN-1 {
		return 0, fmt.Errorf("%w: %s: pfn %#x not in the restored P2M (max pfn %#x)", ErrPVRestore, what, pfn, p.maxPFN)
	}
	if !any && libxc.PageType(p.types[pfn])&7 != want {
		return 0, fmt.Errorf("%w: %s: pfn %#x has type %v, want %v", ErrPVRestore, what, pfn, libxc.PageType(p.types[pfn]), want)
	}
	return p.p2m[pfn], nil
}

// pvComplete does what libxc does at the END of a PV stream: the start
// info, the vCPUs, the pinned page tables, the guest's P2M, the grant
// table.
func (rs *restorer) pvComplete() error {
	p := rs.pv
	if p.p2m == nil || !p.shinfo {
		return rs.step("stream end", fmt.Errorf("%w: X86_PV_P2M_FRAMES or SHARED_INFO missing", ErrIncomplete))
	}
	if v0 := p.vcpus[0]; v0 == nil || v0.basic == nil {
		return rs.step("stream end", fmt.Errorf("%w: no X86_PV_VCPU_BASIC for vCPU 0", ErrIncomplete))
	}
	id := rs.domid
	shFrame, err := p.b.SharedInfoFrame(id)
	if err != nil {
		return rs.step("shared info frame", err)
	}
	for v := uint32(0); v < rs.cfg.MaxVCPUs; v++ {
		c := p.vcpus[v]
		if c == nil {
			continue
		}
		if c.basic != nil {
			if err := rs.pvVCPUBasic(v, c.basic, shFrame); err != nil {
				return err
			}
		}
		if c.ext != nil {
			if err := p.b.SetExtVCPUContext(id, c.ext); err != nil {
				return rs.step(fmt.Sprintf("set_ext_vcpucontext %d", v), err)
			}
		}
		if c.xsave != nil {
			if err := p.b.SetVCPUExtState(id, v, c.xsave); err != nil {
				return rs.step(fmt.Sprintf("setvcpuextstate %d", v), err)
			}
		}
		if c.msrs != nil {
			if err := p.b.SetVCPUMSRs(id, v, c.msrs); err != nil {
				return rs.step(fmt.Sprintf("set_vcpu_msrs %d", v), err)
			}
		}
	}
	var pins []hypercall.MMUExtOp
	for pfn, t := range p.types {
		pt := libxc.PageType(t)
		if pt < libxc.PageL1Pinned || pt > libxc.PageL4Pinned {
			continue
		}
		pins = append(pins, hypercall.MMUExtOp{Cmd: uint32(pt&7) - 1, MFN: p.p2m[pfn]})
	}
	if err := p.b.PinTables(id, pins); err != nil {
		return rs.step("pin page tables", err)
	}
	// The guest's P2M, in the frames it keeps it in.
	frames := make([]uint64, len(p.framePFNs))
	for i, pfn := range p.framePFNs {
		if frames[i], err = p.pvMFN(fmt.Sprintf("P2M frame %d", i), pfn, libxc.PageNormal, false); err != nil {
			return rs.step("guest p2m", err)
		}
	}
	m, err := p.b.MapWritable(id, frames)
	if err != nil {
		return rs.step("map guest p2m", err)
	}
	for i := range frames {
		pg, err := m.Page(i)
		if err != nil {
			m.Unmap()
			return rs.step("map guest p2m", err)
		}
		for j := 0; j < entriesPerPage64; j++ {
			pfn := uint64(i*entriesPerPage64 + j)
			if pfn > p.maxPFN {
				break
			}
			le.PutUint64(pg[j*8:], p.p2m[pfn])
		}
	}
	if err := m.Unmap(); err != nil {
		return rs.step("unmap guest p2m", err)
	}
	return rs.seedGrants()
}

// pvVCPUBasic localises and loads one vCPU's context; for vCPU 0 it also
// rewrites the start info page (rings, event channels, shared info).
func (rs *restorer) pvVCPUBasic(v uint32, raw []byte, shFrame uint64) error {
	p := rs.pv
	dc, err := pv.Decode(raw, pv.Width64)
	if err != nil {
		return rs.step(fmt.Sprintf("vcpu %d context", v), err)
	}
	c := dc.(*pv.Context64)
	fail := func(err error) error { return rs.step(fmt.Sprintf("vcpu %d context", v), err) }
	if v == 0 {
		siMFN, err := p.pvMFN("start info (rdx of vCPU 0)", c.UserRegs.RDX, libxc.PageNormal, false)
		if err != nil {
			return fail(err)
		}
		c.UserRegs.RDX = siMFN
		m, err := p.b.MapWritable(rs.domid, []uint64{siMFN})
		if err != nil {
			return rs.step("map start info", err)
		}
		si, err := m.Page(0)
		if err == nil {
			var store, console uint64
			if store, err = p.pvMFN("start info store_mfn", le.Uint64(si[pv.StartInfoStoreMFN:]), 0, true); err == nil {
				console, err = p.pvMFN("start info console mfn", le.Uint64(si[pv.StartInfoConsoleMFN:]), 0, true)
			}
			if err == nil {
				rs.storeGFN, rs.consoleGFN, rs.haveStore, rs.haveConsole = store, console, true, true
				le.PutUint64(si[pv.StartInfoStoreMFN:], store)
				le.PutUint32(si[pv.StartInfoStoreEvtchn:], rs.storePort)
				le.PutUint64(si[pv.StartInfoConsoleMFN:], console)
				le.PutUint32(si[pv.StartInfoConsoleEvtchn:], rs.consolePort)
				le.PutUint64(si[pv.StartInfoNrPages:], p.maxPFN+1)
				le.PutUint64(si[pv.StartInfoSharedInfo:], shFrame<<12)
				le.PutUint32(si[pv.StartInfoFlags:], 0)
			}
		}
		if uerr := m.Unmap(); err == nil {
			err = uerr
		}
		if err != nil {
			return fail(err)
		}
	}
	c.Flags |= pv.FlagOnline
	if c.GDTEnts > pv.FirstReservedGDTEntry {
		return fail(fmt.Errorf("%w: %d GDT entries, at most %d", ErrPVRestore, c.GDTEnts, pv.FirstReservedGDTEntry))
	}
	for i := uint64(0); i < (c.GDTEnts+511)/512; i++ {
		if c.GDTFrames[i], err = p.pvMFN(fmt.Sprintf("GDT frame %d", i), c.GDTFrames[i], libxc.PageNormal, false); err != nil {
			return fail(err)
		}
	}
	mfn, err := p.pvMFN("cr3", c.CtrlReg[3]>>12, libxc.PageL4, false)
	if err != nil {
		return fail(err)
	}
	c.CtrlReg[3] = mfn << 12
	if c.CtrlReg[1]&1 != 0 {
		mfn, err := p.pvMFN("cr1", c.CtrlReg[1]>>12, libxc.PageL4, false)
		if err != nil {
			return fail(err)
		}
		c.CtrlReg[1] = mfn << 12
	}
	b, err := pv.Encode(c)
	if err != nil {
		return fail(err)
	}
	if err := p.b.SetVCPUContext(rs.domid, v, b); err != nil {
		return rs.step(fmt.Sprintf("setvcpucontext %d", v), err)
	}
	return nil
}
