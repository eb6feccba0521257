// Command xsrblkback serves a file as a virtual disk to a guest: it writes
// the disk's xenstore nodes as a toolstack does (the frontend's
// device/vbd/DEVID and the backend's backend/KIND/DOMID/DEVID), and runs a
// userspace block backend (package blkback) that maps the guest's ring and
// data pages through a grant Tracker, until the guest closes the device or
// the command is interrupted; then it removes the nodes. Root in dom0.
package main

import (
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/xensr/xensr/blkback"
	"github.com/xensr/xensr/internal/cli"
	"github.com/xensr/xensr/xenbus"
)

func main() { os.Exit(xsrblkback(os.Args[1:], os.Stdout, os.Stderr)) }

// options are the parsed command line.
type options struct {
	domid    uint32
	file     string
	vdev     string
	kind     string
	typ      string
	readOnly bool
	copy     bool
	verbose  bool
}

var vdevRE = regexp.MustCompile(`^xvd([a-p])$`)

// device returns the xenbus device the options name.
func (o options) device() xenbus.Device {
	m := vdevRE.FindStringSubmatch(o.vdev)
	return xenbus.Device{Kind: "vbd", BackKind: o.kind, BackDomid: 0, FrontDomid: o.domid, Devid: blkback.VdevXvd(int(m[1][0] - 'a'))}
}

// xsrblkback parses the flags before it opens any device.
func xsrblkback(args []string, stdout, stderr io.Writer) int {
	c := cli.New("xsrblkback", "DOMID FILE",
		"Serves FILE as a virtual disk to domain DOMID's blkfront until the guest closes it\nor the command is interrupted (root in dom0; no libxl, no kernel blkback).", stderr)
	vdev := c.Flags.String("vdev", "xvda", "the guest's name for the disk, xvda..xvdp")
	kind := c.Flags.String("backend-kind", "vbd", "the backend directory's kind: vbd (as libxl writes), or e.g. qdisk to keep out of a loaded kernel blkback's way")
	typ := c.Flags.String("type", "xensr", "the backend's \"type\" node")
	ro := c.Flags.Bool("ro", false, "read-only disk")
	cp := c.Flags.Bool("copy", false, "move data by grant copy instead of mapping the guest's pages")
	verbose := c.Flags.Bool("v", false, "log the handshake to stderr")
	rest, code, ok := c.ParseN(args, 2, 2)
	if !ok {
		return code
	}
	var dom uint32
	if _, err := fmt.Sscanf(rest[0], "%d", &dom); err != nil || fmt.Sprint(dom) != rest[0] || dom == 0 || dom >= 0x7ff0 {
		return c.UsageError("DOMID %q is not a guest's domain id", rest[0])
	}
	if !vdevRE.MatchString(*vdev) {
		return c.UsageError("-vdev %q: want xvda..xvdp", *vdev)
	}
	if *kind == "" {
		return c.UsageError("-backend-kind is empty")
	}
	o := options{domid: dom, file: rest[1], vdev: *vdev, kind: *kind, typ: *typ, readOnly: *ro, copy: *cp, verbose: *verbose}
	if err := start(o, stdout, stderr); err != nil {
		return c.Fail(err)
	}
	return cli.ExitOK
}
