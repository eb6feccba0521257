//go:build linux

package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/privcmd"
	"github.com/xensr/xensr/xenstore"
)

// Builder returns the host as a Builder for Restore.
func (h *Host) Builder() Builder { return &xenBuilder{h: h} }

// Toolstack returns the host's xenstore and libxl files as a Toolstack for
// Restore.
func (h *Host) Toolstack() Toolstack { return &xenToolstack{h: h} }

// xenBuilder implements Builder with hypercalls and privcmd mappings.
type xenBuilder struct {
	h    *Host
	errs []int32
}

func (b *xenBuilder) CreateDomain(c hypercall.CreateDomain) (uint32, error) {
	return b.h.X.CreateDomainOp(0, c)
}
func (b *xenBuilder) SetMaxVCPUs(dom, n uint32) error { return b.h.X.SetMaxVCPUs(dom, n) }
func (b *xenBuilder) SetVCPUAffinity(dom, vcpu uint32, hard, soft hypercall.CPUMap) error {
	_, _, err := b.h.X.SetVCPUAffinity(dom, vcpu, hard, soft)
	return err
}
func (b *xenBuilder) SetMaxMem(dom uint32, kib uint64) error { return b.h.X.SetMaxMem(dom, kib) }
func (b *xenBuilder) SetPagingMempoolSize(dom uint32, n uint64) error {
	return b.h.X.SetPagingMempoolSize(dom, n)
}
func (b *xenBuilder) SetTSCInfo(dom uint32, t hypercall.TSCInfo) error {
	return b.h.X.SetTSCInfo(dom, t)
}
func (b *xenBuilder) SetCPUPolicy(dom uint32, cpuid, msr []byte) error {
	return b.h.X.SetCPUPolicy(dom, cpuid, msr)
}
func (b *xenBuilder) SetHVMParam(dom, index uint32, v uint64) error {
	if index == hypercall.HVMParamAltp2m && b.h.X.Interface().Altp2mAtCreate() {
		// Xen 4.19 on takes the altp2m mode at createdomain, where
		// CreateDomainOp leaves it zero (disabled), and refuses the
		// parameter afterwards: a disabled mode needs nothing more.
		if v != 0 {
			return fmt.Errorf("altp2m mode %d: on %v it is set at createdomain, which this restore does not do yet", v, b.h.X.Interface())
		}
		return nil
	}
	return b.h.X.SetHVMParam(dom, index, v)
}
func (b *xenBuilder) SetHVMContext(dom uint32, ctx []byte) error {
	return b.h.X.SetHVMContext(dom, ctx)
}
func (b *xenBuilder) PopulatePhysmap(dom uint32, gfns []uint64) error {
	return b.h.X.PopulatePhysmap(dom, gfns)
}
func (b *xenBuilder) AllocUnbound(dom, remote uint32) (uint32, error) {
	return b.h.X.AllocUnbound(dom, remote)
}
func (b *xenBuilder) Unpause(dom uint32) error { return b.h.X.UnpauseDomain(dom) }

// MapWritable maps gfns read-write (IOCTL_PRIVCMD_MMAPBATCH_V2).
func (b *xenBuilder) MapWritable(dom uint32, gfns []uint64) (PageMap, error) {
	if cap(b.errs) < len(gfns) {
		b.errs = make([]int32, len(gfns))
	}
	errs := b.errs[:len(gfns)]
	mem, err := b.h.dev.MmapBatchV2(dom, gfns, errs, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil && !errors.Is(err, privcmd.ErrPartial) {
		return nil, err
	}
	return &foreignMap{mem: mem, errs: errs}, nil
}

// SeedGrantTable maps the domain's first grant-table frame as a resource
// (XENMEM_acquire_resource through privcmd) and writes the console and
// xenstore entries, as libxenguest does after a restore.
func (b *xenBuilder) SeedGrantTable(dom uint32, console, store grant.EntryV1) error {
	mem, err := b.h.dev.MmapResource(uint32(dom), hypercall.ResourceGrantTable, hypercall.ResourceGrantTableIDShared, 0, 1, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		return fmt.Errorf("map grant table: %w", err)
	}
	copy(mem[hypercall.GrantRefConsole*grant.EntrySizeV1:], grant.AppendV1(nil, console))
	copy(mem[hypercall.GrantRefXenstore*grant.EntrySizeV1:], grant.AppendV1(nil, store))
	return privcmd.Munmap(mem)
}

// DestroyDomain destroys dom, waiting while Xen releases its memory.
func (b *xenBuilder) DestroyDomain(dom uint32) error {
	var err error
	for try := 0; try < 500; try++ {
		if err = b.h.X.DestroyDomain(dom); !errors.Is(err, unix.EAGAIN) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// xenToolstack implements Toolstack with xenstore and /var/lib/xen.
type xenToolstack struct{ h *Host }

func (t *xenToolstack) DomainNames() (map[uint32]string, error) {
	ctx, cancel := xsCtx()
	defer cancel()
	doms, err := t.h.X.GetDomainInfoList(0, 1024)
	if err != nil {
		return nil, err
	}
	names := map[uint32]string{}
	for _, d := range doms {
		if n, err := t.h.XS.Read(ctx, fmt.Sprintf("/local/domain/%d/name", d.Domain)); err == nil {
			names[d.Domain] = string(n)
		}
	}
	return names, nil
}

func (t *xenToolstack) ServiceDomains() (uint32, uint32, error) {
	ctx, cancel := xsCtx()
	defer cancel()
	read := func(p string) (uint32, error) {
		v, err := t.h.XS.Read(ctx, p)
		if errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 16)
		return uint32(n), err
	}
	s, err := read("/tool/xenstored/domid")
	if err != nil {
		return 0, 0, err
	}
	c, err := read("/tool/xenconsoled/domid")
	return s, c, err
}

func (t *xenToolstack) WriteNodes(nodes []Node) error {
	ctx, cancel := xsCtx()
	defer cancel()
	return t.h.XS.Transaction(ctx, func(tx *xenstore.Tx) error {
		for _, n := range nodes {
			if err := tx.Write(ctx, n.Path, []byte(n.Value)); err != nil {
				return fmt.Errorf("write %s: %w", n.Path, err)
			}
			if n.Perms != nil {
				if err := tx.SetPerms(ctx, n.Path, n.Perms); err != nil {
					return fmt.Errorf("set perms of %s: %w", n.Path, err)
				}
			}
		}
		return nil
	})
}

func (t *xenToolstack) Introduce(dom uint32, gfn uint64, port uint32) error {
	ctx, cancel := xsCtx()
	defer cancel()
	return t.h.XS.Introduce(ctx, dom, gfn, port)
}

func (t *xenToolstack) WriteUserdata(dom uint32, uuid [16]byte, config []byte) error {
	path := UserdataPath(dom, FormatUUID(uuid))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, config, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Cleanup removes the restore's subtrees and userdata files. /vm/UUID
// stays when another domain still refers to it (the source of a
// migration on the same host shares the UUID).
func (t *xenToolstack) Cleanup(dom uint32, uuid [16]byte, roots []string) error {
	ctx, cancel := xsCtx()
	defer cancel()
	vm := "/vm/" + FormatUUID(uuid)
	shared := false
	if ids, err := t.h.XS.Directory(ctx, "/local/domain"); err == nil {
		for _, id := range ids {
			if id == strconv.Itoa(int(dom)) {
				continue
			}
			if v, err := t.h.XS.Read(ctx, "/local/domain/"+id+"/vm"); err == nil && string(v) == vm {
				shared = true
			}
		}
	}
	var errs []error
	for _, r := range roots {
		if r == vm && shared {
			continue
		}
		if err := t.h.XS.Rm(ctx, r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("rm %s: %w", r, err))
		}
	}
	files, _ := filepath.Glob(fmt.Sprintf("/var/lib/xen/userdata-d.%d.%s.*", dom, FormatUUID(uuid)))
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Restore restores r into a new domain of this host: see the package
// function Restore.
func (h *Host) Restore(ctx context.Context, r io.Reader, opt RestoreOptions) (*Restored, error) {
	return Restore(ctx, h.Builder(), h.Toolstack(), r, opt)
}
