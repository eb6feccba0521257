package hypercall

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// A Release is one Xen release and the domctl and sysctl interface versions
// it speaks (XEN_DOMCTL_INTERFACE_VERSION in public/domctl.h,
// XEN_SYSCTL_INTERFACE_VERSION in public/sysctl.h, at its RELEASE-x.y.0 tag).
type Release struct {
	Major, Minor   uint32
	Domctl, Sysctl uint32
}

// String returns "4.20".
func (r Release) String() string { return fmt.Sprintf("%d.%d", r.Major, r.Minor) }

// Releases are the Xen releases whose interfaces this package encodes,
// oldest first. Xen 4.17 (Debian 12) and 4.20 (Debian 13) are tested in the
// lab and their layouts checked against their C headers; the others are
// supported from these tables alone. Domctl 0x16 (4.18) changed what
// getdomaininfo answers for an absent domain (ESRCH, not the next domain);
// 0x17 (4.19) added altp2m_opts to createdomain; 0x18 (4.22) changed only
// Arm. Sysctl 0x16 (4.21) changed no structure this package encodes.
var Releases = []Release{
	{4, 17, 0x15, 0x15},
	{4, 18, 0x16, 0x15},
	{4, 19, 0x17, 0x15},
	{4, 20, 0x17, 0x15},
	{4, 21, 0x17, 0x16},
	{4, 22, 0x18, 0x16},
}

// FindRelease returns the table entry of Xen major.minor.
func FindRelease(major, minor uint32) (Release, bool) {
	for _, r := range Releases {
		if r.Major == major && r.Minor == minor {
			return r, true
		}
	}
	return Release{}, false
}

// An Interface is what the running hypervisor speaks: its version and the
// domctl and sysctl interface versions it accepted when probed.
type Interface struct {
	Major, Minor   uint32
	Domctl, Sysctl uint32
}

// String returns e.g. "Xen 4.20 (domctl 0x17, sysctl 0x15)".
// Altp2mAtCreate reports whether this interface gives the altp2m mode to
// createdomain (altp2m_opts, Xen 4.19 on): there HVM_PARAM_ALTP2M can no
// longer be set afterwards (Xen answers EEXIST), as libxl 4.19 on knows.
func (i Interface) Altp2mAtCreate() bool {
	l := domctlLayouts[i.Domctl]
	return l != nil && l.createDomain.altp2mOpts >= 0
}

func (i Interface) String() string {
	return fmt.Sprintf("Xen %d.%d (domctl %#x, sysctl %#x)", i.Major, i.Minor, i.Domctl, i.Sysctl)
}

// defaultInterface is what a Xen made by New speaks until Probe or
// SetInterface: Xen 4.17's interface.
var defaultInterface = Interface{Major: 4, Minor: 17, Domctl: 0x15, Sysctl: 0x15}

// createDomainLayout is struct xen_domctl_createdomain (x86) under one
// domctl interface version, as byte offsets; altp2mOpts is -1 where the
// field does not exist. Arch is struct xen_arch_domainconfig, whose own
// layout (emulation_flags, misc_flags) is the same in every release.
type createDomainLayout struct {
	size, ssidref, handle, flags, iommuOpts, maxVCPUs, maxEvtchnPort      int
	maxGrantFrames, maxMaptrackFrames, grantOpts, altp2mOpts, vmtraceSize int
	cpupoolID, arch                                                       int
}

// domctlLayout holds what differs between domctl interface versions. Every
// other structure this package encodes (xen_domctl itself, getdomaininfo,
// shadow_op, vcpucontext, hvmcontext, getpageframeinfo3, tsc_info,
// cpu_policy, max_vcpus, max_mem, paging_mempool, and sysctl's
// getdomaininfolist) has one layout from 4.17 to 4.22, checked against the
// C headers of 4.17 and 4.20 by the tests.
type domctlLayout struct {
	createDomain createDomainLayout
	// absentESRCH: getdomaininfo of an absent domain fails with ESRCH;
	// before 0x16 Xen answered with the next domain that exists.
	absentESRCH bool
}

var (
	createDomain15 = createDomainLayout{size: 64, ssidref: 0, handle: 4, flags: 20, iommuOpts: 24, maxVCPUs: 28,
		maxEvtchnPort: 32, maxGrantFrames: 36, maxMaptrackFrames: 40, grantOpts: 44, altp2mOpts: -1,
		vmtraceSize: 48, cpupoolID: 52, arch: 56}
	createDomain17 = createDomainLayout{size: 68, ssidref: 0, handle: 4, flags: 20, iommuOpts: 24, maxVCPUs: 28,
		maxEvtchnPort: 32, maxGrantFrames: 36, maxMaptrackFrames: 40, grantOpts: 44, altp2mOpts: 48,
		vmtraceSize: 52, cpupoolID: 56, arch: 60}
)

// domctlLayouts maps each known domctl interface version to its layouts.
var domctlLayouts = map[uint32]*domctlLayout{
	0x15: {createDomain: createDomain15},
	0x16: {createDomain: createDomain15, absentESRCH: true},
	0x17: {createDomain: createDomain17, absentESRCH: true},
	0x18: {createDomain: createDomain17, absentESRCH: true},
}

// sysctlVersions are the known sysctl interface versions; the structures
// this package encodes are the same under each.
var sysctlVersions = []uint32{0x15, 0x16}

// Interface returns the interface x speaks: what Probe found, what
// SetInterface set, or Xen 4.17's for a Xen made by New.
func (x *Xen) Interface() Interface {
	if x.iface.Domctl == 0 {
		return defaultInterface
	}
	return x.iface
}

// SetInterface makes x speak i without probing (tests, or a caller that
// knows its hypervisor). Versions missing from the tables are an
// *InterfaceError.
func (x *Xen) SetInterface(i Interface) error {
	if domctlLayouts[i.Domctl] == nil || !knownSysctl(i.Sysctl) {
		return &InterfaceError{Major: i.Major, Minor: i.Minor, Domctl: i.Domctl, Sysctl: i.Sysctl}
	}
	x.iface = i
	return nil
}

func knownSysctl(v uint32) bool {
	for _, s := range sysctlVersions {
		if s == v {
			return true
		}
	}
	return false
}

// layout returns the domctl layouts of the interface x speaks.
func (x *Xen) layout() *domctlLayout { return domctlLayouts[x.Interface().Domctl] }

// An InterfaceError says that the running hypervisor speaks a domctl or
// sysctl interface this package has no layouts for: it names the Xen
// version found and what was tried. It matches ErrInterfaceVersion.
type InterfaceError struct {
	Major, Minor   uint32
	Domctl, Sysctl uint32   // the version asked for (SetInterface), or 0
	Tried          []uint32 // the versions Probe offered, all refused
	Which          string   // "domctl" or "sysctl" (Probe)
}

// Error names the hypervisor's version and the interface versions tried.
func (e *InterfaceError) Error() string {
	if len(e.Tried) == 0 {
		return fmt.Sprintf("hypercall: no layouts for domctl %#x / sysctl %#x (Xen %d.%d); known releases: %s",
			e.Domctl, e.Sysctl, e.Major, e.Minor, knownReleases())
	}
	tried := make([]string, len(e.Tried))
	for i, v := range e.Tried {
		tried[i] = fmt.Sprintf("%#x", v)
	}
	return fmt.Sprintf("hypercall: Xen %d.%d refused every %s interface version this package knows (%s); known releases: %s",
		e.Major, e.Minor, e.Which, strings.Join(tried, ", "), knownReleases())
}

// Is makes errors.Is(err, ErrInterfaceVersion) true.
func (e *InterfaceError) Is(target error) bool { return target == ErrInterfaceVersion }

func knownReleases() string {
	s := make([]string, len(Releases))
	for i, r := range Releases {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// Probe learns the running hypervisor's version (XENVER_version) and the
// domctl and sysctl interface versions it accepts, and makes x speak them.
// Xen answers EACCES to a domctl or sysctl of another version, so Probe
// offers each known version in a harmless query, the one its release table
// names first: getdomaininfo of dom0 for domctl, getdomaininfolist of one
// domain for sysctl. A hypervisor that refuses them all is an
// *InterfaceError naming its version. Open calls Probe; call it before
// sharing x between goroutines.
func (x *Xen) Probe() (Interface, error) {
	major, minor, err := x.Version()
	if err != nil {
		return Interface{}, err
	}
	found := Interface{Major: major, Minor: minor}
	rel, known := FindRelease(major, minor)
	order := func(first uint32, all []uint32) []uint32 {
		out := []uint32{}
		if known {
			out = append(out, first)
		}
		for i := len(all) - 1; i >= 0; i-- { // newest first
			if !known || all[i] != first {
				out = append(out, all[i])
			}
		}
		return out
	}
	var domctls []uint32
	for _, r := range Releases {
		if len(domctls) == 0 || domctls[len(domctls)-1] != r.Domctl {
			domctls = append(domctls, r.Domctl)
		}
	}
	saved := x.iface
	defer func() { x.iface = saved }()
	for _, v := range order(rel.Domctl, domctls) {
		x.iface = Interface{Major: major, Minor: minor, Domctl: v, Sysctl: defaultInterface.Sysctl}
		_, err := x.GetDomainInfo(0)
		if err == nil {
			found.Domctl = v
			break
		}
		if !errors.Is(err, syscall.EACCES) {
			return Interface{}, err
		}
	}
	if found.Domctl == 0 {
		return Interface{}, &InterfaceError{Major: major, Minor: minor, Tried: order(rel.Domctl, domctls), Which: "domctl"}
	}
	for _, v := range order(rel.Sysctl, sysctlVersions) {
		x.iface = Interface{Major: major, Minor: minor, Domctl: found.Domctl, Sysctl: v}
		_, err := x.GetDomainInfoList(0, 1)
		if err == nil {
			found.Sysctl = v
			break
		}
		if !errors.Is(err, syscall.EACCES) {
			return Interface{}, err
		}
	}
	if found.Sysctl == 0 {
		return Interface{}, &InterfaceError{Major: major, Minor: minor, Tried: order(rel.Sysctl, sysctlVersions), Which: "sysctl"}
	}
	saved = found
	return found, nil
}
