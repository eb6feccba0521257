package migrate

import (
	"fmt"
	"strconv"
	"time"

	"github.com/xensr/xensr/xenstore"
)

// A Node is one xenstore node a restore writes: its path, its value and,
// when Perms is not nil, its permissions (set right after the write, so
// children created later inherit them).
type Node struct {
	Path  string
	Value string
	Perms []xenstore.Perm
}

// Values libxl writes for the primary console (LIBXL_XENCONSOLE_LIMIT,
// LIBXL_XENCONSOLE_PROTOCOL).
const (
	consoleLimit    = 1048576
	consoleProtocol = "vt100"
)

// libxlLayout returns the xenstore nodes libxl writes for a restored PVH
// domain, in libxl's order: the directories of domain creation
// (libxl__domain_make), those of the build (libxl__build_post: memory,
// store, vCPUs, start time) and the primary console device
// (libxl__device_console_add) that xenconsoled attaches to.
func libxlLayout(domid uint32, c *DomainConfig, name string, storePort, consolePort uint32, storeGFN, consoleGFN uint64, start time.Time) []Node {
	dom := fmt.Sprintf("/local/domain/%d", domid)
	vm := "/vm/" + FormatUUID(c.UUID)
	lx := fmt.Sprintf("/libxl/%d", domid)
	ro := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: domid, Access: xenstore.AccessRead}}
	rw := []xenstore.Perm{{Domain: domid, Access: xenstore.AccessNone}}
	none := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	n := []Node{
		{dom, "", ro}, {vm, "", ro}, {lx, "", none}, {lx + "/device", "", none},
		{dom + "/vm", vm, nil},
		{dom + "/name", name, nil},
		{dom + "/cpu", "", ro}, {dom + "/memory", "", ro},
		{dom + "/device", "", ro}, {dom + "/device/suspend/event-channel", "", rw},
		{dom + "/control", "", ro},
		{dom + "/control/shutdown", "", rw}, {dom + "/control/feature-poweroff", "", rw},
		{dom + "/control/feature-reboot", "", rw}, {dom + "/control/feature-suspend", "", rw},
		{dom + "/control/sysrq", "", rw},
		{dom + "/data", "", rw}, {dom + "/drivers", "", rw}, {dom + "/feature", "", rw},
		{dom + "/attr", "", rw}, {dom + "/error", "", rw},
		{vm + "/uuid", FormatUUID(c.UUID), nil}, {vm + "/name", name, nil},
		{dom + "/control/platform-feature-multiprocessor-suspend", "1", nil},
		{dom + "/control/platform-feature-xs_reset_watches", "1", nil},
		{lx + "/type", c.Type, nil},
		// libxl__build_post
		{dom + "/memory/static-max", u(c.MaxMemKB), nil},
		{dom + "/memory/target", u(c.TargetMemKB), nil},
		{dom + "/memory/videoram", u(c.VideoMemKB), nil},
		{dom + "/domid", u(uint64(domid)), nil},
		{dom + "/store/port", u(uint64(storePort)), nil},
		{dom + "/store/ring-ref", u(storeGFN), nil},
	}
	for i, on := range c.AvailVCPUs {
		v := "offline"
		if on {
			v = "online"
		}
		n = append(n, Node{fmt.Sprintf("%s/cpu/%d/availability", dom, i), v, nil})
	}
	n = append(n, Node{vm + "/start_time", fmt.Sprintf("%d.%02d", start.Unix(), start.Nanosecond()/10000000), nil})
	// The primary console: backend in dom0, frontend at dom/console.
	back := fmt.Sprintf("/local/domain/0/backend/console/%d/0", domid)
	front := dom + "/console"
	fperm := []xenstore.Perm{{Domain: domid, Access: xenstore.AccessNone}, {Domain: 0, Access: xenstore.AccessRead}}
	bperm := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: domid, Access: xenstore.AccessRead}}
	n = append(n,
		Node{back, "", bperm},
		Node{back + "/frontend", front, nil}, Node{back + "/frontend-id", u(uint64(domid)), nil},
		Node{back + "/online", "1", nil}, Node{back + "/state", "1", nil},
		Node{back + "/protocol", consoleProtocol, nil},
		Node{front, "", fperm},
		Node{front + "/backend", back, nil}, Node{front + "/backend-id", "0", nil},
		Node{front + "/limit", u(consoleLimit), ro}, Node{front + "/type", "xenconsoled", ro},
		Node{front + "/output", "pty", ro}, Node{front + "/tty", "", ro},
		Node{front + "/port", u(uint64(consolePort)), ro}, Node{front + "/ring-ref", u(consoleGFN), ro},
		Node{lx + "/device/console/0/frontend", front, nil}, Node{lx + "/device/console/0/backend", back, nil},
	)
	return n
}

// layoutRoots are the subtrees a restore creates for domain domid: what a
// failed restore removes.
func layoutRoots(domid uint32, uuid [16]byte) []string {
	return []string{
		fmt.Sprintf("/local/domain/%d", domid),
		"/vm/" + FormatUUID(uuid),
		fmt.Sprintf("/libxl/%d", domid),
		fmt.Sprintf("/local/domain/0/backend/console/%d", domid),
	}
}
