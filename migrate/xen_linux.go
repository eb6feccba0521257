//go:build linux

package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/privcmd"
	"github.com/xensr/xensr/xenstore"
)

// vcpuContextRAX is the offset of rax in vcpu_guest_context_t (x86-64):
// offsetof(user_regs) 520 + offsetof(rax) 80.
const vcpuContextRAX = 600

// Host is this machine's connection to Xen: privcmd (foreign mapping),
// hypercall (typed hypercalls over pinned buffers) and xenstore. Save and
// Restore share it.
type Host struct {
	dev  *privcmd.Device
	bufs *privcmd.BufferDevice // nil: mlock()ed fallback
	// X issues hypercalls.
	X *hypercall.Xen
	// XS is the xenstore connection.
	XS *xenstore.Client
}

// OpenHost opens /dev/xen/privcmd, the hypercall buffer device (or
// mlock()ed memory without it) and a xenstore connection.
func OpenHost(ctx context.Context) (*Host, error) {
	dev, err := privcmd.Open()
	if err != nil {
		return nil, err
	}
	h := &Host{dev: dev}
	var alloc hypercall.Allocator = privcmd.LockedMemory{}
	if bd, err := privcmd.OpenBuffers(); err == nil {
		h.bufs, alloc = bd, bd
	} else if !errors.Is(err, fs.ErrNotExist) {
		dev.Close()
		return nil, err
	}
	h.X = hypercall.New(dev, hypercall.NewPool(alloc))
	// The running Xen's domctl/sysctl versions: without them every domctl
	// of a Xen other than 4.17 fails with EACCES.
	if _, err := h.X.Probe(); err != nil {
		h.Close()
		return nil, err
	}
	if h.XS, err = xenstore.Dial(ctx); err != nil {
		h.Close()
		return nil, fmt.Errorf("xenstore: %w", err)
	}
	return h, nil
}

// Close releases the host's devices and connection.
func (h *Host) Close() error {
	if h.XS != nil {
		h.XS.Close()
	}
	err := h.X.Pool.Close()
	if h.bufs != nil {
		h.bufs.Close()
	}
	return errors.Join(err, h.dev.Close())
}

// XenDomain implements Domain for a real domain of a Host.
type XenDomain struct {
	id      uint32
	h       *Host
	dev     *privcmd.Device
	x       *hypercall.Xen
	xs      *xenstore.Client
	gfns    []uint64
	mapErrs []int32
	// SuspendTimeout bounds the wait for the guest to suspend itself.
	SuspendTimeout time.Duration
}

// Domain returns domain id of h as a Domain for Save.
func (h *Host) Domain(id uint32) *XenDomain {
	return &XenDomain{id: id, h: h, dev: h.dev, x: h.X, xs: h.XS, SuspendTimeout: 60 * time.Second,
		gfns: make([]uint64, maxBatch), mapErrs: make([]int32, maxBatch)}
}

func xsCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Info implements Domain.
func (d *XenDomain) Info() (hypercall.DomainInfo, error) {
	return d.x.GetDomainInfo(d.id)
}

// MaxGPFN implements Domain.
func (d *XenDomain) MaxGPFN() (uint64, error) { return d.x.MaximumGPFN(d.id) }

func (d *XenDomain) controlPath() string {
	return fmt.Sprintf("/local/domain/%d/control/shutdown", d.id)
}

// Suspend asks the guest, through its xenstore control node, to suspend
// itself (as libxl does for PVH and PV-on-HVM guests), and waits until Xen
// reports it shut down for suspend.
func (d *XenDomain) Suspend() error {
	ctx, cancel := xsCtx()
	defer cancel()
	if err := d.xs.Write(ctx, d.controlPath(), []byte("suspend")); err != nil {
		return fmt.Errorf("request suspend: %w", err)
	}
	deadline := time.Now().Add(d.SuspendTimeout)
	for {
		i, err := d.Info()
		if err != nil {
			return err
		}
		if i.Suspended() {
			return nil
		}
		if i.Flags&hypercall.DomainShutdown != 0 {
			return fmt.Errorf("domain shut down with reason %d instead of suspending", i.ShutdownReason())
		}
		if time.Now().After(deadline) {
			// Withdraw an unacknowledged request so a late guest does not
			// suspend after we gave up.
			if v, err := d.xs.Read(ctx, d.controlPath()); err == nil && string(v) == "suspend" {
				d.xs.Write(ctx, d.controlPath(), nil)
			}
			return fmt.Errorf("guest did not suspend within %v", d.SuspendTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Resume cancels the suspend: the guest's SCHEDOP_shutdown returns 1
// ("cancelled"), so it keeps its event channels and rings; then the domain
// runs again, and xenstored is told it is back.
func (d *XenDomain) Resume() error {
	i, err := d.Info()
	if err != nil {
		return err
	}
	if !i.Suspended() {
		return fmt.Errorf("domain %d is not suspended (state %s reason %d)", d.id, i.State(), i.ShutdownReason())
	}
	// A guest without PV drivers (no callback IRQ) has no return code; a
	// PV guest always has one.
	if !i.HVM() {
		if err := d.setSuspendReturn(1); err != nil {
			return err
		}
	} else if cb, err := d.x.GetHVMParam(d.id, hypercall.HVMParamCallbackIRQ); err == nil && cb != 0 {
		if err := d.setSuspendReturn(1); err != nil {
			return err
		}
	}
	if err := d.x.ResumeDomain(d.id); err != nil {
		return err
	}
	ctx, cancel := xsCtx()
	defer cancel()
	if err := d.xs.ResumeDomain(ctx, d.id); err != nil {
		return fmt.Errorf("xenstore resume: %w", err)
	}
	return nil
}

// setSuspendReturn sets vCPU0's rax, the return value of its pending
// SCHEDOP_shutdown(SHUTDOWN_suspend).
func (d *XenDomain) setSuspendReturn(v uint64) error {
	ctx, err := d.x.GetVCPUContext(d.id, 0)
	if err != nil {
		return err
	}
	le.PutUint64(ctx[vcpuContextRAX:], v)
	return d.x.SetVCPUContext(d.id, 0, ctx)
}

// EnableLogDirty implements Domain, with libxc's retry: log-dirty may be on
// already (VRAM tracking), so switch it off and on again.
func (d *XenDomain) EnableLogDirty() error {
	if err := d.x.EnableLogDirty(d.id); err != nil {
		if e2 := d.x.DisableLogDirty(d.id); e2 != nil {
			return err
		}
		return d.x.EnableLogDirty(d.id)
	}
	return nil
}

// DisableLogDirty implements Domain.
func (d *XenDomain) DisableLogDirty() error { return d.x.DisableLogDirty(d.id) }

// CleanDirty implements Domain.
func (d *XenDomain) CleanDirty(bm *hypercall.DirtyBitmap) (uint64, error) {
	if _, err := d.x.CleanDirty(d.id, bm); err != nil {
		return 0, err
	}
	return uint64(bm.Count()), nil
}

// PageTypes implements Domain (XEN_DOMCTL_getpageframeinfo3).
func (d *XenDomain) PageTypes(pfns []uint64, types []uint32) error {
	g := d.gfns[:len(pfns)]
	copy(g, pfns)
	if err := d.x.GetPageFrameInfo3(d.id, g); err != nil {
		return err
	}
	for i := range g {
		types[i] = uint32(g[i]) & hypercall.PageTypeMask
	}
	return nil
}

// foreignMap is a MMAPBATCH_V2 mapping of guest frames.
type foreignMap struct {
	mem  []byte
	errs []int32
}

// Page implements PageMap.
func (m *foreignMap) Page(i int) ([]byte, error) {
	if m.errs[i] != 0 {
		return nil, unix.Errno(-m.errs[i])
	}
	return m.mem[i*PageSize : (i+1)*PageSize], nil
}

// Contiguous returns the whole mapping: page i at offset i*PageSize.
func (m *foreignMap) Contiguous() []byte { return m.mem }

// Unmap implements PageMap.
func (m *foreignMap) Unmap() error { return privcmd.Munmap(m.mem) }

// MapPages implements Domain (IOCTL_PRIVCMD_MMAPBATCH_V2, read-only).
func (d *XenDomain) MapPages(pfns []uint64) (PageMap, error) {
	errs := d.mapErrs[:len(pfns)]
	mem, err := d.dev.MmapBatchV2(d.id, pfns, errs, unix.PROT_READ)
	if err != nil && !errors.Is(err, privcmd.ErrPartial) {
		return nil, err
	}
	return &foreignMap{mem: mem, errs: errs}, nil
}

// HVMContext implements Domain.
func (d *XenDomain) HVMContext() ([]byte, error) { return d.x.GetHVMContext(d.id) }

// HVMParam implements Domain.
func (d *XenDomain) HVMParam(index uint32) (uint64, error) { return d.x.GetHVMParam(d.id, index) }

// CPUPolicy implements Domain.
func (d *XenDomain) CPUPolicy() ([]byte, []byte, error) { return d.x.GetCPUPolicy(d.id) }

// TSCInfo implements Domain.
func (d *XenDomain) TSCInfo() (hypercall.TSCInfo, error) { return d.x.GetTSCInfo(d.id) }

// Destroy destroys the domain and removes what the toolstack kept about it:
// its xenstore directories, its backends in dom0 and libxl's userdata files.
func (d *XenDomain) Destroy() error {
	info, _ := d.Info()
	uuid := info.UUID()
	var err error
	for try := 0; try < 100; try++ {
		err = d.x.DestroyDomain(d.id)
		if !errors.Is(err, unix.EAGAIN) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	ctx, cancel := xsCtx()
	defer cancel()
	paths := []string{
		fmt.Sprintf("/local/domain/%d", d.id),
		fmt.Sprintf("/libxl/%d", d.id),
		"/vm/" + uuid,
	}
	if kinds, err := d.xs.Directory(ctx, "/local/domain/0/backend"); err == nil {
		for _, k := range kinds {
			paths = append(paths, fmt.Sprintf("/local/domain/0/backend/%s/%d", k, d.id))
		}
	}
	for _, p := range paths {
		d.xs.Rm(ctx, p) // absent paths are fine
	}
	files, _ := filepath.Glob(fmt.Sprintf("/var/lib/xen/userdata-d.%d.%s.*", d.id, uuid))
	for _, f := range files {
		os.Remove(f)
	}
	return nil
}

// Rename sets the domain's name in xenstore (xl migrate renames the source
// to NAME--migratedaway before the receiver takes the name).
func (d *XenDomain) Rename(to string) error {
	ctx, cancel := xsCtx()
	defer cancel()
	return d.xs.Write(ctx, fmt.Sprintf("/local/domain/%d/name", d.id), []byte(to))
}

// Config returns the libxl domain configuration xl keeps for the domain
// (its userdata file), prepared for the xl header of a save (see
// PrepareConfig): `xl restore` needs it.
func (d *XenDomain) Config() ([]byte, error) {
	info, err := d.Info()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(UserdataPath(d.id, info.UUID()))
	if err != nil {
		return nil, fmt.Errorf("domain configuration: %w", err)
	}
	// The name is the one in xenstore now, as
	// libxl_retrieve_domain_configuration has it: a domain renamed since
	// (xl migrate-receive's NAME--incoming -> NAME) keeps its old name in
	// the userdata file.
	ctx, cancel := xsCtx()
	defer cancel()
	if name, err := d.xs.Read(ctx, fmt.Sprintf("/local/domain/%d/name", d.id)); err == nil && len(name) > 0 {
		if b, err = withName(b, string(name)); err != nil {
			return nil, fmt.Errorf("domain configuration: %w", err)
		}
	}
	return PrepareConfig(b)
}

// ID returns the domain's id.
func (d *XenDomain) ID() uint32 { return d.id }

// XenVersion is the running hypervisor's version (XENVER_version).
func (d *XenDomain) XenVersion() (major, minor uint32, err error) { return d.x.Version() }
