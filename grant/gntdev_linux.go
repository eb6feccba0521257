//go:build linux

package grant

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

const pageSize = 4096

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// A Device is an open /dev/xen/gntdev: it maps other domains' grants. It is
// a Mapper for a Tracker.
type Device struct{ fd int }

// OpenDevice opens /dev/xen/gntdev.
func OpenDevice() (*Device, error) {
	fd, err := unix.Open("/dev/xen/gntdev", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("grant: open /dev/xen/gntdev: %w", err)
	}
	return &Device{fd}, nil
}

// Close closes the device.
func (d *Device) Close() error { return unix.Close(d.fd) }

// Map maps the grants (MAP_GRANT_REF, then mmap of the range).
func (d *Device) Map(grants []Grant, writable bool) (Mapping, error) {
	// struct ioctl_gntdev_map_grant_ref with count refs.
	buf := make([]uint32, 4+2*len(grants))
	buf[0] = uint32(len(grants))
	for i, g := range grants {
		buf[4+2*i], buf[5+2*i] = g.Domid, uint32(g.Ref)
	}
	// The ioctl number carries the size of a one-ref struct; the kernel reads count refs.
	if err := ioctl(d.fd, IoctlGntdevMapGrantRef, unsafe.Pointer(&buf[0])); err != nil {
		return Mapping{}, fmt.Errorf("grant: MAP_GRANT_REF of %d grants: %w", len(grants), err)
	}
	index := uint64(buf[2]) | uint64(buf[3])<<32
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	mem, err := unix.Mmap(d.fd, int64(index), len(grants)*pageSize, prot, unix.MAP_SHARED)
	if err != nil {
		d.unmapIndex(index, len(grants))
		return Mapping{}, fmt.Errorf("grant: mmap of %d grants: %w", len(grants), err)
	}
	return Mapping{Handle: index, Mem: mem}, nil
}

func (d *Device) unmapIndex(index uint64, count int) error {
	u := struct {
		index uint64
		count uint32
		_     uint32
	}{index, uint32(count), 0}
	return ioctl(d.fd, IoctlGntdevUnmapGrantRef, unsafe.Pointer(&u))
}

// Unmap unmaps the memory and releases the grants (UNMAP_GRANT_REF).
func (d *Device) Unmap(m Mapping) error {
	if err := unix.Munmap(m.Mem); err != nil {
		return err
	}
	return d.unmapIndex(m.Handle, len(m.Mem)/pageSize)
}

// SetUnmapNotify asks the kernel to clear the byte at offset off of the
// mapping and/or signal event channel port when it is unmapped (also when
// the process dies).
func (d *Device) SetUnmapNotify(m Mapping, off uint64, action uint32, port uint32) error {
	n := struct {
		index  uint64
		action uint32
		port   uint32
	}{m.Handle + off, action, port}
	return ioctl(d.fd, IoctlGntdevSetUnmapNotify, unsafe.Pointer(&n))
}

// A CopySegment is one ioctl_gntdev_grant_copy_segment: either side is a
// local buffer (Local) or a foreign grant.
type CopySegment struct {
	SrcLocal  []byte // nil: source is SrcGrant at SrcOffset
	SrcGrant  Grant
	SrcOffset uint16
	DstLocal  []byte
	DstGrant  Grant
	DstOffset uint16
	Len       uint16
	Status    int16 // GNTST_* after the copy (0 = okay)
}

// Copy runs grant copies (GRANT_COPY); per-segment status lands in Status.
func (d *Device) Copy(segs []CopySegment) error {
	type kseg struct {
		src, dst uint64
		len      uint16
		flags    uint16
		status   int16
		_        int16
	}
	const gntcopySourceGref, gntcopyDestGref = 1 << 0, 1 << 1
	ks := make([]kseg, len(segs))
	enc := func(local []byte, g Grant, off uint16) (uint64, bool) {
		if local != nil {
			return uint64(uintptr(unsafe.Pointer(&local[0]))), false
		}
		return uint64(g.Ref) | uint64(off)<<32 | uint64(g.Domid&0xffff)<<48, true
	}
	for i, s := range segs {
		var fg bool
		ks[i].src, fg = enc(s.SrcLocal, s.SrcGrant, s.SrcOffset)
		if fg {
			ks[i].flags |= gntcopySourceGref
		}
		ks[i].dst, fg = enc(s.DstLocal, s.DstGrant, s.DstOffset)
		if fg {
			ks[i].flags |= gntcopyDestGref
		}
		ks[i].len = s.Len
	}
	c := struct {
		count uint32
		_     uint32
		segs  uint64
	}{uint32(len(segs)), 0, uint64(uintptr(unsafe.Pointer(&ks[0])))}
	err := ioctl(d.fd, IoctlGntdevGrantCopy, unsafe.Pointer(&c))
	for i := range segs {
		segs[i].Status = ks[i].status
	}
	return err
}

// An Alloc is an open /dev/xen/gntalloc: it grants this domain's pages to
// another domain.
type Alloc struct{ fd int }

// OpenAlloc opens /dev/xen/gntalloc.
func OpenAlloc() (*Alloc, error) {
	fd, err := unix.Open("/dev/xen/gntalloc", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("grant: open /dev/xen/gntalloc: %w", err)
	}
	return &Alloc{fd}, nil
}

// Close closes the device.
func (a *Alloc) Close() error { return unix.Close(a.fd) }

// A Share is pages granted to another domain: the grant references, the
// local memory and the gntalloc index.
type Share struct {
	Refs  []Ref
	Mem   []byte
	Index uint64
}

// Share allocates count pages granted to domain dom (ALLOC_GREF + mmap).
func (a *Alloc) Share(dom uint32, count int, writable bool) (*Share, error) {
	if dom > 0xffff {
		return nil, fmt.Errorf("grant: domain %d does not fit a 16-bit domid_t", dom)
	}
	buf := make([]uint32, 4+count+count%2)
	buf[0] = uint32(dom)
	if writable {
		buf[0] |= 1 << 16 // GNTALLOC_FLAG_WRITABLE
	}
	buf[1] = uint32(count)
	if err := ioctl(a.fd, IoctlGntallocAllocGref, unsafe.Pointer(&buf[0])); err != nil {
		return nil, fmt.Errorf("grant: ALLOC_GREF of %d pages for dom%d: %w", count, dom, err)
	}
	s := &Share{Index: uint64(buf[2]) | uint64(buf[3])<<32}
	for i := 0; i < count; i++ {
		s.Refs = append(s.Refs, Ref(buf[4+i]))
	}
	mem, err := unix.Mmap(a.fd, int64(s.Index), count*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		a.dealloc(s.Index, count)
		return nil, fmt.Errorf("grant: mmap of shared pages: %w", err)
	}
	s.Mem = mem
	return s, nil
}

func (a *Alloc) dealloc(index uint64, count int) error {
	d := struct {
		index uint64
		count uint32
		_     uint32
	}{index, uint32(count), 0}
	return ioctl(a.fd, IoctlGntallocDeallocGref, unsafe.Pointer(&d))
}

// Unshare unmaps and deallocates a Share (the grants end once the other
// side unmaps them).
func (a *Alloc) Unshare(s *Share) error {
	if err := unix.Munmap(s.Mem); err != nil {
		return err
	}
	return a.dealloc(s.Index, len(s.Refs))
}
