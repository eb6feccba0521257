package hypercall

import (
	"bytes"
	"fmt"
)

// Domain flags of xen_domctl_getdomaininfo (XEN_DOMINF_*).
const (
	DomainDying    = 1 << 0
	DomainHVM      = 1 << 1
	DomainShutdown = 1 << 2
	DomainPaused   = 1 << 3
	DomainBlocked  = 1 << 4
	DomainRunning  = 1 << 5
	DomainDebugged = 1 << 6
	DomainXenstore = 1 << 7
	DomainHAP      = 1 << 8
)

// DomainInfo is struct xen_domctl_getdomaininfo, decoded.
type DomainInfo struct {
	Domain          uint32
	Flags           uint32
	TotPages        uint64
	MaxPages        uint64
	Outstanding     uint64
	SharedPages     uint64
	PagedPages      uint64
	SharedInfoFrame uint64
	CPUTime         uint64 // nanoseconds
	OnlineVCPUs     uint32
	MaxVCPUID       uint32
	SSIDRef         uint32
	Handle          [16]byte // the domain's UUID
	CPUPool         uint32
	GPAddrBits      uint8
}

// ShutdownReason returns the SHUTDOWN_* code when DomainShutdown is set.
func (d *DomainInfo) ShutdownReason() uint32 { return d.Flags >> 16 & 0xff }

// State returns xl's six-letter state column: r b p s c d.
func (d *DomainInfo) State() string {
	s := []byte("------")
	for i, f := range []uint32{DomainRunning, DomainBlocked, DomainPaused, DomainShutdown, 0, DomainDying} {
		if f != 0 && d.Flags&f != 0 {
			s[i] = "rbpscd"[i]
		}
	}
	if d.Flags&DomainShutdown != 0 && d.ShutdownReason() == ShutdownCrash {
		s[3], s[4] = '-', 'c'
	}
	return string(s)
}

// Suspended reports whether the domain has shut down for suspend.
func (d *DomainInfo) Suspended() bool {
	return d.Flags&DomainShutdown != 0 && d.ShutdownReason() == ShutdownSuspend
}

// HVM reports whether the domain is an HVM or PVH container.
func (d *DomainInfo) HVM() bool { return d.Flags&DomainHVM != 0 }

// UUID formats the handle as xl does.
func (d *DomainInfo) UUID() string {
	h := d.Handle
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func decodeDomainInfo(b []byte) DomainInfo {
	var d DomainInfo
	d.Domain = uint32(le.Uint16(b[gdiDomain:]))
	d.Flags = le.Uint32(b[gdiFlags:])
	d.TotPages = le.Uint64(b[gdiTotPages:])
	d.MaxPages = le.Uint64(b[gdiMaxPages:])
	d.Outstanding = le.Uint64(b[gdiOutstanding:])
	d.SharedPages = le.Uint64(b[gdiShrPages:])
	d.PagedPages = le.Uint64(b[gdiPagedPages:])
	d.SharedInfoFrame = le.Uint64(b[gdiSharedInfoFrame:])
	d.CPUTime = le.Uint64(b[gdiCPUTime:])
	d.OnlineVCPUs = le.Uint32(b[gdiOnlineVCPUs:])
	d.MaxVCPUID = le.Uint32(b[gdiMaxVCPUID:])
	d.SSIDRef = le.Uint32(b[gdiSSIDRef:])
	copy(d.Handle[:], b[gdiHandle:gdiHandle+16])
	d.CPUPool = le.Uint32(b[gdiCPUPool:])
	d.GPAddrBits = b[gdiGPAddrBits]
	return d
}

// GetDomainInfo returns the information of one domain (XEN_DOMCTL_getdomaininfo).
// A hypervisor of another interface version fails with ErrInterfaceVersion.
func (x *Xen) GetDomainInfo(dom uint32) (DomainInfo, error) {
	var d DomainInfo
	err := x.domctl("getdomaininfo", domctlGetDomainInfo, dom, Safe, nil, func(u []byte) { d = decodeDomainInfo(u) })
	if err == nil && d.Domain != dom {
		// Xen 4.17 answers for exactly the domain asked.
		return d, &Error{Op: "getdomaininfo", Domain: dom, Err: fmt.Errorf("answer is for domain %d", d.Domain)}
	}
	return d, err
}

// GetDomainInfoList returns up to max domains from first on
// (XEN_SYSCTL_getdomaininfolist).
func (x *Xen) GetDomainInfoList(first uint32, max int) ([]DomainInfo, error) {
	buf, err := x.Pool.Get(max*gdiSize, Out)
	if err != nil {
		return nil, err
	}
	defer buf.Free()
	var n uint32
	err = x.sysctl("getdomaininfolist", sysctlGetDomainInfoList, Safe, func(u []byte) {
		le.PutUint16(u[gdilFirstDomain:], uint16(first))
		le.PutUint32(u[gdilMaxDomains:], uint32(max))
		le.PutUint64(u[gdilBuffer:], buf.Addr())
	}, func(u []byte) { n = le.Uint32(u[gdilNumDomains:]) })
	if err != nil {
		return nil, err
	}
	if int(n) > max {
		return nil, &Error{Op: "getdomaininfolist", Err: fmt.Errorf("%d domains returned for %d slots", n, max)}
	}
	out := make([]DomainInfo, n)
	for i := range out {
		out[i] = decodeDomainInfo(buf.Bytes()[i*gdiSize:])
	}
	return out, nil
}

// PauseDomain pauses a domain (XEN_DOMCTL_pausedomain).
func (x *Xen) PauseDomain(dom uint32) error {
	return x.domctl("pausedomain", domctlPauseDomain, dom, Unsafe, nil, nil)
}

// UnpauseDomain unpauses a domain (XEN_DOMCTL_unpausedomain).
func (x *Xen) UnpauseDomain(dom uint32) error {
	return x.domctl("unpausedomain", domctlUnpauseDomain, dom, Unsafe, nil, nil)
}

// Version returns the hypervisor's major and minor version (XENVER_version).
func (x *Xen) Version() (major, minor uint32, err error) {
	v, err := x.Call(OpXenVersion, [5]uint64{0, 0}, Safe)
	if err != nil {
		return 0, 0, &Error{Op: "xen_version", Err: err}
	}
	return uint32(v >> 16), uint32(v & 0xffff), nil
}

func (x *Xen) versionString(name string, cmd uint64, size int) (string, error) {
	b, err := x.Pool.Get(size, Out)
	if err != nil {
		return "", err
	}
	defer b.Free()
	if _, err := x.Call(OpXenVersion, [5]uint64{cmd, b.Addr()}, Safe); err != nil {
		return "", &Error{Op: name, Err: err}
	}
	s := b.Bytes()
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s), nil
}

// ExtraVersion returns the version suffix, e.g. ".7" (XENVER_extraversion).
func (x *Xen) ExtraVersion() (string, error) { return x.versionString("extraversion", 1, 16) }

// Capabilities returns the capability string, e.g. "xen-3.0-x86_64
// hvm-3.0-x86_32 ..." (XENVER_capabilities).
func (x *Xen) Capabilities() (string, error) { return x.versionString("capabilities", 3, 1024) }

// MaximumGPFN returns the highest guest frame number of a domain
// (XENMEM_maximum_gpfn).
func (x *Xen) MaximumGPFN(dom uint32) (uint64, error) {
	b, err := x.Pool.Get(8, In)
	if err != nil {
		return 0, err
	}
	defer b.Free()
	le.PutUint16(b.Bytes(), uint16(dom))
	r, err := x.Call(OpMemory, [5]uint64{xenmemMaximumGPFN, b.Addr()}, Safe)
	if err != nil {
		return 0, &Error{Op: "maximum_gpfn", Domain: dom, Err: err}
	}
	return r, nil
}

// DestroyDomain destroys a domain (XEN_DOMCTL_destroydomain). Xen answers
// EAGAIN while it is still releasing the domain's memory; the caller
// retries.
func (x *Xen) DestroyDomain(dom uint32) error {
	return x.domctl("destroydomain", domctlDestroyDomain, dom, Unsafe, nil, nil)
}

// ResumeDomain resumes a domain that suspended itself
// (XEN_DOMCTL_resumedomain), after a save that failed or a checkpoint.
func (x *Xen) ResumeDomain(dom uint32) error {
	return x.domctl("resumedomain", domctlResumeDomain, dom, Unsafe, nil, nil)
}

// GetVCPUContext returns the vcpu_guest_context_t of one vCPU
// (XEN_DOMCTL_getvcpucontext): VCPUContextSize bytes on x86-64.
func (x *Xen) GetVCPUContext(dom, vcpu uint32) ([]byte, error) {
	buf, err := x.Pool.Get(VCPUContextSize, Out)
	if err != nil {
		return nil, err
	}
	defer buf.Free()
	err = x.domctl("getvcpucontext", domctlGetVCPUContext, dom, Safe, func(u []byte) {
		le.PutUint32(u[vcpuctxVCPU:], vcpu)
		le.PutUint64(u[vcpuctxCtxt:], buf.Addr())
	}, nil)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// SetVCPUContext loads a vcpu_guest_context_t into one vCPU
// (XEN_DOMCTL_setvcpucontext).
func (x *Xen) SetVCPUContext(dom, vcpu uint32, ctx []byte) error {
	if len(ctx) != VCPUContextSize {
		return &Error{Op: "setvcpucontext", Domain: dom, Err: fmt.Errorf("context of %d bytes, want %d", len(ctx), VCPUContextSize)}
	}
	buf, err := x.Pool.Get(VCPUContextSize, In)
	if err != nil {
		return err
	}
	defer buf.Free()
	copy(buf.Bytes(), ctx)
	return x.domctl("setvcpucontext", domctlSetVCPUContext, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[vcpuctxVCPU:], vcpu)
		le.PutUint64(u[vcpuctxCtxt:], buf.Addr())
	}, nil)
}
