// Command xsrpack packs Xen save images compactly (page dedupe, zero pages
// dropped, zstd in independent blocks with checksums) and unpacks them bit
// for bit; it reads one page or the non-page records without unpacking:
//
//	xsrpack pack [-best] [-c] [-q] [IN [OUT]]   (- or absent: stdin/stdout; -best: slower, smaller)
//	xsrpack unpack [-q] [IN [OUT]]
//	xsrpack cat-page [-round N] PACKED PFN      (the page's 4096 bytes to stdout)
//	xsrpack stat [-json] PACKED
//
// so `xl save -p dom /dev/stdout | xsrpack pack > img.xsrp` and
// `xsrpack unpack img.xsrp | xl restore /dev/stdin` work with pipes.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/xensr/xensr/internal/cli"
	"github.com/xensr/xensr/stream/pack"
)

func main() { os.Exit(xsrpack(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// xsrpack dispatches to the subcommands, each with its own flags, parsed
// before any file is opened.
func xsrpack(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Dispatch("xsrpack", []cli.Sub{
		{Name: "pack", Summary: "pack an image (xl save file, libxl or libxc stream)", Run: func(a []string) int {
			return sub(a, stdin, stdout, stderr, "pack", "[IN [OUT]]", "Packs the image IN (or stdin) into OUT (or stdout).", 0, 2)
		}},
		{Name: "unpack", Summary: "unpack bit for bit", Run: func(a []string) int {
			return sub(a, stdin, stdout, stderr, "unpack", "[IN [OUT]]", "Unpacks IN (or stdin) into OUT (or stdout), bit for bit.", 0, 2)
		}},
		{Name: "cat-page", Summary: "one page's 4096 bytes, without unpacking", Run: func(a []string) int {
			return sub(a, stdin, stdout, stderr, "cat-page", "PACKED PFN", "Writes the page PFN of checkpoint round -round to stdout.", 2, 2)
		}},
		{Name: "stat", Summary: "what a packed file holds", Run: func(a []string) int {
			return sub(a, stdin, stdout, stderr, "stat", "PACKED", "Prints the size, page occurrences and unique pages of PACKED.", 1, 1)
		}},
	}, args, stderr)
}

// opts are every subcommand's flags; each subcommand registers its own.
type opts struct {
	best, ckpt, quiet, json bool
	round                   int
}

func sub(args []string, stdin io.Reader, stdout, stderr io.Writer, name, usage, summary string, min, max int) int {
	c := cli.New("xsrpack "+name, usage, summary, stderr)
	var o opts
	switch name {
	case "pack":
		c.Flags.BoolVar(&o.best, "best", false, "best compression (slower)")
		c.Flags.BoolVar(&o.ckpt, "c", false, "the stream is checkpointed (Remus/COLO)")
		c.Flags.BoolVar(&o.quiet, "q", false, "no progress or summary on stderr")
	case "unpack":
		c.Flags.BoolVar(&o.quiet, "q", false, "no progress on stderr")
	case "cat-page":
		c.Flags.IntVar(&o.round, "round", 0, "checkpoint round")
	case "stat":
		c.Flags.BoolVar(&o.json, "json", false, "print JSON")
	}
	rest, code, ok := c.ParseN(args, min, max)
	if !ok {
		return code
	}
	if name == "pack" || name == "unpack" {
		if f, isFile := stdin.(*os.File); isFile && (len(rest) == 0 || rest[0] == "-") && cli.IsTerminal(f) {
			fmt.Fprintf(stderr, "xsrpack %s: reading from standard input (a terminal); end with Ctrl-D, or give IN\n", name)
		}
	}
	if err := do(name, o, rest, stdin, stdout, stderr); err != nil {
		return c.Fail(err)
	}
	return cli.ExitOK
}

func openIn(args []string, stdin io.Reader) (io.Reader, int64, func(), error) {
	if len(args) == 0 || args[0] == "-" {
		return stdin, 0, func() {}, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, 0, nil, err
	}
	size := int64(0)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return f, size, func() { f.Close() }, nil
}

// openOut opens the output; finish completes it, discard removes an output
// file after a failure, so that a pack or unpack that failed leaves no file
// that looks like a result.
func openOut(args []string, stdout io.Writer) (w *bufio.Writer, finish func() error, discard func(), err error) {
	if len(args) < 2 || args[1] == "-" {
		w := bufio.NewWriterSize(stdout, 1<<20)
		return w, w.Flush, func() {}, nil
	}
	f, err := os.Create(args[1])
	if err != nil {
		return nil, nil, nil, err
	}
	w = bufio.NewWriterSize(f, 1<<20)
	finish = func() error {
		if err := w.Flush(); err != nil {
			return err
		}
		return f.Close()
	}
	discard = func() {
		f.Close()
		os.Remove(f.Name())
	}
	return w, finish, discard, nil
}

func do(name string, o opts, rest []string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch name {
	case "pack", "unpack":
		in, size, closeIn, err := openIn(rest, stdin)
		if err != nil {
			return err
		}
		defer closeIn()
		out, finish, discard, err := openOut(rest, stdout)
		if err != nil {
			return err
		}
		ok := false
		defer func() {
			if !ok {
				discard()
			}
		}()
		prog := cli.NewProgress(stderr, o.quiet, "xsrpack "+name, size)
		if name == "pack" {
			// Pack reads a regular file at offsets, not only through
			// Read: it reports its progress itself.
			opt := pack.Options{Progress: prog.Add}
			opt.Image.Checkpointed = o.ckpt
			if o.best {
				opt.Level = pack.LevelBest
			}
			hugeHeap()
			st, err := pack.Pack(out, in, opt)
			if err != nil {
				return err
			}
			prog.Done()
			if !o.quiet {
				fmt.Fprintf(stderr, "xsrpack: %d -> %d bytes (%.1f%%); %d pages: %d zero, %d duplicate, %d unique\n",
					st.InBytes, st.OutBytes, 100*float64(st.OutBytes)/float64(max(st.InBytes, 1)), st.Pages, st.ZeroPages, st.DupPages, st.UniquePages)
			}
		} else {
			if err := pack.Unpack(out, io.TeeReader(in, prog.Writer())); err != nil {
				return err
			}
			prog.Done()
		}
		if err := finish(); err != nil {
			return err
		}
		ok = true
		return nil
	case "cat-page", "stat":
		if len(rest) < 1 || (name == "cat-page" && len(rest) < 2) {
			return fmt.Errorf("usage: xsrpack %s PACKED%s", name, map[bool]string{true: " PFN"}[name == "cat-page"])
		}
		f, err := os.Open(rest[0])
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		p, err := pack.Open(f, info.Size())
		if err != nil {
			return err
		}
		if name == "stat" {
			if o.json {
				return cli.WriteJSON(stdout, struct {
					File        string `json:"file"`
					Bytes       int64  `json:"bytes"`
					Occurrences int    `json:"page_occurrences"`
					Unique      int    `json:"unique_pages"`
					Window      int    `json:"window_pages"`
				}{rest[0], p.Size, p.Occurrences, p.Unique, p.Window})
			}
			fmt.Fprintf(stdout, "%s: %d bytes, %d page occurrences, %d unique pages\n", rest[0], p.Size, p.Occurrences, p.Unique)
			return nil
		}
		pfn, err := strconv.ParseUint(rest[1], 0, 64)
		if err != nil {
			return err
		}
		page, err := p.Page(o.round, pfn)
		if err != nil {
			return err
		}
		_, err = stdout.Write(page)
		return err
	}
	return fmt.Errorf("unknown command %q", name)
}
