// Command lu-inspect prints the live-update breadcrumb of a memory image
// and the records of each domain's migration stream in the live-update
// data:
//
//	lu-inspect -bootmem ADDR[,LEN] IMAGE
//
// IMAGE is a file standing for physical memory (offset = physical address);
// ADDR is the start of the live-update bootmem region.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/xensr/xensr/internal/cli"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/liveupdate"
)

func main() { os.Exit(luInspect(os.Args[1:], os.Stdout, os.Stderr)) }

func luInspect(args []string, stdout, stderr io.Writer) int {
	c := cli.New("lu-inspect", "IMAGE", `Prints the live-update breadcrumb of IMAGE, a file standing for physical
memory (offset = physical address), and the records of each domain's
migration stream in the live-update data.`, stderr)
	bm := c.Flags.String("bootmem", "", "start of the live-update bootmem region, `ADDR[,LEN]` (LEN defaults to one page; required)")
	rest, code, ok := c.ParseN(args, 1, 1)
	if !ok {
		return code
	}
	if *bm == "" {
		return c.UsageError("-bootmem is required")
	}
	if err := run(stdout, rest[0], *bm); err != nil {
		return c.Fail(err)
	}
	return cli.ExitOK
}

func parseRegion(s string) (liveupdate.Region, error) {
	a, l, ok := strings.Cut(s, ",")
	start, err := strconv.ParseUint(a, 0, 64)
	if err != nil {
		return liveupdate.Region{}, err
	}
	r := liveupdate.Region{Start: start, Len: liveupdate.PageSize}
	if ok {
		if r.Len, err = strconv.ParseUint(l, 0, 64); err != nil {
			return r, err
		}
	}
	return r, nil
}

func run(out io.Writer, path, bootmem string) error {
	region, err := parseRegion(bootmem)
	if err != nil {
		return fmt.Errorf("-bootmem: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	s, err := liveupdate.Open(f, uint64(st.Size()), region)
	if err != nil {
		return err
	}
	b := s.Breadcrumb
	fmt.Fprintf(out, "breadcrumb at %#x: version %d, %d pages, MFN array at %#x, %d bytes of stream\n",
		region.Start, b.Version, b.NrPages, b.MFNArray, b.Length)
	r := s.Reader()
	off := int64(0)
	for dom := 0; off < int64(b.Length); dom++ {
		rd := libxc.NewReaderAt(r, off)
		img, dh, err := rd.Header()
		if err != nil {
			return fmt.Errorf("stream %d: %w", dom, err)
		}
		fmt.Fprintf(out, "stream %d at %d: libxc v%d, %v, Xen %d.%d\n", dom, off, img.Version, dh.Type, dh.XenMajor, dh.XenMinor)
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("stream %d: %w", dom, err)
			}
			cur := rd.Current()
			extra := ""
			if p, ok := rec.(*libxc.PageData); ok {
				extra = fmt.Sprintf(" %d pages", len(p.Entries))
			}
			fmt.Fprintf(out, "  %8d %-20v %6d bytes%s\n", cur.Offset, rec.Type(), len(cur.Body), extra)
		}
		off = rd.Offset()
	}
	return nil
}
