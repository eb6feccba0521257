// Command xeninfo prints the Xen version and capabilities and lists the
// domains like `xl list`: name (from xenstore), id, memory, vCPUs, state
// and CPU time. It runs as root in dom0 and uses no libxc or libxl.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/cli"
)

// Source is what xeninfo needs from the hypervisor (hypercall.Xen).
type Source interface {
	Version() (uint32, uint32, error)
	ExtraVersion() (string, error)
	Capabilities() (string, error)
	GetDomainInfoList(first uint32, max int) ([]hypercall.DomainInfo, error)
}

// Namer reads a domain's name (xenstore's /local/domain/N/name).
type Namer func(ctx context.Context, domid uint32) string

// Info is what xeninfo prints, and its -json form.
type Info struct {
	XenVersion string   `json:"xen_version"`
	XenCaps    string   `json:"xen_caps"`
	Domains    []Domain `json:"domains"`
}

// Domain is one row of the list.
type Domain struct {
	Name     string  `json:"name"`
	ID       uint32  `json:"domid"`
	MemMiB   uint64  `json:"memory_mib"`
	VCPUs    uint32  `json:"vcpus"`
	State    string  `json:"state"`
	CPUTimeS float64 `json:"cpu_time_s"`
}

func gather(ctx context.Context, x Source, name Namer) (Info, error) {
	ma, mi, err := x.Version()
	if err != nil {
		return Info{}, err
	}
	extra, err := x.ExtraVersion()
	if err != nil {
		return Info{}, err
	}
	caps, err := x.Capabilities()
	if err != nil {
		return Info{}, err
	}
	info := Info{XenVersion: fmt.Sprintf("%d.%d%s", ma, mi, extra), XenCaps: strings.TrimSpace(caps), Domains: []Domain{}}
	for first := uint32(0); ; {
		batch, err := x.GetDomainInfoList(first, 64)
		if err != nil {
			return Info{}, err
		}
		for _, d := range batch {
			info.Domains = append(info.Domains, Domain{Name: name(ctx, d.Domain), ID: d.Domain,
				MemMiB: d.TotPages * 4096 >> 20, VCPUs: d.OnlineVCPUs, State: d.State(), CPUTimeS: float64(d.CPUTime) / 1e9})
		}
		if len(batch) < 64 {
			break
		}
		first = batch[len(batch)-1].Domain + 1
	}
	return info, nil
}

func run(ctx context.Context, x Source, name Namer, out io.Writer, asJSON bool) error {
	info, err := gather(ctx, x, name)
	if err != nil {
		return err
	}
	if asJSON {
		return cli.WriteJSON(out, info)
	}
	fmt.Fprintf(out, "xen_version            : %s\n", info.XenVersion)
	fmt.Fprintf(out, "xen_caps               : %s\n", info.XenCaps)
	fmt.Fprintf(out, "%-32s %5s %5s %5s %6s %9s\n", "Name", "ID", "Mem", "VCPUs", "State", "Time(s)")
	for _, d := range info.Domains {
		fmt.Fprintf(out, "%-32s %5d %5d %5d %6s %9.1f\n", d.Name, d.ID, d.MemMiB, d.VCPUs, d.State, d.CPUTimeS)
	}
	return nil
}

func main() { os.Exit(xeninfo(os.Args[1:], os.Stdout, os.Stderr)) }

// xeninfo parses the flags before it opens any device.
func xeninfo(args []string, stdout, stderr io.Writer) int {
	c := cli.New("xeninfo", "", "Prints the Xen version and capabilities and lists the domains like `xl list`\n(root in dom0; no libxc or libxl).", stderr)
	asJSON := c.Flags.Bool("json", false, "print JSON")
	if _, code, ok := c.ParseN(args, 0, 0); !ok {
		return code
	}
	if err := start(stdout, *asJSON); err != nil {
		return c.Fail(err)
	}
	return cli.ExitOK
}
