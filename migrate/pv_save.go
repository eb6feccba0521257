package migrate

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

// Facts of x86-64 paging and of the 64-bit PV ABI the PV save relies on.
const (
	pteFrameMask = 0x000ffffffffff000 // bits 12-51 of a PTE: the frame
	ptePresent   = 1 << 0
	ptePSE       = 1 << 7 // a superpage at L2 and above
	// L4 slots 256 to 272 inclusive (HYPERVISOR_VIRT_START to _END of a
	// 64-bit PV guest, 0xffff800000000000-0xffff880000000000) are Xen's:
	// the save zeroes them, and Xen fills them in again on the restore
	// side. libxc zeroes the slot of the end address too.
	l4XenFirst       = 256
	l4XenLast        = 272
	pvVirtStart      = 0xffff800000000000
	pvVirtEnd        = 0xffff880000000000
	entriesPerPage64 = PageSize / 8
	invalidMFN       = ^uint64(0)
)

// pvSave is the PV part of a Saver: the M2P, the guest's P2M and the
// scratch of page-table normalisation.
type pvSave struct {
	d      PVDomain
	m2p    *MachToPhys
	maxPFN uint64
	// The P2M's own frames: MFNs (to read them), PFNs (for the stream).
	leaves, leafPFNs []uint64
	p2m              []uint64 // pfn -> mfn, as last read
	generation       uint64   // shared info's p2m_generation at setup (linear list)
	linear           bool
	final            bool                   // the domain is stopped: a bad PTE is fatal
	deferred         *hypercall.DirtyBitmap // pages to send again (live rounds)
	mfns             []uint64
	idx              []int
}

// readFrames maps the machine frames mfns of the guest and returns a copy
// of their contents, back to back.
func (p *pvSave) readFrames(mfns []uint64) ([]byte, error) {
	out := make([]byte, 0, len(mfns)*PageSize)
	for start := 0; start < len(mfns); start += maxBatch {
		part := mfns[start:min(len(mfns), start+maxBatch)]
		m, err := p.d.MapPages(part)
		if err != nil {
			return nil, err
		}
		for i := range part {
			pg, err := m.Page(i)
			if err == nil && len(pg) != PageSize {
				err = fmt.Errorf("mapped page is %d bytes", len(pg))
			}
			if err != nil {
				m.Unmap()
				return nil, fmt.Errorf("mfn %#x: %w", part[i], err)
			}
			out = append(out, pg...)
		}
		m.Unmap()
	}
	return out, nil
}

// mfnToPFN returns the PFN of one of the guest's own frames: the M2P's
// answer, checked against the guest's P2M (libxc's mfn_in_pseudophysmap).
func (p *pvSave) mfnToPFN(mfn uint64) (uint64, bool) {
	pfn, ok := p.m2p.Lookup(mfn)
	if !ok || pfn > p.maxPFN || pfn >= uint64(len(p.p2m)) || p.p2m[pfn] != mfn {
		return 0, false
	}
	return pfn, true
}

// frameErr describes an MFN that is not the guest's.
func (p *pvSave) frameErr(what string, mfn uint64) error {
	detail := fmt.Sprintf("max mfn %#x", p.m2p.MaxMFN)
	if pfn, ok := p.m2p.Lookup(mfn); ok {
		detail = fmt.Sprintf("m2p[%#x] = %#x, max pfn %#x", mfn, pfn, p.maxPFN)
		if pfn <= p.maxPFN && pfn < uint64(len(p.p2m)) {
			detail += fmt.Sprintf(", p2m[%#x] = %#x", pfn, p.p2m[pfn])
		}
	}
	return fmt.Errorf("%w: %s: mfn %#x (%s)", ErrPVFrame, what, mfn, detail)
}

// sharedInfo reads the guest's shared info page.
func (p *pvSave) sharedInfo(frame uint64) ([]byte, error) {
	b, err := p.readFrames([]uint64{frame})
	if err != nil {
		return nil, fmt.Errorf("shared info frame %#x: %w", frame, err)
	}
	return b, nil
}

// setup finds the guest's P2M from its shared info: the linear list when
// the guest publishes one (p2m_cr3), else the three-level frame tree.
func (p *pvSave) setup(shinfoFrame uint64) error {
	page, err := p.sharedInfo(shinfoFrame)
	if err != nil {
		return err
	}
	arch, err := pv.DecodeArchSharedInfo(page)
	if err != nil {
		return err
	}
	if arch.MaxPFN == 0 || arch.MaxPFN > maxP2MSize {
		return fmt.Errorf("%w: shared info max_pfn %#x", ErrPVP2M, arch.MaxPFN)
	}
	p.maxPFN = arch.MaxPFN - 1
	if arch.P2MCR3 != 0 {
		p.linear, p.generation = true, arch.P2MGeneration
		err = p.walkList(arch)
	} else {
		err = p.walkTree(arch)
	}
	if err != nil {
		return err
	}
	if err := p.loadP2M(); err != nil {
		return err
	}
	p.leafPFNs = make([]uint64, len(p.leaves))
	for i, mfn := range p.leaves {
		pfn, ok := p.mfnToPFN(mfn)
		if !ok {
			return p.frameErr(fmt.Sprintf("P2M frame %d", i), mfn)
		}
		p.leafPFNs[i] = pfn
	}
	return nil
}

func pteFrame(pte uint64) uint64 { return pte & pteFrameMask >> 12 }

func canonical(va uint64) bool { return int64(va)>>47 == int64(va)>>63 }

// walkList finds the frames of a linear P2M list by walking the guest's
// page tables from p2m_cr3 over p2m_vaddr. Past the last distinct L1
// table the list only maps "missing" entries: max_pfn is lowered to there,
// as libxc does.
func (p *pvSave) walkList(arch *pv.ArchSharedInfo) error {
	const mask = 0x0000ffffffffffff
	const fpp = entriesPerPage64
	top := arch.P2MCR3 >> 12
	if top == 0 || top > p.m2p.MaxMFN {
		return fmt.Errorf("%w: p2m_cr3 %#x", ErrPVP2M, arch.P2MCR3)
	}
	vaddr := arch.P2MVaddr
	frames := p.maxPFN/fpp + 1
	end := vaddr + frames*PageSize - 1
	if !canonical(vaddr) || !canonical(end) || end < vaddr || (vaddr <= pvVirtEnd && end > pvVirtStart) {
		return fmt.Errorf("%w: virtual P2M range %#x-%#x", ErrPVP2M, vaddr, end)
	}
	mfns := []uint64{top}
	var off, idxStart, idxEnd uint64
	for level := 4; level > 0; level-- {
		tables, err := p.readFrames(mfns)
		if err != nil {
			return fmt.Errorf("%w: level %d page tables: %w", ErrPVP2M, level, err)
		}
		shift := uint(level*9 + 3)
		idxStart = ((vaddr - off) & mask) >> shift
		idxEnd = ((end - off) & mask) >> shift
		if idxEnd < idxStart || (idxEnd+1)*8 > uint64(len(tables)) {
			return fmt.Errorf("%w: level %d entries %d-%d beyond the %d tables mapped", ErrPVP2M, level, idxStart, idxEnd, len(mfns))
		}
		next := make([]uint64, 0, idxEnd-idxStart+1)
		var savedMFN, savedIdx uint64
		for idx := idxStart; idx <= idxEnd; idx++ {
			mfn := pteFrame(le.Uint64(tables[idx*8:]))
			if mfn == 0 || mfn > p.m2p.MaxMFN {
				return fmt.Errorf("%w: mfn %#x at level %d for virtual address %#x", ErrPVP2M, mfn, level, off+idx<<shift)
			}
			next = append(next, mfn)
			if level == 2 && mfn != savedMFN {
				savedMFN, savedIdx = mfn, idx-idxStart
			}
		}
		if level == 2 {
			// libxc compares the relative index with the absolute end
			// here; kept as it is, so both saves agree on max_pfn.
			if savedIdx == idxEnd {
				savedIdx++
			}
			if mp := savedIdx<<9*fpp - 1; mp < p.maxPFN {
				p.maxPFN = mp
				frames = (p.maxPFN + fpp) / fpp
				end = vaddr + frames*PageSize - 1
				idxEnd = idxStart + savedIdx
			}
			if n := idxEnd - idxStart + 1; n < uint64(len(next)) {
				next = next[:n]
			}
		}
		mfns = next
		off = vaddr & (mask >> shift << shift)
	}
	if uint64(len(mfns)) > frames {
		mfns = mfns[:frames]
	}
	p.leaves = mfns
	return nil
}

// walkTree finds the P2M frames through the frame-list list (top) and the
// frame lists (middle) of a guest without a linear list.
func (p *pvSave) walkTree(arch *pv.ArchSharedInfo) error {
	const fpp = entriesPerPage64
	fllEntries := p.maxPFN/(fpp*fpp) + 1
	if fllEntries > fpp {
		return fmt.Errorf("%w: max_pfn %#x too large for a P2M tree", ErrPVP2M, p.maxPFN)
	}
	fllMFN := arch.FrameListList
	if fllMFN == 0 || fllMFN > p.m2p.MaxMFN {
		return fmt.Errorf("%w: frame list list mfn %#x", ErrPVP2M, fllMFN)
	}
	fll, err := p.readFrames([]uint64{fllMFN})
	if err != nil {
		return fmt.Errorf("%w: frame list list: %w", ErrPVP2M, err)
	}
	top := make([]uint64, fllEntries)
	var savedMFN, savedX uint64
	for x := range top {
		top[x] = le.Uint64(fll[x*8:])
		if top[x] == 0 || top[x] > p.m2p.MaxMFN {
			return fmt.Errorf("%w: mfn %#x at index %d of the frame list list", ErrPVP2M, top[x], x)
		}
		if top[x] != savedMFN {
			savedMFN, savedX = top[x], uint64(x)
		}
	}
	if mp := (savedX+1)*fpp*fpp - 1; mp < p.maxPFN {
		p.maxPFN = mp
		fllEntries = p.maxPFN/(fpp*fpp) + 1
	}
	flEntries := p.maxPFN/fpp + 1
	fl, err := p.readFrames(top[:fllEntries])
	if err != nil {
		return fmt.Errorf("%w: frame lists: %w", ErrPVP2M, err)
	}
	p.leaves = make([]uint64, flEntries)
	for x := range p.leaves {
		p.leaves[x] = le.Uint64(fl[x*8:])
		if p.leaves[x] == 0 || p.leaves[x] > p.m2p.MaxMFN {
			return fmt.Errorf("%w: mfn %#x at index %d of the frame list", ErrPVP2M, p.leaves[x], x)
		}
	}
	return nil
}

// loadP2M reads the guest's P2M from its frames.
func (p *pvSave) loadP2M() error {
	b, err := p.readFrames(p.leaves)
	if err != nil {
		return fmt.Errorf("%w: P2M frames: %w", ErrPVP2M, err)
	}
	n := p.maxPFN + 1
	if n*8 > uint64(len(b)) {
		return fmt.Errorf("%w: %d P2M frames for max pfn %#x", ErrPVP2M, len(p.leaves), p.maxPFN)
	}
	if uint64(cap(p.p2m)) < n {
		p.p2m = make([]uint64, n)
	}
	p.p2m = p.p2m[:n]
	for i := range p.p2m {
		p.p2m[i] = le.Uint64(b[i*8:])
	}
	return nil
}

// A pteError is a page-table entry a save cannot normalise.
type pteError struct {
	Level, Index int
	PTE          uint64
	Err          error
}

func (e *pteError) Error() string {
	return fmt.Sprintf("L%d[%d] = %#016x: %v", e.Level, e.Index, e.PTE, e.Err)
}

func (e *pteError) Unwrap() error { return e.Err }

// normalise writes into dst the page table src of the given level with
// every present entry's MFN turned into the guest's PFN and Xen's L4 slots
// cleared.
func (p *pvSave) normalise(dst, src []byte, level int) error {
	xenFirst, xenLast := -1, -1
	if level == 4 {
		xenFirst, xenLast = l4XenFirst, l4XenLast
	}
	for i := 0; i < entriesPerPage64; i++ {
		pte := le.Uint64(src[i*8:])
		if i >= xenFirst && i <= xenLast {
			pte = 0
		}
		if pte&ptePresent != 0 {
			mfn := pteFrame(pte)
			if level > 1 && pte&ptePSE != 0 {
				return &pteError{level, i, pte, ErrPVSuperpage}
			}
			pfn, ok := p.mfnToPFN(mfn)
			if !ok {
				return &pteError{level, i, pte, p.frameErr("page table entry", mfn)}
			}
			pte = pte&^pteFrameMask | pfn<<12&pteFrameMask
		}
		le.PutUint64(dst[i*8:], pte)
	}
	return nil
}

// pvWriteBatch writes one PAGE_DATA record for s.pfns of a PV guest: each
// PFN through the P2M to its MFN, types and contents by MFN, page tables
// normalised. In a live round a page table that does not normalise (the
// guest is changing it) is left for the next round.
func (s *Saver) pvWriteBatch(round int, rs *RoundStats) (uint64, error) {
	p := s.pv
	n := len(s.pfns)
	mfns := append(p.mfns[:0], make([]uint64, n)...)
	for i, pfn := range s.pfns {
		mfns[i] = p.p2m[pfn]
	}
	types := s.types[:n]
	t0 := time.Now()
	err := s.d.PageTypes(mfns, types)
	rs.TypesTime += time.Since(t0)
	if err != nil {
		return 0, &SaveError{Step: "page types", Round: round, PFN: s.pfns[0], HasPFN: true, Err: err}
	}
	p.idx = p.idx[:0]
	s.mpfns = s.mpfns[:0]
	for i := range s.pfns {
		t := libxc.PageType(types[i] >> 28)
		if !t.Valid() {
			return 0, &SaveError{Step: "page types", Round: round, PFN: s.pfns[i], HasPFN: true,
				Err: fmt.Errorf("mfn %#x has unknown type %#x", mfns[i], types[i])}
		}
		if t.HasData() {
			p.idx = append(p.idx, i)
			s.mpfns = append(s.mpfns, mfns[i])
		}
	}
	p.mfns = mfns
	if len(s.mpfns) == 0 {
		return 0, nil
	}
	t1 := time.Now()
	m, err := s.d.MapPages(s.mpfns)
	if err != nil {
		return 0, &SaveError{Step: "map pages", Round: round, PFN: s.pfns[p.idx[0]], HasPFN: true, Err: err}
	}
	defer func(t time.Time) {
		m.Unmap()
		rs.MapTime += time.Since(t)
	}(t1)
	ent := s.entries[:0]
	data := s.stage[:0]
	var sent uint64
	for j, i := range p.idx {
		pfn := s.pfns[i]
		pg, err := m.Page(j)
		if err == nil && len(pg) != PageSize {
			err = fmt.Errorf("mapped page is %d bytes", len(pg))
		}
		if err != nil {
			return 0, &SaveError{Step: "map page", Round: round, PFN: pfn, HasPFN: true, Err: fmt.Errorf("mfn %#x: %w", mfns[i], err)}
		}
		t := libxc.PageType(types[i] >> 28)
		if level := int(t & 7); level >= 1 && level <= 4 {
			data = append(data, zeroPage[:]...)
			if err := p.normalise(data[len(data)-PageSize:], pg, level); err != nil {
				var pe *pteError
				if !p.final && errors.As(err, &pe) && errors.Is(err, ErrPVFrame) {
					data = data[:len(data)-PageSize]
					p.deferred.Set(pfn)
					continue
				}
				return 0, &SaveError{Step: "normalise page table", Round: round, PFN: pfn, HasPFN: true, Err: err}
			}
		} else {
			data = append(data, pg...)
		}
		ent = append(ent, libxc.PFNEntry(pfn, t))
		sent++
	}
	s.entries, s.stage = ent, data
	if len(ent) == 0 {
		return 0, nil
	}
	if err := s.writePages(ent, data, round, s.pfns[0], rs); err != nil {
		return 0, err
	}
	return sent, nil
}

// savePV writes the image of a PV domain: Xen 4.17's record order
// (X86_PV_INFO, the CPU policy, STATIC_DATA_END, X86_PV_P2M_FRAMES, the
// pages, X86_TSC_INFO, SHARED_INFO and every online vCPU's records).
func (s *Saver) savePV(w io.Writer, d PVDomain) error {
	info := s.info
	width, err := d.GuestWidth()
	if err != nil {
		return stepErr("guest width", err)
	}
	switch width {
	case pv.Width64:
	case pv.Width32:
		return stepErr("guest width", ErrPV32)
	default:
		return stepErr("guest width", fmt.Errorf("guest width %d bytes", width))
	}
	m2p, err := d.MachToPhys()
	if err != nil {
		return stepErr("map m2p", err)
	}
	if m2p.Release != nil {
		defer m2p.Release()
	}
	p := &pvSave{d: d, m2p: m2p}
	s.pv = p
	defer func() { s.pv = nil }()
	if err := p.setup(info.SharedInfoFrame); err != nil {
		return stepErr("guest p2m", err)
	}
	p2m := p.maxPFN + 1
	s.stats.P2MSize = p2m
	p.deferred = hypercall.NewDirtyBitmap(p2m)
	cpuid, msr, err := s.d.CPUPolicy()
	if err != nil {
		return stepErr("cpu policy", err)
	}
	cpuRec, msrRec, err := libxc.DecodeCPUPolicy(cpuid, msr)
	if err != nil {
		return stepErr("cpu policy", err)
	}
	s.out = newImageWriter(w)
	out := s.out
	out.pv = true
	out.xlHeader(s.opt.Config)
	out.libxlHeader(s.opt.XenMajor, s.opt.XenMinor)
	out.record(&libxc.X86PVInfo{GuestWidth: pv.Width64, PTLevels: 4})
	out.record(cpuRec)
	out.record(msrRec)
	out.record(&libxc.StaticDataEnd{})
	out.record(&libxc.X86PVP2MFrames{StartPFN: 0, EndPFN: uint32(p.maxPFN), Frames: p.leafPFNs})
	if out.err != nil {
		return stepErr("write headers", out.err)
	}
	s.logf("migrate: PV domain %d: %d pages (%d MiB), max pfn %#x, %d P2M frames (linear list %v), live=%v",
		info.Domain, info.TotPages, info.TotPages*PageSize>>20, p.maxPFN, len(p.leaves), p.linear, s.opt.Live)

	bm := hypercall.NewDirtyBitmap(p2m)
	var suspendAt time.Time
	if s.opt.Live {
		if err := s.d.EnableLogDirty(); err != nil {
			return stepErr("enable log-dirty", fmt.Errorf("%w: %w", ErrPVLogDirty, err))
		}
		s.logDirty = true
		markAll(bm, p2m)
		for round := 0; ; round++ {
			if err := s.sendPages(bm, round, false); err != nil {
				return err
			}
			if !s.opt.Policy(s.stats.Rounds[len(s.stats.Rounds)-1], s.stats.Rounds) {
				break
			}
			if _, err := s.d.CleanDirty(bm); err != nil {
				return &SaveError{Step: "log-dirty clean", Round: round + 1, Err: err}
			}
			bm.Or(p.deferred)
			p.deferred.Clear()
			if err := p.loadP2M(); err != nil {
				return &SaveError{Step: "guest p2m", Round: round + 1, Err: err}
			}
		}
		if suspendAt, err = s.stop(); err != nil {
			return err
		}
		if _, err := s.d.CleanDirty(bm); err != nil {
			return &SaveError{Step: "final log-dirty clean", Round: len(s.stats.Rounds), Err: err}
		}
		bm.Or(p.deferred)
		if err := p.checkGeneration(info.SharedInfoFrame); err != nil {
			return stepErr("guest p2m", err)
		}
		if err := p.loadP2M(); err != nil {
			return stepErr("guest p2m", err)
		}
		// xenstored and xenconsoled write the rings through foreign
		// mappings, which log-dirty does not see.
		p.final = true
		if err := s.finalPass(bm, p.ringPFNs()); err != nil {
			return err
		}
	} else {
		if suspendAt, err = s.stop(); err != nil {
			return err
		}
		// The P2M as the stopped guest left it.
		if err := p.loadP2M(); err != nil {
			return stepErr("guest p2m", err)
		}
		p.final = true
		markAll(bm, p2m)
		if err := s.sendPages(bm, 0, true); err != nil {
			return err
		}
	}

	if err := s.writeTSC(); err != nil {
		return err
	}
	shinfo, err := p.sharedInfo(info.SharedInfoFrame)
	if err != nil {
		return stepErr("shared info", err)
	}
	out.record(&libxc.SharedInfo{Data: shinfo})
	for v := uint32(0); v <= info.MaxVCPUID; v++ {
		if err := s.pvVCPU(p, v); err != nil {
			return stepErr(fmt.Sprintf("vcpu %d", v), err)
		}
	}
	out.end()
	if err := out.flush(); err != nil {
		return stepErr("write end of stream", err)
	}
	s.stats.Downtime = time.Since(suspendAt)
	return nil
}

// checkGeneration fails when the guest changed the layout of its linear
// P2M since setup (a live save read it before).
func (p *pvSave) checkGeneration(frame uint64) error {
	if !p.linear {
		return nil
	}
	page, err := p.sharedInfo(frame)
	if err != nil {
		return err
	}
	arch, err := pv.DecodeArchSharedInfo(page)
	if err != nil {
		return err
	}
	if arch.P2MGeneration != p.generation {
		return fmt.Errorf("%w: the guest changed its P2M during the live save (generation %d, then %d)", ErrPVP2M, p.generation, arch.P2MGeneration)
	}
	return nil
}

// ringPFNs returns the xenstore and console ring PFNs a suspended guest
// wrote into its start info (vCPU 0's rdx names the start info page).
func (p *pvSave) ringPFNs() []uint64 {
	ctx, err := p.d.VCPUContext(0)
	if err != nil {
		return nil
	}
	c, err := pv.Decode(ctx, pv.Width64)
	if err != nil {
		return nil
	}
	si, err := p.readFrames([]uint64{c.(*pv.Context64).UserRegs.RDX})
	if err != nil {
		return nil
	}
	return []uint64{le.Uint64(si[pv.StartInfoStoreMFN:]), le.Uint64(si[pv.StartInfoConsoleMFN:])}
}

// pvVCPU writes the records of one vCPU, if it is online: BASIC with
// its frames turned into PFNs, then EXTENDED, XSAVE and MSRS when Xen has
// any such state.
func (s *Saver) pvVCPU(p *pvSave, v uint32) error {
	on, err := p.d.VCPUOnline(v)
	if err != nil || !on {
		return err
	}
	raw, err := p.d.VCPUContext(v)
	if err != nil {
		return err
	}
	dc, err := pv.Decode(raw, pv.Width64)
	if err != nil {
		return err
	}
	c := dc.(*pv.Context64)
	if v == 0 {
		// vCPU 0's rdx names the start info page (the suspend record).
		pfn, ok := p.mfnToPFN(c.UserRegs.RDX)
		if !ok {
			return p.frameErr("start info (rdx of vCPU 0)", c.UserRegs.RDX)
		}
		c.UserRegs.RDX = pfn
	}
	if c.GDTEnts > pv.FirstReservedGDTEntry {
		return fmt.Errorf("%w: %d GDT entries, at most %d", ErrPVFrame, c.GDTEnts, pv.FirstReservedGDTEntry)
	}
	for i := uint64(0); i < (c.GDTEnts+511)/512; i++ {
		pfn, ok := p.mfnToPFN(c.GDTFrames[i])
		if !ok {
			return p.frameErr(fmt.Sprintf("GDT frame %d", i), c.GDTFrames[i])
		}
		c.GDTFrames[i] = pfn
	}
	pfn, ok := p.mfnToPFN(c.CtrlReg[3] >> 12)
	if !ok {
		return p.frameErr("cr3", c.CtrlReg[3]>>12)
	}
	c.CtrlReg[3] = pfn << 12
	if c.CtrlReg[1] != 0 {
		pfn, ok := p.mfnToPFN(c.CtrlReg[1] >> 12)
		if !ok {
			return p.frameErr("cr1 (user page table)", c.CtrlReg[1]>>12)
		}
		c.CtrlReg[1] = 1 | pfn<<12
	}
	enc, err := pv.Encode(c)
	if err != nil {
		return err
	}
	s.out.record(&libxc.VCPUContext{Kind: libxc.TypeX86PVVCPUBasic, VCPU: v, Context: enc})
	for _, q := range []struct {
		kind libxc.RecordType
		get  func(uint32) ([]byte, error)
	}{{libxc.TypeX86PVVCPUExtended, p.d.VCPUExtended}, {libxc.TypeX86PVVCPUXSave, p.d.VCPUXSave}, {libxc.TypeX86PVVCPUMSRs, p.d.VCPUMSRs}} {
		b, err := q.get(v)
		if err != nil {
			return fmt.Errorf("%v: %w", q.kind, err)
		}
		if len(b) > 0 {
			s.out.record(&libxc.VCPUContext{Kind: q.kind, VCPU: v, Context: b})
		}
	}
	return s.out.err
}
