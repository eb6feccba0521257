//go:build linux

package main

// A minimal privcmd layer: the hypercall ioctl with buffers from
// /dev/xen/hypercall, and MMAPBATCH_V2 foreign mapping. It stands in for
// the project's privcmd/hypercall packages, which were not yet available
// when this program was written; see the report.

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	ioctlPrivcmdHypercall   = 0x00305000 // _IOC(_IOC_NONE, 'P', 0, 48)
	ioctlPrivcmdMmapBatchV2 = 0x00205004 // _IOC(_IOC_NONE, 'P', 4, 32)

	hypercallMemoryOp  = 12
	hypercallXenVer    = 17
	hypercallHVMOp     = 34
	hypercallDomctl    = 36
	domctlInterfaceVer = 0x15 // Xen 4.17
)

// privcmd is an open /dev/xen/privcmd with a hypercall-safe buffer arena.
type privcmd struct {
	fd    int
	hfd   int // /dev/xen/hypercall, or -1 (then buffers are mlock()ed)
	small []byte
}

func openPrivcmd() (*privcmd, error) {
	fd, err := unix.Open("/dev/xen/privcmd", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/xen/privcmd: %w", err)
	}
	p := &privcmd{fd: fd, hfd: -1}
	if h, err := unix.Open("/dev/xen/hypercall", unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
		p.hfd = h
	}
	if p.small, err = p.alloc(PageSize); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close releases the devices.
func (p *privcmd) Close() error {
	if p.hfd >= 0 {
		unix.Close(p.hfd)
	}
	return unix.Close(p.fd)
}

// alloc returns n bytes (rounded up to pages) of memory the hypervisor may
// access: pages of /dev/xen/hypercall, whose pages the kernel never moves,
// or mlock()ed anonymous memory on old kernels.
func (p *privcmd) alloc(n int) ([]byte, error) {
	n = (n + PageSize - 1) &^ (PageSize - 1)
	if p.hfd >= 0 {
		b, err := unix.Mmap(p.hfd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("mmap /dev/xen/hypercall (%d bytes): %w", n, err)
		}
		return b, nil
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	if err := unix.Mlock(b); err != nil {
		unix.Munmap(b)
		return nil, fmt.Errorf("mlock hypercall buffer: %w", err)
	}
	return b, nil
}

func (p *privcmd) free(b []byte) { unix.Munmap(b) }

func addr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

// hypercall issues one hypercall; a negative Xen return becomes an Errno.
func (p *privcmd) hypercall(op uint64, args ...uint64) (uint64, error) {
	var hc struct {
		op   uint64
		args [5]uint64
	}
	hc.op = op
	copy(hc.args[:], args)
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(p.fd), ioctlPrivcmdHypercall, uintptr(unsafe.Pointer(&hc)))
	if e != 0 {
		return 0, e
	}
	return uint64(r), nil
}

// DomctlError is a failed domctl: which command, which domain, errno.
type DomctlError struct {
	Cmd    uint32
	Domain uint32
	Err    error
}

func (e *DomctlError) Error() string {
	return fmt.Sprintf("domctl %d (domain %d): %v", e.Cmd, e.Domain, e.Err)
}

// Unwrap returns the errno.
func (e *DomctlError) Unwrap() error { return e.Err }

// domctl runs XEN_DOMCTL cmd on dom. fill writes the 128-byte union before
// the call; the union after the call is returned (valid until the next call).
func (p *privcmd) domctl(cmd uint32, dom uint32, fill func(u []byte)) ([]byte, error) {
	b := p.small[:144]
	clear(b)
	le.PutUint32(b[0:], cmd)
	le.PutUint32(b[4:], domctlInterfaceVer)
	le.PutUint16(b[8:], uint16(dom))
	if fill != nil {
		fill(b[16:144])
	}
	if _, err := p.hypercall(hypercallDomctl, addr(b)); err != nil {
		return nil, &DomctlError{Cmd: cmd, Domain: dom, Err: err}
	}
	return b[16:144], nil
}

// xenVersion returns the hypervisor's major and minor version.
func (p *privcmd) xenVersion() (uint32, uint32, error) {
	v, err := p.hypercall(hypercallXenVer, 0, 0)
	if err != nil {
		return 0, 0, err
	}
	return uint32(v >> 16), uint32(v & 0xffff), nil
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
func (m *foreignMap) Unmap() error { return unix.Munmap(m.mem) }

// mapForeign maps the frames pfns of domain dom read-only.
func (p *privcmd) mapForeign(dom uint32, pfns []uint64, errs []int32) (*foreignMap, error) {
	if len(pfns) == 0 {
		return nil, errors.New("mapForeign: no frames")
	}
	mem, err := unix.Mmap(p.fd, 0, len(pfns)*PageSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap privcmd (%d pages): %w", len(pfns), err)
	}
	errs = errs[:len(pfns)]
	clear(errs)
	var mb struct {
		num  uint32
		dom  uint16
		_    uint16
		addr uint64
		arr  uint64
		err  uint64
	}
	mb.num, mb.dom = uint32(len(pfns)), uint16(dom)
	mb.addr = addr(mem)
	mb.arr = uint64(uintptr(unsafe.Pointer(&pfns[0])))
	mb.err = uint64(uintptr(unsafe.Pointer(&errs[0])))
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(p.fd), ioctlPrivcmdMmapBatchV2, uintptr(unsafe.Pointer(&mb)))
	if e != 0 && e != unix.ENOENT { // ENOENT: some frames failed, see errs
		unix.Munmap(mem)
		return nil, fmt.Errorf("IOCTL_PRIVCMD_MMAPBATCH_V2 (%d frames of domain %d): %w", len(pfns), dom, e)
	}
	return &foreignMap{mem: mem, errs: errs}, nil
}
