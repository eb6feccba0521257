//go:build linux

package privcmd

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Device is an open /dev/xen/privcmd.
type Device struct{ fd int }

// Open opens /dev/xen/privcmd.
func Open() (*Device, error) {
	fd, err := unix.Open("/dev/xen/privcmd", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("privcmd: open /dev/xen/privcmd: %w", err)
	}
	return &Device{fd: fd}, nil
}

// Close closes the device.
func (d *Device) Close() error { return unix.Close(d.fd) }

// Fd returns the file descriptor.
func (d *Device) Fd() int { return d.fd }

func (d *Device) ioctl(req uintptr, arg unsafe.Pointer) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), req, uintptr(arg))
	if e != 0 {
		return r, e
	}
	return r, nil
}

// Hypercall issues hypercall op with up to five arguments (addresses of
// buffers must point into memory Xen may access: see BufferDevice). A
// negative return from Xen comes back as the errno.
func (d *Device) Hypercall(op uint64, args [5]uint64) (uint64, error) {
	hc := struct {
		op   uint64
		args [5]uint64
	}{op, args}
	r, err := d.ioctl(IoctlHypercall, unsafe.Pointer(&hc))
	return uint64(r), err
}

// ErrPartial reports a foreign mapping in which some frames failed: the
// per-frame errors say which.
var ErrPartial = errors.New("privcmd: some frames could not be mapped")

// MmapBatchV2 maps the guest frames gfns of domain dom into a new mapping of
// len(gfns) pages with protection prot (unix.PROT_READ...). errs (len(gfns)
// long) receives a negative errno per frame that failed, 0 for a mapped one;
// then the error is ErrPartial and the mapping is returned all the same.
func (d *Device) MmapBatchV2(dom uint32, gfns []uint64, errs []int32, prot int) ([]byte, error) {
	if err := checkDomid(dom); err != nil {
		return nil, err
	}
	if len(gfns) == 0 || len(errs) < len(gfns) {
		return nil, fmt.Errorf("privcmd: MmapBatchV2 needs frames and as many error slots (%d, %d)", len(gfns), len(errs))
	}
	mem, err := unix.Mmap(d.fd, 0, len(gfns)*PageSize, prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("privcmd: mmap of %d pages: %w", len(gfns), err)
	}
	mb := struct {
		num  uint32
		dom  uint16
		_    uint16
		addr uint64
		arr  uint64
		err  uint64
	}{num: uint32(len(gfns)), dom: uint16(dom),
		addr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
		arr:  uint64(uintptr(unsafe.Pointer(&gfns[0]))),
		err:  uint64(uintptr(unsafe.Pointer(&errs[0])))}
	clear(errs[:len(gfns)])
	_, err = d.ioctl(IoctlMmapBatchV2, unsafe.Pointer(&mb))
	switch {
	case err == nil:
		return mem, nil
	case errors.Is(err, unix.ENOENT):
		return mem, ErrPartial
	}
	unix.Munmap(mem)
	return nil, fmt.Errorf("privcmd: MMAPBATCH_V2 of %d frames of domain %d: %w", len(gfns), dom, err)
}

// MmapResource maps num frames of a resource (XENMEM_resource_*: type, id,
// starting frame idx) of domain dom.
func (d *Device) MmapResource(dom uint32, typ, id, idx uint32, num int, prot int) ([]byte, error) {
	if err := checkDomid(dom); err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(d.fd, 0, num*PageSize, prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("privcmd: mmap of %d pages: %w", num, err)
	}
	mr := struct {
		dom  uint16
		_    uint16
		typ  uint32
		id   uint32
		idx  uint32
		num  uint64
		addr uint64
	}{dom: uint16(dom), typ: typ, id: id, idx: idx, num: uint64(num), addr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := d.ioctl(IoctlMmapResource, unsafe.Pointer(&mr)); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("privcmd: MMAP_RESOURCE type %d id %d of domain %d: %w", typ, id, dom, err)
	}
	return mem, nil
}

// DMOp issues a device-model operation for domain dom; bufs are the
// operation's buffers (the first holds the xen_dm_op). The kernel bounces
// them, so they may be ordinary Go memory.
func (d *Device) DMOp(dom uint32, bufs [][]byte) error {
	if err := checkDomid(dom); err != nil {
		return err
	}
	type dmBuf struct {
		uptr uint64
		size uint64
	}
	kb := make([]dmBuf, len(bufs))
	for i, b := range bufs {
		if len(b) > 0 {
			kb[i] = dmBuf{uint64(uintptr(unsafe.Pointer(&b[0]))), uint64(len(b))}
		}
	}
	op := struct {
		dom, num uint16
		_        uint32
		ubufs    uint64
	}{dom: uint16(dom), num: uint16(len(bufs))}
	if len(kb) > 0 {
		op.ubufs = uint64(uintptr(unsafe.Pointer(&kb[0])))
	}
	_, err := d.ioctl(IoctlDMOp, unsafe.Pointer(&op))
	return err
}

// Restrict limits this file descriptor to operations on domain dom (used by
// de-privileged device models); it cannot be undone.
func (d *Device) Restrict(dom uint16) error {
	_, err := d.ioctl(IoctlRestrict, unsafe.Pointer(&dom))
	return err
}

// Munmap releases a mapping made by MmapBatchV2 or MmapResource.
func Munmap(b []byte) error { return unix.Munmap(b) }

// A BufferDevice is an open /dev/xen/hypercall: memory mapped from it is
// pinned by the kernel, so compaction or migration of dom0's pages never
// makes a hypercall using it fail with EFAULT.
type BufferDevice struct{ fd int }

// OpenBuffers opens /dev/xen/hypercall.
func OpenBuffers() (*BufferDevice, error) {
	fd, err := unix.Open("/dev/xen/hypercall", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("privcmd: open /dev/xen/hypercall: %w", err)
	}
	return &BufferDevice{fd: fd}, nil
}

// Alloc maps size bytes (a multiple of PageSize) of pinned memory.
func (b *BufferDevice) Alloc(size int) ([]byte, error) {
	return unix.Mmap(b.fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// Free unmaps memory from Alloc.
func (b *BufferDevice) Free(m []byte) error { return unix.Munmap(m) }

// Pinned reports true: these pages never move.
func (b *BufferDevice) Pinned() bool { return true }

// Close closes the device; mappings stay valid until freed.
func (b *BufferDevice) Close() error { return unix.Close(b.fd) }

// LockedMemory is the fallback for kernels without /dev/xen/hypercall:
// mlock()ed anonymous memory. Locked pages stay resident but may still be
// moved by compaction, so a hypercall can see EFAULT.
type LockedMemory struct{}

// Alloc maps and locks size bytes.
func (LockedMemory) Alloc(size int) ([]byte, error) {
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	if err := unix.Mlock(m); err != nil {
		unix.Munmap(m)
		return nil, fmt.Errorf("privcmd: mlock: %w", err)
	}
	return m, nil
}

// Free unlocks and unmaps memory from Alloc.
func (LockedMemory) Free(m []byte) error { return unix.Munmap(m) }

// Pinned reports false.
func (LockedMemory) Pinned() bool { return false }

// checkDomid refuses a domain id that does not fit Xen's 16-bit domid_t
// (the SDK passes domain ids as uint32 everywhere).
func checkDomid(dom uint32) error {
	if dom > 0xffff {
		return fmt.Errorf("privcmd: domain %d does not fit a 16-bit domid_t", dom)
	}
	return nil
}
