package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream/libxc"
)

// hvmParamsSaved lists the HVM parameters a save carries, in the order Xen
// 4.17's libxc writes them (only the non-zero ones go into the record).
var hvmParamsSaved = []uint32{
	hypercall.HVMParamStorePFN, hypercall.HVMParamIOREQPFN, hypercall.HVMParamBufIOREQPFN,
	hypercall.HVMParamPagingRingPFN, hypercall.HVMParamMonitorRingPFN, hypercall.HVMParamSharingRingPFN,
	hypercall.HVMParamVM86TSSSized, hypercall.HVMParamConsolePFN, hypercall.HVMParamACPIIOPortsLocation,
	hypercall.HVMParamViridian, hypercall.HVMParamIdentPT, hypercall.HVMParamVMGenerationIDAddr,
	hypercall.HVMParamIOREQServerPFN, hypercall.HVMParamNrIOREQServerPages, hypercall.HVMParamX87FIPWidth,
	hypercall.HVMParamMCACap,
}

// ringParams are the HVM parameters naming the xenstore and console ring
// pages.
var ringParams = []uint32{hypercall.HVMParamStorePFN, hypercall.HVMParamConsolePFN}

// maxP2MSize is the largest p2m a restore accepts (xg_sr_restore).
const maxP2MSize = 0x0fffffff

// A Policy decides, after each live precopy round, whether to run another
// one (true) or to suspend the guest and send the rest (false). last is the
// round just sent (last.Round 0 is the first full pass, last.Dirty the
// pages it sent), all every round so far.
type Policy func(last RoundStats, all []RoundStats) bool

// RoundsPolicy is libxc's precopy policy: another round while fewer than
// maxRounds rounds followed the first pass and the last round had at least
// targetDirty dirty pages. Xen 4.17's libxl uses RoundsPolicy(5, 50).
func RoundsPolicy(maxRounds int, targetDirty uint64) Policy {
	return func(last RoundStats, _ []RoundStats) bool {
		return last.Round < maxRounds && last.Dirty >= targetDirty
	}
}

// DefaultPolicy is the precopy policy of xl migrate: RoundsPolicy(5, 50).
var DefaultPolicy = RoundsPolicy(5, 50)

// Progress is what a progress callback receives: after every batch of
// pages and at the end of every round.
type Progress struct {
	Round       int     // precopy round (0: the first full pass); -1 on restore
	Final       bool    // the stop-and-copy round (the guest is suspended)
	Done        uint64  // pages handled so far in this round (save) or in all (restore)
	Total       uint64  // pages this round has to handle; 0 when unknown
	Bytes       int64   // stream bytes so far
	BytesPerSec float64 // stream rate since the start
}

// SaveOptions tune a save.
type SaveOptions struct {
	Live bool // log-dirty precopy rounds before suspending
	// Policy decides how many precopy rounds run; nil is DefaultPolicy.
	Policy Policy
	// Config is the domain configuration (libxl JSON) for the xl header;
	// xl restore needs it.
	Config []byte
	// XenMajor and XenMinor are the Xen version the libxc domain header
	// names; zero asks a Domain that knows its hypervisor (XenVersioner,
	// as *XenDomain) for it.
	XenMajor uint32
	XenMinor uint32
	// SkipZero sends all-zero pages of the first pass as XALLOC (allocate
	// only, no data) instead of 4096 zero bytes.
	SkipZero bool
	// Log receives human-readable progress lines; nil discards them.
	Log io.Writer
	// OnProgress, if set, is called after every batch of pages.
	OnProgress func(Progress)
	// Quiescers are the dom0 backends serving the guest through grant
	// mappings (block, network). Log-dirty never sees a write made
	// through a grant mapping while it is mapped, so the final pass would
	// miss the last writes of a backend that is still working: the save
	// quiesces every backend once the guest is suspended, before the last
	// log-dirty harvest, and sends again the frames each reports.
	Quiescers []Quiescer
	// Paused saves a domain the caller has paused (and keeps paused) as it
	// stands, without asking the guest to suspend: a snapshot for
	// inspection or comparison. The image restores a consistent guest only
	// if the guest had quiesced itself before the pause (as a guest does
	// on suspend). Not with Live.
	Paused bool
}

// A Quiescer is a backend in dom0 that writes guest memory through grant
// mappings (package blkback's Backend is one).
type Quiescer interface {
	// Quiesce stops taking requests, completes those in flight and
	// unmaps every grant; it returns the guest frames (GFNs) that were
	// mapped writable since log-dirty was enabled, which the save sends
	// again. It is called after the guest is suspended.
	Quiesce(ctx context.Context) (gfns []uint64, err error)
	// Unquiesce lets the backend serve the guest again; a save that
	// fails or is aborted calls it before resuming the guest.
	Unquiesce() error
}

// XenVersioner is a Domain that can name the hypervisor it runs on.
type XenVersioner interface {
	XenVersion() (major, minor uint32, err error)
}

// RoundStats describes one pass over memory.
type RoundStats struct {
	Round   int           // 0 is the first full pass; Final marks stop-and-copy
	Final   bool          // sent while the domain was suspended
	Dirty   uint64        // frames marked in the bitmap for this pass
	Sent    uint64        // pages with data written
	Zero    uint64        // zero pages sent as XALLOC, without data (SkipZero)
	Elapsed time.Duration // wall time of the pass
	// Where the time went: page-type queries, foreign mapping (map, read
	// and unmap), and writing records.
	TypesTime, MapTime, WriteTime time.Duration
}

// Stats summarises a save.
type Stats struct {
	P2MSize  uint64
	Rounds   []RoundStats
	Pages    uint64        // pages with data written, all rounds
	Zero     uint64        // zero pages sent without data (SkipZero)
	Bytes    int64         // bytes of stream written
	Total    time.Duration // from start to the flushed END
	Downtime time.Duration // from suspend request to the flushed END
}

// Saver saves one domain. Use Save once, then Commit (destroy the domain) or
// Abort (resume it) as the receiving side's answer dictates.
type Saver struct {
	d         Domain
	opt       SaveOptions
	ctx       context.Context
	start     time.Time
	info      hypercall.DomainInfo
	suspended bool
	logDirty  bool
	quiesced  []Quiescer // quiesced backends, to unquiesce on failure
	requeue   []uint64   // frames the quiesced backends wrote

	// batch scratch, reused across batches
	pfns    []uint64
	types   []uint32
	mpfns   []uint64
	mtypes  []uint32
	entries []uint64
	stage   []byte
	page    libxc.PageData
	stats   Stats
	out     *imageWriter
	pv      *pvSave // the PV part of a PV domain's save
}

// NewSaver returns a Saver of d.
func NewSaver(d Domain, opt SaveOptions) *Saver {
	if opt.Policy == nil {
		opt.Policy = DefaultPolicy
	}
	return &Saver{
		d: d, opt: opt,
		pfns:    make([]uint64, 0, maxBatch),
		types:   make([]uint32, maxBatch),
		mpfns:   make([]uint64, 0, maxBatch),
		mtypes:  make([]uint32, 0, maxBatch),
		entries: make([]uint64, 0, maxBatch),
		stage:   make([]byte, 0, maxBatch*PageSize),
	}
}

func (s *Saver) logf(format string, a ...any) {
	if s.opt.Log != nil {
		fmt.Fprintf(s.opt.Log, format+"\n", a...)
	}
}

// Save saves d into w with a new Saver and returns it for Commit or
// Abort: see Saver.Save.
func Save(ctx context.Context, d Domain, w io.Writer, opt SaveOptions) (*Saver, Stats, error) {
	s := NewSaver(d, opt)
	st, err := s.Save(ctx, w)
	return s, st, err
}

// Save writes the whole xl save image of the domain to w. On success the
// domain is left suspended: call Commit or Abort. On failure, including a
// cancelled ctx (checked between batches of pages), the domain has been
// resumed (or was never stopped) and the error is a *SaveError.
func (s *Saver) Save(ctx context.Context, w io.Writer) (Stats, error) {
	start := time.Now()
	s.ctx, s.start = ctx, start
	err := s.save(w)
	if err != nil {
		return s.stats, s.recover(err)
	}
	s.stats.Total = time.Since(start)
	s.stats.Bytes = s.out.n
	return s.stats, nil
}

// Commit destroys the saved domain, as `xl save` does after a successful
// save.
func (s *Saver) Commit() error {
	s.quiesced = nil // the backends' guest is gone: their owners tear them down
	if s.logDirty {
		s.d.DisableLogDirty()
		s.logDirty = false
	}
	return s.d.Destroy()
}

// Abort resumes the domain after a complete save whose image was refused
// downstream (a failed migration): the guest carries on where it was.
func (s *Saver) Abort() error {
	e := s.recover(nil)
	if e != nil {
		return e
	}
	return nil
}

// recover undoes log-dirty and suspension after cause; it returns a
// *SaveError for cause (nil cause: nil unless resuming fails).
func (s *Saver) recover(cause error) error {
	se, _ := cause.(*SaveError)
	if cause != nil && se == nil {
		se = &SaveError{Step: "save", Round: -1, Err: cause}
	}
	if s.logDirty {
		if err := s.d.DisableLogDirty(); err != nil {
			s.logf("migrate: disabling log-dirty: %v", err)
		}
		s.logDirty = false
	}
	for _, q := range s.quiesced {
		if err := q.Unquiesce(); err != nil {
			s.logf("migrate: unquiescing a backend: %v", err)
			if se == nil {
				se = &SaveError{Step: "unquiesce", Round: -1, Err: err}
			}
		}
	}
	s.quiesced = nil
	resumed := true
	if s.suspended {
		if err := s.d.Resume(); err != nil {
			resumed = false
			s.logf("migrate: RESUME FAILED: %v", err)
			if se == nil {
				se = &SaveError{Step: "resume", Round: -1, Err: err}
			}
		} else {
			s.suspended = false
			s.logf("migrate: domain %d resumed (suspend cancelled)", s.info.Domain)
		}
	}
	if se == nil {
		return nil
	}
	se.Resumed = resumed
	return se
}

func stepErr(step string, err error) error {
	return &SaveError{Step: step, Round: -1, Err: err}
}

func (s *Saver) save(w io.Writer) error {
	info, err := s.d.Info()
	if err != nil {
		return stepErr("domain info", err)
	}
	s.info = info
	if s.opt.Paused && s.opt.Live {
		return stepErr("options", errors.New("a live save cannot leave the domain paused"))
	}
	if !info.HVM() {
		pd, ok := s.d.(PVDomain)
		if !ok {
			return stepErr("domain info", ErrNotHVM)
		}
		return s.savePV(w, pd)
	}
	maxgpfn, err := s.d.MaxGPFN()
	if err != nil {
		return stepErr("maximum gpfn", err)
	}
	p2m := maxgpfn + 1
	if p2m > maxP2MSize {
		return stepErr("maximum gpfn", fmt.Errorf("%w: %d frames", ErrTooBig, p2m))
	}
	s.stats.P2MSize = p2m
	cpuid, msr, err := s.d.CPUPolicy()
	if err != nil {
		return stepErr("cpu policy", err)
	}
	cpuRec, msrRec, err := libxc.DecodeCPUPolicy(cpuid, msr)
	if err != nil {
		return stepErr("cpu policy", err)
	}

	if s.opt.XenMajor == 0 && s.opt.XenMinor == 0 {
		if v, ok := s.d.(XenVersioner); ok {
			if s.opt.XenMajor, s.opt.XenMinor, err = v.XenVersion(); err != nil {
				return stepErr("xen version", err)
			}
		}
	}
	s.out = newImageWriter(w)
	out := s.out
	out.xlHeader(s.opt.Config)
	out.libxlHeader(s.opt.XenMajor, s.opt.XenMinor)
	out.record(cpuRec)
	out.record(msrRec)
	out.record(&libxc.StaticDataEnd{})
	if out.err != nil {
		return stepErr("write headers", out.err)
	}
	s.logf("migrate: domain %d: %d pages (%d MiB), p2m size %d, live=%v",
		info.Domain, info.TotPages, info.TotPages*PageSize>>20, p2m, s.opt.Live)

	bm := hypercall.NewDirtyBitmap(p2m)
	var suspendAt time.Time
	if s.opt.Live {
		if err := s.d.EnableLogDirty(); err != nil {
			return stepErr("enable log-dirty", err)
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
			dirty, err := s.d.CleanDirty(bm)
			if err != nil {
				return &SaveError{Step: "log-dirty clean", Round: round + 1, Err: err}
			}
			s.logf("migrate: round %d: %d pages dirtied during round %d", round+1, dirty, round)
		}
		if suspendAt, err = s.stop(); err != nil {
			return err
		}
		if _, err := s.d.CleanDirty(bm); err != nil {
			return &SaveError{Step: "final log-dirty clean", Round: len(s.stats.Rounds), Err: err}
		}
		// dom0's xenstored and xenconsoled write the guest's ring pages
		// through foreign mappings, which log-dirty does not see: send
		// those pages again now that they are quiet.
		var rings []uint64
		for _, idx := range ringParams {
			if v, err := s.d.HVMParam(idx); err == nil && v != 0 {
				rings = append(rings, v)
			}
		}
		if err := s.finalPass(bm, rings); err != nil {
			return err
		}
	} else {
		if suspendAt, err = s.stop(); err != nil {
			return err
		}
		markAll(bm, p2m)
		if err := s.sendPages(bm, 0, true); err != nil {
			return err
		}
	}

	if err := s.writeTSC(); err != nil {
		return err
	}

	ctx, err := s.d.HVMContext()
	if err != nil {
		return stepErr("hvm context", err)
	}
	out.record(&libxc.HVMContext{Data: ctx})

	params := &libxc.HVMParams{}
	for _, idx := range hvmParamsSaved {
		v, err := s.d.HVMParam(idx)
		if err != nil {
			return stepErr(fmt.Sprintf("hvm param %d", idx), err)
		}
		if v != 0 {
			params.Params = append(params.Params, libxc.HVMParam{Index: uint64(idx), Value: v})
		}
	}
	if len(params.Params) > 0 {
		out.record(params)
	}
	out.end()
	if err := out.flush(); err != nil {
		return stepErr("write end of stream", err)
	}
	s.stats.Downtime = time.Since(suspendAt)
	return nil
}

// finalPass sends, with the guest suspended, the frames marked in bm and
// those written behind log-dirty's back: extra (the rings dom0 writes
// through foreign mappings) and the frames the quiesced backends had
// mapped. Every page is then in the stream and log-dirty is turned off.
func (s *Saver) finalPass(bm *hypercall.DirtyBitmap, extra []uint64) error {
	p2m := s.stats.P2MSize
	for _, list := range [][]uint64{extra, s.requeue} {
		for _, g := range list {
			if g < p2m {
				bm.Set(g)
			}
		}
	}
	if err := s.sendPages(bm, len(s.stats.Rounds), true); err != nil {
		return err
	}
	if err := s.d.DisableLogDirty(); err != nil {
		return stepErr("disable log-dirty", err)
	}
	s.logDirty = false
	return nil
}

// writePages writes one PAGE_DATA record of ent and data (first is the
// batch's first PFN, for the error), timing the write apart from mapping.
func (s *Saver) writePages(ent []uint64, data []byte, round int, first uint64, rs *RoundStats) error {
	s.page.Entries, s.page.Data = ent, data
	t := time.Now()
	s.out.record(&s.page)
	rs.WriteTime += time.Since(t)
	rs.MapTime -= time.Since(t)
	if s.out.err != nil {
		return &SaveError{Step: "write page data", Round: round, PFN: first, HasPFN: true, Err: s.out.err}
	}
	return nil
}

// stop asks the guest to suspend, unless the save was cancelled; it returns
// when it asked (the start of the downtime).
func (s *Saver) stop() (time.Time, error) {
	if err := s.ctx.Err(); err != nil {
		return time.Time{}, stepErr("cancelled", err)
	}
	t := time.Now()
	return t, s.suspend()
}

// writeTSC writes the X86_TSC_INFO record.
func (s *Saver) writeTSC() error {
	tsc, err := s.d.TSCInfo()
	if err != nil {
		return stepErr("tsc info", err)
	}
	s.out.record(&libxc.X86TSCInfo{Mode: tsc.Mode, KHz: tsc.KHz, Nsec: tsc.ElapsedNsec, Incarnation: tsc.Incarnation})
	return nil
}

// suspend asks the guest to suspend and checks that it did.
func (s *Saver) suspend() error {
	if s.opt.Paused {
		info, err := s.d.Info()
		if err != nil {
			return stepErr("check paused", err)
		}
		if info.Flags&hypercall.DomainPaused == 0 && !info.Suspended() {
			return stepErr("check paused", fmt.Errorf("%w: SaveOptions.Paused, but domain %d is running (state %s)", ErrNotSuspended, info.Domain, info.State()))
		}
		return nil
	}
	t := time.Now()
	if err := s.d.Suspend(); err != nil {
		// The guest may have suspended after all: make recover resume it.
		if i, e := s.d.Info(); e == nil && i.Suspended() {
			s.suspended = true
		}
		return stepErr("suspend", err)
	}
	s.suspended = true
	info, err := s.d.Info()
	if err != nil {
		return stepErr("suspend", err)
	}
	if !info.Suspended() {
		return stepErr("suspend", fmt.Errorf("%w: state %s reason %d", ErrNotSuspended, info.State(), info.ShutdownReason()))
	}
	s.logf("migrate: domain %d suspended in %v", s.info.Domain, time.Since(t).Round(time.Millisecond))
	for i, q := range s.opt.Quiescers {
		gfns, err := q.Quiesce(s.ctx)
		if err != nil {
			return stepErr(fmt.Sprintf("quiesce backend %d", i), err)
		}
		s.quiesced = append(s.quiesced, q)
		s.requeue = append(s.requeue, gfns...)
	}
	if len(s.opt.Quiescers) > 0 {
		s.logf("migrate: %d backends quiesced, %d frames they mapped sent again", len(s.opt.Quiescers), len(s.requeue))
	}
	return nil
}

// markAll marks frames 0..n-1 of bm.
func markAll(bm *hypercall.DirtyBitmap, n uint64) {
	for i := range bm.Words {
		bm.Words[i] = ^uint64(0)
	}
	if r := n % 64; r != 0 && n/64 < uint64(len(bm.Words)) {
		bm.Words[n/64] = 1<<r - 1
	}
}

// sendPages writes every frame marked in bm as PAGE_DATA records.
func (s *Saver) sendPages(bm *hypercall.DirtyBitmap, round int, final bool) error {
	t := time.Now()
	p2m := s.stats.P2MSize
	rs := RoundStats{Round: round, Final: final}
	s.pfns = s.pfns[:0]
	var total uint64
	if s.opt.OnProgress != nil {
		total = uint64(bm.Count())
	}
	flush := func() error {
		if len(s.pfns) == 0 {
			return nil
		}
		// A suspended guest is past cancelling: finish what costs
		// downtime either way, unless the caller insists.
		if err := s.ctx.Err(); err != nil {
			return &SaveError{Step: "cancelled", Round: round, Err: err}
		}
		n, err := s.writeBatch(round, &rs)
		rs.Sent += n
		s.pfns = s.pfns[:0]
		if err == nil && s.opt.OnProgress != nil {
			s.opt.OnProgress(Progress{Round: round, Final: final, Done: rs.Dirty, Total: total,
				Bytes: s.out.n, BytesPerSec: rate(s.out.n, time.Since(s.start))})
		}
		return err
	}
	var err error
	bm.ForEach(func(p uint64) bool {
		if p >= p2m { // frames past the p2m (the bitmap is word-rounded)
			return false
		}
		rs.Dirty++
		s.pfns = append(s.pfns, p)
		if len(s.pfns) == maxBatch {
			err = flush()
		}
		return err == nil
	})
	if err == nil {
		err = flush()
	}
	rs.Elapsed = time.Since(t)
	s.stats.Rounds = append(s.stats.Rounds, rs)
	s.stats.Pages += rs.Sent
	s.stats.Zero += rs.Zero
	if err != nil {
		return err
	}
	what := "live"
	if final {
		what = "suspended"
	}
	sec := rs.Elapsed.Seconds()
	if sec <= 0 {
		sec = 1e-9
	}
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	s.logf("migrate: round %d (%s): %d dirty frames, %d pages sent (%.1f MiB), %d zero pages without data, in %v, %.1f MiB/s [types %s, map %s, write %s]",
		round, what, rs.Dirty, rs.Sent, float64(rs.Sent*PageSize)/(1<<20), rs.Zero,
		ms(rs.Elapsed), float64(rs.Sent*PageSize)/(1<<20)/sec, ms(rs.TypesTime), ms(rs.MapTime), ms(rs.WriteTime))
	return nil
}

// writeBatch writes one PAGE_DATA record for s.pfns (at most maxBatch).
// Frames without data (holes) are left out of the record: a restore does
// nothing for them either way. With SaveOptions.SkipZero, an all-zero page in
// the first pass (round 0, the first time the frame appears) is sent as
// XALLOC, "allocate only": the restore populates it with a page Xen has
// scrubbed, which is zero. Later rounds always carry data, since the
// restore keeps an already-populated frame as it is on XALLOC.
func (s *Saver) writeBatch(round int, rs *RoundStats) (uint64, error) {
	if s.pv != nil {
		return s.pvWriteBatch(round, rs)
	}
	types := s.types[:len(s.pfns)]
	t0 := time.Now()
	err := s.d.PageTypes(s.pfns, types)
	rs.TypesTime += time.Since(t0)
	if err != nil {
		return 0, &SaveError{Step: "page types", Round: round, PFN: s.pfns[0], HasPFN: true, Err: err}
	}
	s.mpfns = s.mpfns[:0]
	s.mtypes = s.mtypes[:0]
	for i, p := range s.pfns {
		if hypercall.PageHasData(types[i]) {
			s.mpfns = append(s.mpfns, p)
			s.mtypes = append(s.mtypes, types[i]&hypercall.PageTypeMask)
		}
	}
	if len(s.mpfns) == 0 {
		return 0, nil
	}
	t1 := time.Now()
	m, err := s.d.MapPages(s.mpfns)
	if err != nil {
		return 0, &SaveError{Step: "map pages", Round: round, PFN: s.mpfns[0], HasPFN: true, Err: err}
	}
	defer func(t time.Time) {
		m.Unmap()
		rs.MapTime += time.Since(t)
	}(t1)
	skipZero := s.opt.SkipZero && round == 0
	ent := s.entries[:0]
	var sent uint64
	for i, p := range s.mpfns {
		pg, err := m.Page(i)
		if err == nil && len(pg) != PageSize {
			err = fmt.Errorf("mapped page is %d bytes", len(pg))
		}
		if err != nil {
			return 0, &SaveError{Step: "map page", Round: round, PFN: p, HasPFN: true, Err: err}
		}
		typ := libxc.PageType(s.mtypes[i] >> 28)
		if skipZero && bytes.Equal(pg, zeroPage[:]) {
			typ = libxc.PageXAlloc
			rs.Zero++
		} else {
			sent++
		}
		ent = append(ent, libxc.PFNEntry(p, typ))
	}
	s.entries = ent
	// The page data: the mapping itself when every mapped page goes (no
	// copy), else the pages with data gathered into a staging buffer.
	var data []byte
	if cm, ok := m.(contiguousMap); ok && sent == uint64(len(s.mpfns)) {
		data = cm.Contiguous()[:len(s.mpfns)*PageSize]
	} else {
		data = s.stage[:0]
		for i := range s.mpfns {
			if libxc.PageType(ent[i]>>60) == libxc.PageXAlloc {
				continue
			}
			pg, _ := m.Page(i)
			data = append(data, pg...)
		}
		s.stage = data
	}
	if err := s.writePages(ent, data, round, s.mpfns[0], rs); err != nil {
		return 0, err
	}
	return sent, nil
}

var zeroPage [PageSize]byte

// contiguousMap is a PageMap whose pages lie back to back in one slice
// (a privcmd mapping): PAGE_DATA can be written from it without a copy.
type contiguousMap interface {
	Contiguous() []byte
}

// rate returns n bytes over d as bytes per second.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
