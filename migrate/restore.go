package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/libxl"
	"github.com/xensr/xensr/stream/xl"
)

// Builder is everything Restore asks of the hypervisor. The Linux
// implementation (Host.Builder) issues hypercalls and maps guest memory
// through privcmd; the tests use a fake.
type Builder interface {
	CreateDomain(c hypercall.CreateDomain) (uint32, error)
	SetMaxVCPUs(dom, n uint32) error
	// SetVCPUAffinity sets a vCPU's hard and soft CPU affinity (a nil
	// map: leave it).
	SetVCPUAffinity(dom, vcpu uint32, hard, soft hypercall.CPUMap) error
	SetMaxMem(dom uint32, kib uint64) error
	SetPagingMempoolSize(dom uint32, bytes uint64) error
	SetTSCInfo(dom uint32, t hypercall.TSCInfo) error
	SetCPUPolicy(dom uint32, cpuid, msr []byte) error
	SetHVMParam(dom, index uint32, value uint64) error
	SetHVMContext(dom uint32, ctx []byte) error
	// PopulatePhysmap gives the domain a page at each of gfns.
	PopulatePhysmap(dom uint32, gfns []uint64) error
	// MapWritable maps the (populated) pages gfns for writing.
	MapWritable(dom uint32, gfns []uint64) (PageMap, error)
	// AllocUnbound allocates an event channel of dom for remote to bind.
	AllocUnbound(dom, remote uint32) (uint32, error)
	// SeedGrantTable writes grant entries ref 0 (console) and ref 1
	// (xenstore) of the domain's grant table.
	SeedGrantTable(dom uint32, console, store grant.EntryV1) error
	Unpause(dom uint32) error
	// DestroyDomain destroys the domain (waiting while Xen answers EAGAIN).
	DestroyDomain(dom uint32) error
}

// Toolstack is what Restore asks of xenstore and of libxl's files, so that
// xl treats the restored domain as its own.
type Toolstack interface {
	// DomainNames returns the name of every domain.
	DomainNames() (map[uint32]string, error)
	// ServiceDomains returns the domains of xenstored and xenconsoled
	// (/tool/xenstored/domid, /tool/xenconsoled/domid; 0 if absent).
	ServiceDomains() (store, console uint32, err error)
	// WriteNodes writes nodes in order, in one transaction.
	WriteNodes(nodes []Node) error
	// Introduce tells xenstored about the domain's ring.
	Introduce(dom uint32, gfn uint64, port uint32) error
	// WriteUserdata stores libxl's userdata file of the domain (its JSON
	// configuration).
	WriteUserdata(dom uint32, uuid [16]byte, config []byte) error
	// Cleanup removes the subtrees roots and the userdata files of dom.
	Cleanup(dom uint32, uuid [16]byte, roots []string) error
}

// RestoreOptions tune a restore.
type RestoreOptions struct {
	// Name renames the domain (default: the configuration's name).
	Name string
	// Suffix is appended to the name (xl migrate-receive restores as
	// NAME--incoming until the sender gives the name up).
	Suffix string
	// Paused leaves the domain paused: call Restored.Unpause.
	Paused bool
	// Config is the libxl JSON configuration for a bare libxl or libxc
	// stream, which carries none; it overrides the xl header's.
	Config []byte
	// Log receives human-readable progress lines; nil discards them.
	Log io.Writer
	// OnProgress, if set, is called after every PAGE_DATA record.
	OnProgress func(Progress)
	// Relaxed is not offered: a restore validates strictly.
}

// RestoreStats summarises a restore.
type RestoreStats struct {
	Pages    uint64        // pages written
	Records  int           // libxc records
	Bytes    int64         // stream bytes read
	Total    time.Duration // from the first byte to the unpaused domain
	Populate time.Duration // in populate_physmap
	Copy     time.Duration // mapping and copying pages
}

// Restored is a domain Restore built.
type Restored struct {
	Domid uint32
	Name  string
	UUID  [16]byte
	Stats RestoreStats

	b      Builder
	ts     Toolstack
	config []byte
}

// Sentinel errors of Restore.
var (
	// ErrNotPVH: the configuration is neither a PVH nor a PV guest's, or
	// the stream's domain type does not match it (x86 HVM for PVH, x86
	// PV for PV).
	ErrNotPVH = errors.New("migrate: not a PVH guest")
	// ErrNameExists: a domain of the requested name exists.
	ErrNameExists = errors.New("migrate: a domain of that name exists")
	// ErrTooManyPages: the stream carries more pages than the configured
	// memory allows.
	ErrTooManyPages = errors.New("migrate: more pages than the configured memory")
	// ErrNoConfig: a bare stream without RestoreOptions.Config.
	ErrNoConfig = errors.New("migrate: no domain configuration (bare stream without RestoreOptions.Config)")
	// ErrIncomplete: the stream ended without a record Restore needs.
	ErrIncomplete = errors.New("migrate: stream lacks a record the restore needs")
)

// RestoreError says in which step a restore failed, and that nothing of
// the domain was left behind (or what was).
type RestoreError struct {
	Step    string // e.g. "populate_physmap", "stream", "xenstore"
	Domid   uint32 // the domain being built; 0 before createdomain
	Offset  int64  // stream offset of the record being handled; -1 if none
	Cleaned bool   // the domain and its nodes and files were removed
	Cleanup error  // why cleaning up failed, if it did
	Err     error
}

func (e *RestoreError) Error() string {
	s := "migrate: restore: " + e.Step
	if e.Domid != 0 {
		s += fmt.Sprintf(" (domain %d)", e.Domid)
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at stream offset %d", e.Offset)
	}
	s += ": " + e.Err.Error()
	switch {
	case e.Domid == 0:
	case e.Cleaned:
		s += " [domain destroyed, nothing left]"
	default:
		s += fmt.Sprintf(" [CLEANUP FAILED: %v]", e.Cleanup)
	}
	return s
}

// Unwrap returns the cause.
func (e *RestoreError) Unwrap() error { return e.Err }

// restorer is one restore in progress.
type restorer struct {
	ctx  context.Context
	b    Builder
	ts   Toolstack
	opt  RestoreOptions
	cfg  *DomainConfig
	name string

	domid                  uint32
	storeDom, consoleDom   uint32
	storePort, consolePort uint32
	storeGFN, consoleGFN   uint64
	haveStore, haveConsole bool
	cpuid, msr             []byte
	hvmCtx                 []byte
	populated              map[uint64]uint64 // bitmap of populated frames, a word per 64
	nPopulated, maxPages   uint64
	pfns, dataPFNs         []uint64
	stats                  RestoreStats
	start                  time.Time
	off                    int64 // offset of the record being handled
	br                     *bufio.Reader
	total                  uint64
	pv                     *pvRestore // the PV part of a PV guest's restore
}

func (rs *restorer) logf(format string, a ...any) {
	if rs.opt.Log != nil {
		fmt.Fprintf(rs.opt.Log, format+"\n", a...)
	}
}

// Restore builds a running PVH or 64-bit PV domain from r (PV needs b to
// be a PVBuilder): an `xl save` image, a bare
// libxl stream or a bare libxc stream (format detected from the magic). It
// creates the domain as libxl does, loads the stream into it, writes the
// xenstore layout and userdata file xl expects, introduces it to xenstored
// and unpauses it (unless opt.Paused).
//
// What cannot work is refused before anything is created: a stream that is
// of another type than its configuration, a configuration neither PVH nor PV,
// a name in use. Any later
// failure, a malformed or cut stream (a *stream.FormatError inside the
// *RestoreError) or a cancelled ctx, destroys the domain and removes its
// nodes and files again.
//
// r is read up to the end of the stream and no further when it is a
// *bufio.Reader (xl's migration protocol continues on it); otherwise
// Restore wraps it in one and may read ahead.
func Restore(ctx context.Context, b Builder, ts Toolstack, r io.Reader, opt RestoreOptions) (*Restored, error) {
	rs := &restorer{ctx: ctx, b: b, ts: ts, opt: opt, start: time.Now(), off: -1, populated: map[uint64]uint64{}}
	if br, ok := r.(*bufio.Reader); ok {
		rs.br = br
	} else {
		rs.br = bufio.NewReaderSize(r, 1<<20)
	}
	err := rs.run()
	if err != nil {
		return nil, rs.fail(err)
	}
	rs.stats.Total = time.Since(rs.start)
	return &Restored{Domid: rs.domid, Name: rs.name, UUID: rs.cfg.UUID, Stats: rs.stats, b: b, ts: ts, config: rs.cfg.JSON}, nil
}

// fail wraps err and, once the domain exists, removes it.
func (rs *restorer) fail(err error) error {
	re, ok := err.(*RestoreError)
	if !ok {
		re = &RestoreError{Step: "restore", Offset: rs.off, Err: err}
	}
	re.Domid = rs.domid
	if rs.domid == 0 {
		return re
	}
	re.Cleanup = cleanup(rs.b, rs.ts, rs.domid, rs.cfg.UUID)
	re.Cleaned = re.Cleanup == nil
	rs.logf("migrate: restore failed, domain %d destroyed: %v", rs.domid, re.Err)
	return re
}

func cleanup(b Builder, ts Toolstack, domid uint32, uuid [16]byte) error {
	derr := b.DestroyDomain(domid)
	cerr := ts.Cleanup(domid, uuid, layoutRoots(domid, uuid))
	return errors.Join(derr, cerr)
}

func (rs *restorer) step(step string, err error) error {
	if err == nil {
		return nil
	}
	off := rs.off
	if fe := (*stream.FormatError)(nil); errors.As(err, &fe) {
		off = -1 // the FormatError names the exact offset
	}
	return &RestoreError{Step: step, Offset: off, Err: err}
}

func (rs *restorer) checkCtx() error {
	if err := rs.ctx.Err(); err != nil {
		return &RestoreError{Step: "cancelled", Offset: rs.off, Err: err}
	}
	return nil
}

func (rs *restorer) run() error {
	prefix, err := rs.br.Peek(image.DetectSize)
	if err != nil && (err != io.EOF || len(prefix) < 8) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return rs.step("stream", &stream.FormatError{Layer: "image", Index: -1, Field: "magic", Err: err})
	}
	format := image.Detect(prefix)
	var config []byte
	var off int64
	switch format {
	case image.FormatXL:
		h, err := xl.ReadHeader(rs.br, xl.Options{})
		if err != nil {
			return rs.step("stream", err)
		}
		config = h.ConfigText()
		off = int64(h.Size())
	case image.FormatLibxl, image.FormatLibxc:
	default:
		return rs.step("stream", &stream.FormatError{Layer: "image", Index: -1, Field: "magic", Err: image.ErrUnknownFormat})
	}
	if rs.opt.Config != nil {
		config = rs.opt.Config
	}
	if len(config) == 0 {
		return rs.step("configuration", ErrNoConfig)
	}
	if rs.cfg, err = ParseDomainConfig(config); err != nil {
		return rs.step("configuration", err)
	}
	if rs.cfg.Type != "pvh" && rs.cfg.Type != "pv" {
		return rs.step("configuration", fmt.Errorf("%w: c_info.type is %q", ErrNotPVH, rs.cfg.Type))
	}
	rs.name = rs.cfg.Name
	if rs.opt.Name != "" {
		rs.name = rs.opt.Name
	}
	if rs.name != "" {
		rs.name += rs.opt.Suffix
	}
	if rs.name == "" {
		return rs.step("configuration", fmt.Errorf("%w: no c_info.name", ErrConfig))
	}
	// The memory Xen lets the domain have: libxl's max_mem is the target
	// plus LIBXL_MAXMEM_CONSTANT (1 MiB).
	rs.maxPages = (rs.cfg.TargetMemKB + libxlMaxmemConstantKB) / 4
	rs.total = rs.cfg.TargetMemKB / 4
	if err := rs.checkCtx(); err != nil {
		return err
	}

	if format == image.FormatLibxc {
		xr := libxc.NewReaderAt(rs.br, off)
		if err := rs.libxc(xr); err != nil {
			return err
		}
		rs.stats.Bytes = xr.Offset()
		return rs.finish()
	}
	lr := libxl.NewReaderOptions(rs.br, off, libxl.Options{})
	if _, err := lr.Header(); err != nil {
		return rs.step("stream", err)
	}
	sawLibxc := false
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			err = &stream.FormatError{Layer: libxl.Layer, Offset: lr.Offset(), Index: -1, Err: io.ErrUnexpectedEOF}
		}
		if err != nil {
			return rs.step("stream", err)
		}
		rs.off = rec.Offset
		switch rec.Type {
		case libxl.TypeLibxcContext:
			xr := lr.Libxc()
			if sawLibxc || xr == nil {
				return rs.step("stream", &stream.FormatError{Layer: libxl.Layer, Offset: rec.Offset, Index: rec.Index, Type: uint32(rec.Type),
					Err: errors.New("a second libxc stream (checkpointed streams are not supported)")})
			}
			sawLibxc = true
			if err := rs.libxc(xr); err != nil {
				return err
			}
		case libxl.TypeEnd:
			if !sawLibxc {
				return rs.step("stream", &stream.FormatError{Layer: libxl.Layer, Offset: rec.Offset, Index: rec.Index, Type: uint32(rec.Type), Err: fmt.Errorf("%w: END before any libxc stream", ErrIncomplete)})
			}
			rs.stats.Bytes = lr.Offset()
			return rs.finish()
		default:
			// Emulator and checkpoint records: a PVH guest has no device
			// model, and checkpointed streams are not supported.
			return rs.step("stream", &stream.FormatError{Layer: libxl.Layer, Offset: rec.Offset, Index: rec.Index, Type: uint32(rec.Type), Field: "type",
				Err: fmt.Errorf("%v record is not supported for a PVH guest", rec.Type)})
		}
	}
}

// libxmaxmemConstantKB is LIBXL_MAXMEM_CONSTANT: the slack libxl adds to
// a domain's memory target for its maximum.
const libxlMaxmemConstantKB = 1024

// libxc reads one libxc stream into the domain, creating it once the
// headers say it is x86 HVM.
func (rs *restorer) libxc(xr *libxc.Reader) error {
	rs.off = xr.Offset()
	_, dh, err := xr.Header()
	if err != nil {
		return rs.step("stream", err)
	}
	want := libxc.DomainX86HVM
	if rs.cfg.Type == "pv" {
		want = libxc.DomainX86PV
	}
	if dh.Type != want {
		return rs.step("stream", &stream.FormatError{Layer: libxc.Layer, Offset: rs.off, Index: -1, Field: "type",
			Err: fmt.Errorf("%w: domain type %v for a %q configuration", ErrNotPVH, dh.Type, rs.cfg.Type)})
	}
	if want == libxc.DomainX86PV && rs.pv == nil {
		pb, ok := rs.b.(PVBuilder)
		if !ok {
			return rs.step("stream", fmt.Errorf("%w: the Builder cannot build PV domains", ErrPVRestore))
		}
		rs.pv = &pvRestore{b: pb, vcpus: map[uint32]*pvVCPU{}}
	}
	if dh.PageShift != 12 {
		return rs.step("stream", &stream.FormatError{Layer: libxc.Layer, Offset: rs.off, Index: -1, Field: "page_shift",
			Err: fmt.Errorf("page shift %d, want 12", dh.PageShift)})
	}
	if rs.domid == 0 {
		if err := rs.create(); err != nil {
			return err
		}
	}
	for {
		if err := rs.checkCtx(); err != nil {
			return err
		}
		rec, err := xr.Next()
		if err != nil {
			if err == io.EOF {
				err = &stream.FormatError{Layer: libxc.Layer, Offset: xr.Offset(), Index: -1, Err: io.ErrUnexpectedEOF}
			}
			return rs.step("stream", err)
		}
		cur := xr.Current()
		rs.off = cur.Offset
		rs.stats.Records++
		switch r := rec.(type) {
		case *libxc.PageData:
			if rs.pv != nil {
				err = rs.pvPageData(r)
			} else {
				err = rs.pageData(r)
			}
			if err != nil {
				return err
			}
		case *libxc.X86PVInfo, *libxc.X86PVP2MFrames, *libxc.VCPUContext, *libxc.SharedInfo:
			if rs.pv == nil {
				return rs.step("stream", &stream.FormatError{Layer: libxc.Layer, Offset: cur.Offset, Index: cur.Index, Type: cur.Type, Field: "type",
					Err: fmt.Errorf("%v record is not supported in a PVH restore", libxc.RecordType(cur.Type))})
			}
			if err := rs.pvRecord(rec); err != nil {
				return err
			}
		case *libxc.X86CPUIDPolicy:
			rs.cpuid, _ = libxc.EncodeCPUPolicy(r, nil)
		case *libxc.X86MSRPolicy:
			_, rs.msr = libxc.EncodeCPUPolicy(nil, r)
		case *libxc.StaticDataEnd:
			if len(rs.cpuid) > 0 || len(rs.msr) > 0 {
				if err := rs.b.SetCPUPolicy(rs.domid, rs.cpuid, rs.msr); err != nil {
					return rs.step("set_cpu_policy", err)
				}
			}
		case *libxc.X86TSCInfo:
			t := hypercall.TSCInfo{Mode: r.Mode, KHz: r.KHz, ElapsedNsec: r.Nsec, Incarnation: r.Incarnation}
			if err := rs.b.SetTSCInfo(rs.domid, t); err != nil {
				return rs.step("settscinfo", err)
			}
		case *libxc.HVMContext:
			if rs.pv != nil {
				return rs.step("stream", &stream.FormatError{Layer: libxc.Layer, Offset: cur.Offset, Index: cur.Index, Type: cur.Type, Field: "type",
					Err: errors.New("HVM_CONTEXT in a PV stream")})
			}
			rs.hvmCtx = append(rs.hvmCtx[:0], r.Data...)
		case *libxc.HVMParams:
			if rs.pv != nil {
				return rs.step("stream", &stream.FormatError{Layer: libxc.Layer, Offset: cur.Offset, Index: cur.Index, Type: cur.Type, Field: "type",
					Err: errors.New("HVM_PARAMS in a PV stream")})
			}
			if err := rs.hvmParams(r); err != nil {
				return err
			}
		case *libxc.End:
			if xr.Offset() > rs.stats.Bytes {
				rs.stats.Bytes = xr.Offset()
			}
			if rs.pv != nil {
				err = rs.pvComplete()
			} else {
				err = rs.complete()
			}
			if err != nil {
				return err
			}
			return nil
		default:
			return rs.step("stream", &stream.FormatError{Layer: libxc.Layer, Offset: cur.Offset, Index: cur.Index, Type: cur.Type, Field: "type",
				Err: fmt.Errorf("%v record is not supported in a PVH restore", libxc.RecordType(cur.Type))})
		}
	}
}

// create refuses a name in use, then creates and sets up the domain as
// libxl does before it reads a stream (libxl__domain_make,
// libxl__build_pre).
func (rs *restorer) create() error {
	names, err := rs.ts.DomainNames()
	if err != nil {
		return rs.step("domain names", err)
	}
	for id, n := range names {
		if n == rs.name {
			return rs.step("domain names", fmt.Errorf("%w: %q is domain %d", ErrNameExists, rs.name, id))
		}
	}
	if rs.storeDom, rs.consoleDom, err = rs.ts.ServiceDomains(); err != nil {
		return rs.step("service domains", err)
	}
	if err := rs.checkCtx(); err != nil {
		return err
	}
	id, err := rs.b.CreateDomain(rs.cfg.createDomain())
	if err != nil {
		return rs.step("createdomain", err)
	}
	rs.domid = id
	rs.logf("migrate: restoring %q as domain %d", rs.name, id)
	c := rs.cfg
	steps := []struct {
		name string
		fn   func() error
	}{
		{"max_vcpus", func() error { return rs.b.SetMaxVCPUs(id, c.MaxVCPUs) }},
		{"vcpu affinity", func() error { return rs.setAffinity(id) }},
		{"max_mem", func() error { return rs.b.SetMaxMem(id, c.TargetMemKB+libxlMaxmemConstantKB) }},
		{"evtchn alloc_unbound (xenstore)", func() (err error) { rs.storePort, err = rs.b.AllocUnbound(id, rs.storeDom); return }},
		{"evtchn alloc_unbound (console)", func() (err error) { rs.consolePort, err = rs.b.AllocUnbound(id, rs.consoleDom); return }},
		{"hvm set_param TIMER_MODE", func() error { return rs.b.SetHVMParam(id, hypercall.HVMParamTimerMode, c.TimerMode) }},
		{"hvm set_param ALTP2M", func() error { return rs.b.SetHVMParam(id, hypercall.HVMParamAltp2m, c.Altp2m) }},
		{"settscinfo", func() error { return rs.b.SetTSCInfo(id, hypercall.TSCInfo{Mode: c.TSCMode}) }},
		{"set_paging_mempool_size", func() error { return rs.b.SetPagingMempoolSize(id, c.ShadowMemKB<<10) }},
	}
	if c.Type == "pv" {
		// A PV domain has no HVM parameters and no paging pool.
		steps = slices.DeleteFunc(steps, func(s struct {
			name string
			fn   func() error
		}) bool {
			return strings.HasPrefix(s.name, "hvm ") || s.name == "set_paging_mempool_size"
		})
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return rs.step(s.name, err)
		}
	}
	return nil
}

// setAffinity sets each vCPU's hard and soft affinity from the
// configuration before the domain first runs (libxl__build_pre).
func (rs *restorer) setAffinity(id uint32) error {
	hard, soft := rs.cfg.VCPUHardAffinity, rs.cfg.VCPUSoftAffinity
	for v := 0; v < max(len(hard), len(soft)); v++ {
		var h, s hypercall.CPUMap
		var err error
		if v < len(hard) {
			if h, err = hypercall.CPUMapOf(hard[v]...); err != nil {
				return err
			}
		}
		if v < len(soft) {
			if s, err = hypercall.CPUMapOf(soft[v]...); err != nil {
				return err
			}
		}
		if err := rs.b.SetVCPUAffinity(id, uint32(v), h, s); err != nil {
			return fmt.Errorf("vcpu %d: %w", v, err)
		}
	}
	return nil
}

// The populated frames are a sparse bitmap: a word per 64 frames, only
// for the words in use, so a stray PFN costs nothing.
func (rs *restorer) isPopulated(p uint64) bool { return rs.populated[p/64]&(1<<(p%64)) != 0 }

func (rs *restorer) setPopulated(p uint64) { rs.populated[p/64] |= 1 << (p % 64) }

// pageData populates the frames of one PAGE_DATA record not populated yet
// and copies the pages with data into them.
func (rs *restorer) pageData(p *libxc.PageData) error {
	rs.pfns, rs.dataPFNs = rs.pfns[:0], rs.dataPFNs[:0]
	for i := range p.Entries {
		pfn, t := p.PFN(i), uint32(p.PageType(i))<<28
		if pfn > maxP2MSize {
			return rs.step("page data", &stream.FormatError{Layer: libxc.Layer, Offset: rs.off, Index: -1, Type: uint32(libxc.TypePageData),
				Field: "pfn", Err: fmt.Errorf("%w: pfn %#x beyond %#x", ErrTooBig, pfn, maxP2MSize)})
		}
		if t == hypercall.PageTypeXTab || t == hypercall.PageTypeBroken {
			continue
		}
		if !rs.isPopulated(pfn) {
			rs.pfns = append(rs.pfns, pfn)
		}
		if hypercall.PageHasData(t) {
			rs.dataPFNs = append(rs.dataPFNs, pfn)
		}
	}
	if len(rs.pfns) > 0 {
		if rs.nPopulated+uint64(len(rs.pfns)) > rs.maxPages {
			return rs.step("page data", fmt.Errorf("%w: frame %d of at most %d (max_memkb %d)", ErrTooManyPages,
				rs.nPopulated+uint64(len(rs.pfns)), rs.maxPages, rs.cfg.MaxMemKB))
		}
		t := time.Now()
		if err := rs.b.PopulatePhysmap(rs.domid, rs.pfns); err != nil {
			return rs.step("populate_physmap", err)
		}
		rs.stats.Populate += time.Since(t)
		for _, pfn := range rs.pfns {
			rs.setPopulated(pfn)
		}
		rs.nPopulated += uint64(len(rs.pfns))
	}
	if len(rs.dataPFNs) > 0 {
		t := time.Now()
		m, err := rs.b.MapWritable(rs.domid, rs.dataPFNs)
		if err != nil {
			return rs.step("map pages", err)
		}
		if cm, ok := m.(contiguousMap); ok && len(p.Data) == len(rs.dataPFNs)*PageSize {
			copy(cm.Contiguous(), p.Data)
		} else {
			for i, pfn := range rs.dataPFNs {
				pg, err := m.Page(i)
				if err != nil {
					m.Unmap()
					return rs.step("map pages", fmt.Errorf("pfn %#x: %w", pfn, err))
				}
				copy(pg, p.Data[i*PageSize:(i+1)*PageSize])
			}
		}
		if err := m.Unmap(); err != nil {
			return rs.step("unmap pages", err)
		}
		rs.stats.Copy += time.Since(t)
		rs.stats.Pages += uint64(len(rs.dataPFNs))
	}
	if rs.opt.OnProgress != nil {
		rs.opt.OnProgress(Progress{Round: -1, Done: rs.stats.Pages, Total: rs.total, Bytes: rs.off,
			BytesPerSec: rate(rs.off, time.Since(rs.start))})
	}
	return nil
}

// clearPage zeroes one guest page (xc_clear_domain_page).
func (rs *restorer) clearPage(gfn uint64) error {
	m, err := rs.b.MapWritable(rs.domid, []uint64{gfn})
	if err != nil {
		return err
	}
	pg, err := m.Page(0)
	if err == nil {
		clear(pg)
	}
	return errors.Join(err, m.Unmap())
}

// hvmParams applies an HVM_PARAMS record as libxc does: the ring pages are
// cleared (the backends start afresh), PAE_ENABLED is obsolete.
func (rs *restorer) hvmParams(r *libxc.HVMParams) error {
	for _, p := range r.Params {
		switch p.Index {
		case hypercall.HVMParamPAEEnabled:
			continue
		case hypercall.HVMParamConsolePFN, hypercall.HVMParamStorePFN, hypercall.HVMParamIOREQPFN, hypercall.HVMParamBufIOREQPFN:
			if err := rs.clearPage(p.Value); err != nil {
				// libxc ignores this failure; a missing ring page is
				// fatal for the console and xenstore only.
				if p.Index == hypercall.HVMParamConsolePFN || p.Index == hypercall.HVMParamStorePFN {
					return rs.step(fmt.Sprintf("clear page %#x of hvm param %d", p.Value, p.Index), err)
				}
				rs.logf("migrate: clearing page %#x of hvm param %d: %v", p.Value, p.Index, err)
			}
			switch p.Index {
			case hypercall.HVMParamConsolePFN:
				rs.consoleGFN, rs.haveConsole = p.Value, true
			case hypercall.HVMParamStorePFN:
				rs.storeGFN, rs.haveStore = p.Value, true
			}
		}
		if p.Index > 0xffffffff {
			return rs.step("hvm params", &stream.FormatError{Layer: libxc.Layer, Offset: rs.off, Index: -1, Field: "index", Err: fmt.Errorf("index %#x", p.Index)})
		}
		if err := rs.b.SetHVMParam(rs.domid, uint32(p.Index), p.Value); err != nil {
			return rs.step(fmt.Sprintf("hvm set_param %d", p.Index), err)
		}
	}
	return nil
}

// complete does what libxc does at the libxc END (event channels, HVM
// context, grant table).
func (rs *restorer) complete() error {
	if rs.hvmCtx == nil {
		return rs.step("stream end", fmt.Errorf("%w: no HVM_CONTEXT", ErrIncomplete))
	}
	if !rs.haveStore || !rs.haveConsole {
		return rs.step("stream end", fmt.Errorf("%w: HVM_PARAMS without STORE_PFN or CONSOLE_PFN", ErrIncomplete))
	}
	id := rs.domid
	if err := rs.b.SetHVMParam(id, hypercall.HVMParamStoreEvtchn, uint64(rs.storePort)); err != nil {
		return rs.step("hvm set_param STORE_EVTCHN", err)
	}
	if err := rs.b.SetHVMParam(id, hypercall.HVMParamConsoleEvtchn, uint64(rs.consolePort)); err != nil {
		return rs.step("hvm set_param CONSOLE_EVTCHN", err)
	}
	if err := rs.b.SetHVMContext(id, rs.hvmCtx); err != nil {
		return rs.step("sethvmcontext", err)
	}
	return rs.seedGrants()
}

// seedGrants writes the grant entries libxl reserves for the console and
// xenstore rings (GNTTAB_RESERVED_CONSOLE and _XENSTORE), as xc_dom_gnttab_seed
// does, so the backends can map the rings by grant.
func (rs *restorer) seedGrants() error {
	if rs.consoleGFN > 0xffffffff || rs.storeGFN > 0xffffffff {
		return rs.step("grant table", fmt.Errorf("ring frames %#x, %#x beyond a v1 grant entry", rs.consoleGFN, rs.storeGFN))
	}
	con := grant.EntryV1{Flags: grant.TypePermitAccess, Domid: uint16(rs.consoleDom), Frame: uint32(rs.consoleGFN)}
	st := grant.EntryV1{Flags: grant.TypePermitAccess, Domid: uint16(rs.storeDom), Frame: uint32(rs.storeGFN)}
	if err := rs.b.SeedGrantTable(rs.domid, con, st); err != nil {
		return rs.step("grant table seed", err)
	}
	return nil
}

// finish does what libxl does after the stream: the xenstore layout,
// INTRODUCE, the userdata file, unpause.
func (rs *restorer) finish() error {
	rs.off = -1
	if err := rs.checkCtx(); err != nil {
		return err
	}
	nodes := libxlLayout(rs.domid, rs.cfg, rs.name, rs.storePort, rs.consolePort, rs.storeGFN, rs.consoleGFN, time.Now())
	if err := rs.ts.WriteNodes(nodes); err != nil {
		return rs.step("xenstore", err)
	}
	if err := rs.ts.Introduce(rs.domid, rs.storeGFN, rs.storePort); err != nil {
		return rs.step("xenstore introduce", err)
	}
	cfg := rs.cfg.JSON
	if rs.name != rs.cfg.Name {
		var err error
		if cfg, err = withName(cfg, rs.name); err != nil {
			return rs.step("userdata", err)
		}
	}
	if err := rs.ts.WriteUserdata(rs.domid, rs.cfg.UUID, cfg); err != nil {
		return rs.step("userdata", err)
	}
	rs.cfg.JSON = cfg
	if !rs.opt.Paused {
		if err := rs.b.Unpause(rs.domid); err != nil {
			return rs.step("unpause", err)
		}
	}
	rs.logf("migrate: domain %d (%s) restored: %d pages in %v", rs.domid, rs.name, rs.stats.Pages, time.Since(rs.start).Round(time.Millisecond))
	return nil
}

// Unpause starts a domain restored with RestoreOptions.Paused.
func (r *Restored) Unpause() error { return r.b.Unpause(r.Domid) }

// Destroy destroys the restored domain and removes its nodes and files
// (a migration that failed after the stream).
func (r *Restored) Destroy() error { return cleanup(r.b, r.ts, r.Domid, r.UUID) }

// Rename renames the restored domain in xenstore and in its userdata file,
// as libxl_domain_rename does (xl migrate-receive restores as
// NAME--incoming and takes NAME once the sender gives it up).
func (r *Restored) Rename(name string) error {
	nodes := []Node{
		{Path: fmt.Sprintf("/local/domain/%d/name", r.Domid), Value: name},
		{Path: "/vm/" + FormatUUID(r.UUID) + "/name", Value: name},
	}
	if err := r.ts.WriteNodes(nodes); err != nil {
		return err
	}
	cfg, err := withName(r.config, name)
	if err != nil {
		return err
	}
	if err := r.ts.WriteUserdata(r.Domid, r.UUID, cfg); err != nil {
		return err
	}
	r.Name, r.config = name, cfg
	return nil
}
