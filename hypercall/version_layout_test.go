package hypercall

import (
	"os"
	"strings"
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// EnvHeaders names more Xen header sets for the layout tests, as
// space-separated RELEASE=DIR pairs, DIR holding xen/domctl.h and friends
// (e.g. "4.20=/tmp/trixie/usr/include": Debian 13's libxen-dev unpacked
// there, which scripts/test.sh does). The host's /usr/include is Debian 12's
// libxen-dev, Xen 4.17.
const envHeaders = "XENSR_XEN_HEADERS"

// headerSets returns the header sets to check: the host's (4.17) and those
// of EnvHeaders.
func headerSets(t *testing.T) map[string]string {
	sets := map[string]string{"4.17": ""}
	for _, kv := range strings.Fields(os.Getenv(envHeaders)) {
		rel, dir, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%s: %q is not RELEASE=DIR", envHeaders, kv)
		}
		if _, err := os.Stat(dir + "/xen/domctl.h"); err != nil {
			t.Fatalf("%s: %v", envHeaders, err)
		}
		sets[rel] = dir
	}
	if len(sets) == 1 {
		t.Logf("only the host's Xen 4.17 headers: set %s=4.20=DIR for Debian 13's (scripts/test.sh does)", envHeaders)
	}
	return sets
}

// useHeaders points gcc at dir before /usr/include (CPATH), for the rest of
// the test.
func useHeaders(t *testing.T, dir string) {
	if dir != "" {
		t.Setenv("CPATH", dir)
	}
}

// versionFacts are the facts of one release that differ between releases:
// its interface versions and the layout of struct xen_domctl_createdomain.
func versionFacts(rel Release) map[string]uint64 {
	l := domctlLayouts[rel.Domctl].createDomain
	f := map[string]uint64{
		"XEN_DOMCTL_INTERFACE_VERSION":           uint64(rel.Domctl),
		"XEN_SYSCTL_INTERFACE_VERSION":           uint64(rel.Sysctl),
		"sizeof(struct xen_domctl_createdomain)": uint64(l.size),
	}
	for field, off := range map[string]int{"ssidref": l.ssidref, "handle": l.handle, "flags": l.flags,
		"iommu_opts": l.iommuOpts, "max_vcpus": l.maxVCPUs, "max_evtchn_port": l.maxEvtchnPort,
		"max_grant_frames": l.maxGrantFrames, "max_maptrack_frames": l.maxMaptrackFrames, "grant_opts": l.grantOpts,
		"vmtrace_size": l.vmtraceSize, "cpupool_id": l.cpupoolID, "arch": l.arch,
		"arch.emulation_flags": l.arch + archEmulationFlags, "arch.misc_flags": l.arch + archMiscFlags} {
		f["offsetof(struct xen_domctl_createdomain, "+field+")"] = uint64(off)
	}
	switch {
	case rel.Domctl == 0x17:
		f["offsetof(struct xen_domctl_createdomain, altp2m_opts)"] = uint64(l.altp2mOpts)
	case rel.Domctl >= 0x18: // 4.22 made it a struct of opts and nr
		f["offsetof(struct xen_domctl_createdomain, altp2m)"] = uint64(l.altp2mOpts)
	}
	return f
}

// TestVersionLayoutsAgainstC checks, for every header set (the host's 4.17
// and Debian 13's 4.20 when given), that the release table names the
// headers' interface versions and that the createdomain layout of that
// version is the C one; for sets other than the host's it also runs the
// whole TestLayoutsAgainstC against them, so every version-independent fact
// is checked on 4.20 too.
func TestVersionLayoutsAgainstC(t *testing.T) {
	for name, dir := range headerSets(t) {
		t.Run(name, func(t *testing.T) {
			var rel Release
			for _, r := range Releases {
				if r.String() == name {
					rel = r
				}
			}
			if rel.Domctl == 0 {
				t.Fatalf("headers of %s: no such release in the table", name)
			}
			useHeaders(t, dir)
			cheader.Compare(t, versionFacts(rel))
			if dir != "" {
				TestLayoutsAgainstC(t)
			}
		})
	}
}

// TestCreateDomainEncodingPerVersion encodes one CreateDomain under every
// release's interface and reads each field back at the offsets the C
// headers give (4.17: vmtrace_size at 48; 4.19 on: altp2m_opts at 48 and
// vmtrace_size at 52), with the interface version in the domctl header.
func TestCreateDomainEncodingPerVersion(t *testing.T) {
	c := CreateDomain{SSIDRef: 1, Flags: CreateHVM | CreateHAP, MaxVCPUs: 2, MaxEvtchnPort: 1023,
		MaxGrantFrames: 64, MaxMaptrackFrames: -1, GrantOpts: 2, VMTraceSize: 0x1000, CPUPoolID: 7,
		EmulationFlags: EmuLAPIC, MiscFlags: MiscMSRRelaxed}
	c.Handle[0], c.Handle[15] = 0xaa, 0xbb
	offsets := map[uint32][3]int{ // vmtrace_size, cpupool_id, arch
		0x15: {48, 52, 56}, 0x16: {48, 52, 56}, 0x17: {52, 56, 60}, 0x18: {52, 56, 60},
	}
	for _, rel := range Releases {
		t.Run(rel.String(), func(t *testing.T) {
			a := &fakeAlloc{pinned: true}
			var seen []byte
			f := callerFunc(func(op uint64, args [5]uint64) (uint64, error) {
				m := a.mem(args[0], domctlSize)
				seen = append([]byte(nil), m...)
				le.PutUint16(m[8:], 9)
				return 0, nil
			})
			x := New(f, NewPool(a))
			defer x.Close()
			if err := x.SetInterface(Interface{rel.Major, rel.Minor, rel.Domctl, rel.Sysctl}); err != nil {
				t.Fatal(err)
			}
			if id, err := x.CreateDomainOp(0, c); err != nil || id != 9 {
				t.Fatalf("CreateDomainOp = %d, %v", id, err)
			}
			if le.Uint32(seen[0:]) != domctlCreateDomain || le.Uint32(seen[4:]) != rel.Domctl {
				t.Fatalf("header cmd %d version %#x", le.Uint32(seen[0:]), le.Uint32(seen[4:]))
			}
			u := seen[domctlUnion:]
			o := offsets[rel.Domctl]
			if le.Uint32(u[0:]) != 1 || u[4] != 0xaa || u[19] != 0xbb || le.Uint32(u[20:]) != CreateHVM|CreateHAP ||
				le.Uint32(u[28:]) != 2 || le.Uint32(u[32:]) != 1023 || le.Uint32(u[36:]) != 64 ||
				int32(le.Uint32(u[40:])) != -1 || le.Uint32(u[44:]) != 2 {
				t.Fatalf("fields before grant_opts wrong: % x", u[:48])
			}
			if le.Uint32(u[o[0]:]) != 0x1000 || le.Uint32(u[o[1]:]) != 7 ||
				le.Uint32(u[o[2]:]) != EmuLAPIC || le.Uint32(u[o[2]+4:]) != MiscMSRRelaxed {
				t.Fatalf("vmtrace_size/cpupool_id/arch not at %v: % x", o, u[44:72])
			}
			if rel.Domctl >= 0x17 && le.Uint32(u[48:]) != 0 {
				t.Fatalf("altp2m_opts = %#x, want 0", le.Uint32(u[48:]))
			}
		})
	}
}

// TestGetDomainInfoEncodingPerVersion: getdomaininfo carries each
// release's domctl version and decodes the same layout under each.
func TestGetDomainInfoEncodingPerVersion(t *testing.T) {
	for _, rel := range Releases {
		t.Run(rel.String(), func(t *testing.T) {
			a := &fakeAlloc{pinned: true}
			var version, cmd uint32
			f := callerFunc(func(op uint64, args [5]uint64) (uint64, error) {
				m := a.mem(args[0], domctlSize)
				cmd, version = le.Uint32(m[0:]), le.Uint32(m[4:])
				u := m[domctlUnion:]
				le.PutUint16(u[0:], le.Uint16(m[8:]))
				le.PutUint32(u[4:], DomainBlocked|DomainHVM)
				le.PutUint64(u[8:], 32768)
				le.PutUint32(u[64:], 2)
				le.PutUint32(u[92:], 3)
				u[96] = 48
				return 0, nil
			})
			x := New(f, NewPool(a))
			defer x.Close()
			if err := x.SetInterface(Interface{rel.Major, rel.Minor, rel.Domctl, rel.Sysctl}); err != nil {
				t.Fatal(err)
			}
			d, err := x.GetDomainInfo(4)
			if err != nil || cmd != domctlGetDomainInfo || version != rel.Domctl {
				t.Fatalf("GetDomainInfo: %v, cmd %d version %#x", err, cmd, version)
			}
			if d.Domain != 4 || d.Flags != DomainBlocked|DomainHVM || d.TotPages != 32768 || d.OnlineVCPUs != 2 ||
				d.CPUPool != 3 || d.GPAddrBits != 48 {
				t.Fatalf("decoded %+v", d)
			}
		})
	}
}

// callerFunc adapts a function to Caller.
type callerFunc func(op uint64, args [5]uint64) (uint64, error)

func (f callerFunc) Hypercall(op uint64, args [5]uint64) (uint64, error) { return f(op, args) }
