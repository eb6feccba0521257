package evtchn

import (
	"fmt"
	"slices"
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// TestIoctlNumbers checks the numbers against what the C preprocessor makes
// of include/uapi/xen/evtchn.h on x86-64.
func TestIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uint64
	}{
		{"BIND_VIRQ", IoctlBindVirq, 0x44500},
		{"BIND_INTERDOMAIN", IoctlBindInterdomain, 0x84501},
		{"BIND_UNBOUND_PORT", IoctlBindUnboundPort, 0x44502},
		{"UNBIND", IoctlUnbind, 0x44503},
		{"NOTIFY", IoctlNotify, 0x44504},
		{"RESET", IoctlReset, 0x4505},
		{"RESTRICT_DOMID", IoctlRestrictDomid, 0x24506},
	} {
		if tc.got != tc.want {
			t.Errorf("IOCTL_EVTCHN_%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// compareC checks C expressions against the Go values, with the C header
// include (a header of macros and structure types, which C allows at block
// scope) placed first in the program's main.
func compareC(t *testing.T, include string, want map[string]uint64) {
	t.Helper()
	body := include + "\n"
	var exprs []string
	for e := range want {
		exprs = append(exprs, e)
	}
	slices.Sort(exprs)
	for i, e := range exprs {
		body += cheader.Print(fmt.Sprint("v", i), e)
	}
	got := cheader.Run(t, body)
	for i, e := range exprs {
		if g := got[fmt.Sprint("v", i)]; g != want[e] {
			t.Errorf("%s: Go has %#x, C has %#x", e, want[e], g)
		}
	}
}

// TestIoctlNumbersAgainstC compares numbers and structure sizes with
// libxen-dev's xen/sys/evtchn.h.
func TestIoctlNumbersAgainstC(t *testing.T) {
	compareC(t, "#include <xen/sys/evtchn.h>", map[string]uint64{
		"IOCTL_EVTCHN_BIND_VIRQ":                                      uint64(IoctlBindVirq),
		"IOCTL_EVTCHN_BIND_INTERDOMAIN":                               uint64(IoctlBindInterdomain),
		"IOCTL_EVTCHN_BIND_UNBOUND_PORT":                              uint64(IoctlBindUnboundPort),
		"IOCTL_EVTCHN_UNBIND":                                         uint64(IoctlUnbind),
		"IOCTL_EVTCHN_NOTIFY":                                         uint64(IoctlNotify),
		"IOCTL_EVTCHN_RESET":                                          uint64(IoctlReset),
		"IOCTL_EVTCHN_RESTRICT_DOMID":                                 uint64(IoctlRestrictDomid),
		"sizeof(struct ioctl_evtchn_bind_interdomain)":                sizeBindInterdomain,
		"offsetof(struct ioctl_evtchn_bind_interdomain, remote_port)": 4,
		"sizeof(struct ioctl_evtchn_restrict_domid)":                  sizeRestrictDomid,
	})
}

func TestPortsCodec(t *testing.T) {
	ports := []Port{1, 7, 0xffff, 1 << 20}
	b := AppendPorts(nil, ports...)
	if len(b) != len(ports)*PortSize {
		t.Fatalf("%d bytes for %d ports", len(b), len(ports))
	}
	got, err := DecodePorts(b, nil)
	if err != nil || !slices.Equal(got, ports) {
		t.Fatalf("DecodePorts = %v, %v; want %v", got, err, ports)
	}
	if _, err := DecodePorts(b[:5], nil); err == nil {
		t.Fatal("a torn read decoded without error")
	}
}
