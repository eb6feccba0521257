//go:build linux

package evtchn

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Device is an open /dev/xen/evtchn. Its reads go through Go's poller, so
// Pending blocks only its goroutine and Close wakes it. Safe for concurrent
// use.
type Device struct {
	f  *os.File
	mu sync.Mutex // serialises Unmask's writes with their buffer
	wb []byte
}

// Open opens /dev/xen/evtchn.
func Open() (*Device, error) {
	fd, err := unix.Open("/dev/xen/evtchn", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("evtchn: open /dev/xen/evtchn: %w", err)
	}
	return &Device{f: os.NewFile(uintptr(fd), "/dev/xen/evtchn")}, nil
}

// Close closes the device: the kernel unbinds every port bound through it,
// and a Pending call waiting returns an error.
func (d *Device) Close() error { return d.f.Close() }

func (d *Device) ioctl(req uintptr, arg unsafe.Pointer) (uintptr, error) {
	var r uintptr
	var e unix.Errno
	rc, err := d.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	if err := rc.Control(func(fd uintptr) {
		r, _, e = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return 0, err
	}
	if e != 0 {
		return r, e
	}
	return r, nil
}

// BindInterdomain connects a new local port to remotePort of domain dom
// (which the other side left unbound for this domain). Xen marks the new
// port pending at once (a notification sent before the bind may have been
// lost), so its first event may come unasked.
func (d *Device) BindInterdomain(dom uint32, remotePort Port) (Port, error) {
	a := struct{ dom, port uint32 }{dom, uint32(remotePort)}
	r, err := d.ioctl(IoctlBindInterdomain, unsafe.Pointer(&a))
	if err != nil {
		return 0, fmt.Errorf("evtchn: bind to dom%d port %d: %w", dom, remotePort, err)
	}
	return Port(r), nil
}

// BindUnbound allocates a local port that domain dom may bind to.
func (d *Device) BindUnbound(dom uint32) (Port, error) {
	a := dom
	r, err := d.ioctl(IoctlBindUnboundPort, unsafe.Pointer(&a))
	if err != nil {
		return 0, fmt.Errorf("evtchn: unbound port for dom%d: %w", dom, err)
	}
	return Port(r), nil
}

// BindVirq binds virtual IRQ virq (VIRQ_*) of this domain.
func (d *Device) BindVirq(virq uint32) (Port, error) {
	a := virq
	r, err := d.ioctl(IoctlBindVirq, unsafe.Pointer(&a))
	if err != nil {
		return 0, fmt.Errorf("evtchn: bind virq %d: %w", virq, err)
	}
	return Port(r), nil
}

// Unbind closes a port bound through this device.
func (d *Device) Unbind(p Port) error {
	a := uint32(p)
	if _, err := d.ioctl(IoctlUnbind, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("evtchn: unbind port %d: %w", p, err)
	}
	return nil
}

// Notify signals the remote end of port p.
func (d *Device) Notify(p Port) error {
	a := uint32(p)
	if _, err := d.ioctl(IoctlNotify, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("evtchn: notify port %d: %w", p, err)
	}
	return nil
}

// Reset clears the pending ports queued for this device's reader.
func (d *Device) Reset() error {
	_, err := d.ioctl(IoctlReset, nil)
	return err
}

// RestrictDomid limits this file descriptor to interdomain binds with domain
// dom; it cannot be undone.
func (d *Device) RestrictDomid(dom uint32) error {
	if dom > 0xffff {
		return fmt.Errorf("evtchn: domain %d does not fit a 16-bit domid_t", dom)
	}
	d16 := uint16(dom)
	_, err := d.ioctl(IoctlRestrictDomid, unsafe.Pointer(&d16))
	return err
}

// ErrClosed reports a Pending call on a closed device.
var ErrClosed = errors.New("evtchn: device closed")

// Pending waits for ports to fire and appends them to dst (each fired port
// stays masked until Unmask). buf is scratch space for the read, at least
// PortSize bytes; its size bounds how many ports one call returns.
func (d *Device) Pending(dst []Port, buf []byte) ([]Port, error) {
	buf = buf[:len(buf)/PortSize*PortSize]
	if len(buf) == 0 {
		return dst, errors.New("evtchn: Pending needs a buffer of at least one port")
	}
	n, err := d.f.Read(buf)
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return dst, ErrClosed
		}
		return dst, fmt.Errorf("evtchn: read: %w", err)
	}
	return DecodePorts(buf[:n], dst)
}

// Unmask lets ports fire again.
func (d *Device) Unmask(ports ...Port) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wb = AppendPorts(d.wb[:0], ports...)
	if _, err := d.f.Write(d.wb); err != nil {
		return fmt.Errorf("evtchn: unmask %v: %w", ports, err)
	}
	return nil
}
