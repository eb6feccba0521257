// Command xsrpack packs Xen save images compactly (page dedupe, zero pages
// dropped, zstd in independent blocks with checksums) and unpacks them bit
// for bit; it reads one page or the non-page records without unpacking:
//
//	xsrpack pack [-best] [-c] [IN [OUT]]      (- or absent: stdin/stdout; -best: slower, smaller)
//	xsrpack unpack [IN [OUT]]
//	xsrpack cat-page [-round N] PACKED PFN    (the page's 4096 bytes to stdout)
//	xsrpack stat PACKED
//
// so `xl save -p dom /dev/stdout | xsrpack pack > img.xsrp` and
// `xsrpack unpack img.xsrp | xl restore /dev/stdin` work with pipes.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/xensr/xensr/stream/pack"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "xsrpack:", err)
		os.Exit(1)
	}
}

func openIn(args []string, stdin io.Reader) (io.Reader, func(), error) {
	if len(args) == 0 || args[0] == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
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

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: xsrpack pack|unpack|cat-page|stat ...")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	best := fs.Bool("best", false, "pack: best compression (slower)")
	ckpt := fs.Bool("c", false, "pack: the stream is checkpointed (Remus/COLO)")
	round := fs.Int("round", 0, "cat-page: checkpoint round")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	rest := fs.Args()
	switch args[0] {
	case "pack", "unpack":
		in, closeIn, err := openIn(rest, stdin)
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
		if args[0] == "pack" {
			opt := pack.Options{}
			opt.Image.Checkpointed = *ckpt
			if *best {
				opt.Level = zstd.SpeedBestCompression
			}
			st, err := pack.Pack(out, in, opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "xsrpack: %d -> %d bytes (%.1f%%); %d pages: %d zero, %d duplicate, %d unique\n",
				st.InBytes, st.OutBytes, 100*float64(st.OutBytes)/float64(max(st.InBytes, 1)), st.Pages, st.ZeroPages, st.DupPages, st.UniquePages)
		} else if err := pack.Unpack(out, in); err != nil {
			return err
		}
		if err := finish(); err != nil {
			return err
		}
		ok = true
		return nil
	case "cat-page", "stat":
		if len(rest) < 1 || (args[0] == "cat-page" && len(rest) < 2) {
			return fmt.Errorf("usage: xsrpack %s PACKED%s", args[0], map[bool]string{true: " PFN"}[args[0] == "cat-page"])
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
		if args[0] == "stat" {
			fmt.Fprintf(stdout, "%s: %d bytes, %d page occurrences, %d unique pages\n", rest[0], p.Size, p.Occurrences, p.Unique)
			return nil
		}
		pfn, err := strconv.ParseUint(rest[1], 0, 64)
		if err != nil {
			return err
		}
		page, err := p.Page(*round, pfn)
		if err != nil {
			return err
		}
		_, err = stdout.Write(page)
		return err
	}
	return fmt.Errorf("unknown command %q", args[0])
}
