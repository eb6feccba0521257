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

func run(ctx context.Context, x Source, name Namer, out io.Writer) error {
	ma, mi, err := x.Version()
	if err != nil {
		return err
	}
	extra, err := x.ExtraVersion()
	if err != nil {
		return err
	}
	caps, err := x.Capabilities()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "xen_version            : %d.%d%s\n", ma, mi, extra)
	fmt.Fprintf(out, "xen_caps               : %s\n", strings.TrimSpace(caps))
	var doms []hypercall.DomainInfo
	for first := uint32(0); ; {
		batch, err := x.GetDomainInfoList(first, 64)
		if err != nil {
			return err
		}
		doms = append(doms, batch...)
		if len(batch) < 64 {
			break
		}
		first = batch[len(batch)-1].Domain + 1
	}
	fmt.Fprintf(out, "%-32s %5s %5s %5s %6s %9s\n", "Name", "ID", "Mem", "VCPUs", "State", "Time(s)")
	for _, d := range doms {
		fmt.Fprintf(out, "%-32s %5d %5d %5d %6s %9.1f\n", name(ctx, d.Domain), d.Domain,
			d.TotPages*4096>>20, d.OnlineVCPUs, d.State(), float64(d.CPUTime)/1e9)
	}
	return nil
}

func main() {
	if err := start(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "xeninfo:", err)
		os.Exit(1)
	}
}
