// Package evtchn is the thin Linux layer over the Xen event-channel driver,
// /dev/xen/evtchn: bind a port to another domain's port or leave one unbound
// for it, notify, read the ports that fired and unmask them. One method per
// ioctl, no policy; the ioctl numbers and structure sizes are portable and
// tested against the C headers on every OS, the device code builds on Linux
// only.
//
// The driver masks a port when it delivers it to a reader: the port fires
// again only after Unmask. A backend therefore reads the pending ports,
// handles them, then unmasks them.
package evtchn

import (
	"encoding/binary"
	"fmt"
)

// A Port is a local event-channel port.
type Port uint32

// Structure sizes of include/uapi/xen/evtchn.h: each is one or two
// unsigned ints, except restrict_domid (a domid_t).
const (
	sizeBindVirq        = 4 // struct ioctl_evtchn_bind_virq { unsigned int virq; }
	sizeBindInterdomain = 8 // struct ioctl_evtchn_bind_interdomain { unsigned int remote_domain, remote_port; }
	sizeBindUnbound     = 4 // struct ioctl_evtchn_bind_unbound_port { unsigned int remote_domain; }
	sizeUnbind          = 4 // struct ioctl_evtchn_unbind { unsigned int port; }
	sizeNotify          = 4 // struct ioctl_evtchn_notify { unsigned int port; }
	sizeRestrictDomid   = 2 // struct ioctl_evtchn_restrict_domid { domid_t domid; }
)

// The evtchn ioctls: Linux _IOC(_IOC_NONE, 'E', nr, size), that is
// size<<16 | 'E'<<8 | nr (asm-generic/ioctl.h; the direction bits are
// zero). The bind ioctls return the new local port as the ioctl's return
// value.
const (
	IoctlBindVirq        = sizeBindVirq<<16 | 'E'<<8 | 0
	IoctlBindInterdomain = sizeBindInterdomain<<16 | 'E'<<8 | 1
	IoctlBindUnboundPort = sizeBindUnbound<<16 | 'E'<<8 | 2
	IoctlUnbind          = sizeUnbind<<16 | 'E'<<8 | 3
	IoctlNotify          = sizeNotify<<16 | 'E'<<8 | 4
	IoctlReset           = 0<<16 | 'E'<<8 | 5
	IoctlRestrictDomid   = sizeRestrictDomid<<16 | 'E'<<8 | 6
)

// PortSize is the size of one port in what the device reads and writes: a
// read returns the fired ports, a write unmasks the ports written, each a
// native-endian (little-endian on x86) 32-bit integer.
const PortSize = 4

// DecodePorts decodes the ports a read of the device returned; a length
// that is not a multiple of PortSize is an error (the driver never returns
// one).
func DecodePorts(b []byte, dst []Port) ([]Port, error) {
	if len(b)%PortSize != 0 {
		return dst, fmt.Errorf("evtchn: read of %d bytes is not a whole number of %d-byte ports", len(b), PortSize)
	}
	for i := 0; i < len(b); i += PortSize {
		dst = append(dst, Port(binary.LittleEndian.Uint32(b[i:])))
	}
	return dst, nil
}

// AppendPorts appends the encoding of ports, as Unmask writes them.
func AppendPorts(b []byte, ports ...Port) []byte {
	for _, p := range ports {
		b = binary.LittleEndian.AppendUint32(b, uint32(p))
	}
	return b
}
