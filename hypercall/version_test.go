package hypercall

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// releaseXen plays one Xen release: xen_version answers its version, and a
// domctl or sysctl whose interface_version is not the release's fails with
// EACCES, as Xen's do_domctl/do_sysctl do. It records the versions offered.
type releaseXen struct {
	a       *fakeAlloc
	rel     Release
	offered []uint32 // interface_version of every domctl, then sysctl, seen
	domains map[uint32]uint32
}

func (f *releaseXen) Hypercall(op uint64, args [5]uint64) (uint64, error) {
	switch op {
	case OpXenVersion:
		return uint64(f.rel.Major)<<16 | uint64(f.rel.Minor), nil
	case OpDomctl:
		m := f.a.mem(args[0], domctlSize)
		f.offered = append(f.offered, le.Uint32(m[4:]))
		if le.Uint32(m[4:]) != f.rel.Domctl {
			return 0, syscall.EACCES
		}
		dom := uint32(le.Uint16(m[8:]))
		if le.Uint32(m[0:]) != domctlGetDomainInfo {
			return 0, syscall.ENOSYS
		}
		u := m[domctlUnion:]
		next := dom
		if _, ok := f.domains[dom]; !ok {
			if f.rel.Domctl >= 0x16 {
				return 0, syscall.ESRCH
			}
			// Before 0x16 Xen answered with the next domain that exists.
			for next = dom + 1; next < 100; next++ {
				if _, ok := f.domains[next]; ok {
					break
				}
			}
			if next == 100 {
				return 0, syscall.ESRCH
			}
		}
		le.PutUint16(u[gdiDomain:], uint16(next))
		le.PutUint32(u[gdiFlags:], f.domains[next])
		return 0, nil
	case OpSysctl:
		m := f.a.mem(args[0], sysctlSize)
		f.offered = append(f.offered, le.Uint32(m[4:]))
		if le.Uint32(m[4:]) != f.rel.Sysctl {
			return 0, syscall.EACCES
		}
		u := m[sysctlUnion:]
		out := f.a.mem(le.Uint64(u[gdilBuffer:]), gdiSize)
		le.PutUint16(out[gdiDomain:], 0)
		le.PutUint32(u[gdilNumDomains:], 1)
		return 0, nil
	}
	return 0, syscall.ENOSYS
}

// TestProbeEveryRelease probes a fake of each release in the table and
// checks that the versions found are the release's, that the release's own
// version is offered first (one call each when the table is right), and
// that later calls carry them.
func TestProbeEveryRelease(t *testing.T) {
	for _, rel := range Releases {
		t.Run(rel.String(), func(t *testing.T) {
			a := &fakeAlloc{pinned: true}
			f := &releaseXen{a: a, rel: rel, domains: map[uint32]uint32{0: DomainRunning, 5: DomainBlocked}}
			x := New(f, NewPool(a))
			defer x.Close()
			got, err := x.Probe()
			want := Interface{Major: rel.Major, Minor: rel.Minor, Domctl: rel.Domctl, Sysctl: rel.Sysctl}
			if err != nil || got != want || x.Interface() != want {
				t.Fatalf("Probe = %v, %v; Interface %v; want %v", got, err, x.Interface(), want)
			}
			if len(f.offered) != 2 || f.offered[0] != rel.Domctl || f.offered[1] != rel.Sysctl {
				t.Fatalf("offered %#x, want [%#x %#x]", f.offered, rel.Domctl, rel.Sysctl)
			}
			f.offered = nil
			if _, err := x.GetDomainInfo(5); err != nil || f.offered[0] != rel.Domctl {
				t.Fatalf("GetDomainInfo after Probe: %v, offered %#x", err, f.offered)
			}
			// An absent domain: ESRCH from 0x16 on, the next domain
			// before; both are an error naming the domain asked for.
			var he *Error
			_, err = x.GetDomainInfo(3)
			if !errors.As(err, &he) || he.Domain != 3 {
				t.Fatalf("absent domain: %v", err)
			}
			if domctlLayouts[rel.Domctl].absentESRCH != errors.Is(err, syscall.ESRCH) {
				t.Fatalf("absent domain under %#x: %v (absentESRCH %v)", rel.Domctl, err, domctlLayouts[rel.Domctl].absentESRCH)
			}
		})
	}
}

// TestProbeUnknownRelease: a release the table does not name but whose
// versions are known is found by trying them all; one whose versions are
// unknown fails with an InterfaceError naming the Xen version.
func TestProbeUnknownRelease(t *testing.T) {
	a := &fakeAlloc{pinned: true}
	f := &releaseXen{a: a, rel: Release{4, 23, 0x18, 0x16}, domains: map[uint32]uint32{0: DomainRunning}}
	x := New(f, NewPool(a))
	defer x.Close()
	if got, err := x.Probe(); err != nil || got.Domctl != 0x18 || got.Sysctl != 0x16 {
		t.Fatalf("4.23 with known versions: %v %v", got, err)
	}

	f.rel = Release{4, 24, 0x19, 0x16}
	x2 := New(f, NewPool(a))
	defer x2.Close()
	_, err := x2.Probe()
	var ie *InterfaceError
	if !errors.As(err, &ie) || !errors.Is(err, ErrInterfaceVersion) || ie.Which != "domctl" {
		t.Fatalf("4.24 with domctl 0x19: %v", err)
	}
	for _, s := range []string{"Xen 4.24", "0x18", "0x15", "4.17, 4.18, 4.19, 4.20, 4.21, 4.22"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if x2.Interface() != defaultInterface {
		t.Fatalf("a failed Probe left interface %v", x2.Interface())
	}

	f.rel = Release{4, 25, 0x18, 0x17}
	x3 := New(f, NewPool(a))
	defer x3.Close()
	if _, err := x3.Probe(); !errors.As(err, &ie) || ie.Which != "sysctl" || !strings.Contains(err.Error(), "Xen 4.25") {
		t.Fatalf("4.25 with sysctl 0x17: %v", err)
	}
}

// TestProbePassesOtherErrors: an error other than EACCES (dom0 without
// privilege: EPERM) is returned as it is, not taken for a version mismatch.
func TestProbePassesOtherErrors(t *testing.T) {
	a := &fakeAlloc{pinned: true}
	x := New(permCaller{}, NewPool(a))
	defer x.Close()
	if _, err := x.Probe(); !errors.Is(err, syscall.EPERM) || errors.Is(err, ErrInterfaceVersion) {
		t.Fatalf("Probe on EPERM: %v", err)
	}
}

// permCaller is Xen 4.20 refusing every domctl to an unprivileged caller.
type permCaller struct{}

func (permCaller) Hypercall(op uint64, args [5]uint64) (uint64, error) {
	if op == OpXenVersion {
		return 4<<16 | 20, nil
	}
	return 0, syscall.EPERM
}

func TestSetInterface(t *testing.T) {
	x := New(nil, NewPool(&fakeAlloc{}))
	defer x.Close()
	if x.Interface() != defaultInterface || x.layout().createDomain != createDomain15 {
		t.Fatalf("default interface %v", x.Interface())
	}
	if err := x.SetInterface(Interface{4, 20, 0x17, 0x15}); err != nil || x.layout().createDomain != createDomain17 {
		t.Fatalf("SetInterface 4.20: %v", err)
	}
	if err := x.SetInterface(Interface{4, 30, 0x20, 0x15}); !errors.Is(err, ErrInterfaceVersion) || !strings.Contains(err.Error(), "0x20") {
		t.Fatalf("SetInterface 0x20: %v", err)
	}
}
