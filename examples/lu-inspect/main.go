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
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/liveupdate"
)

func main() {
	bm := flag.String("bootmem", "", "bootmem region `ADDR[,LEN]` (LEN defaults to one page)")
	flag.Parse()
	if flag.NArg() != 1 || *bm == "" {
		fmt.Fprintln(os.Stderr, "usage: lu-inspect -bootmem ADDR[,LEN] IMAGE")
		os.Exit(2)
	}
	if err := run(os.Stdout, flag.Arg(0), *bm); err != nil {
		fmt.Fprintln(os.Stderr, "lu-inspect:", err)
		os.Exit(1)
	}
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
