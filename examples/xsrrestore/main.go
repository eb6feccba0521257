// Command xsrrestore restores a PVH Xen guest in pure Go, with no libxl,
// libxc or cgo, from an `xl save` image, a bare libxl stream or a bare
// libxc stream, into a domain that xl treats as its own (xl list, xl
// console, xl save, xl destroy work on it).
//
//	xsrrestore [-p] [-name N] FILE|-         restore; -p leaves it paused
//	xsrrestore -config CFG.json STREAM       a bare stream with its libxl JSON configuration
//	xsrrestore -migrate-receive [ARGS...]    the receiving half of `xl migrate` on
//	                                         stdin/stdout; ARGS are ignored, so that
//	                                         `xl migrate -s "" GUEST "xsrrestore -migrate-receive"`
//	                                         and `xl migrate -s CMD GUEST HOST` (which runs
//	                                         "CMD HOST xl migrate-receive ...") both work
//	xsrrestore -listen :PORT [-once]         receive live migrations from `xsrsave -to`
//	                                         (migrate/transport: -encodings, -tls-cert/-key/-ca)
//
// Progress goes to stderr. On any failure the half-built domain, its
// xenstore nodes and its userdata file are removed again. Exit status: 0
// done, 1 failed, 2 usage.
package main

import (
	"context"
	"fmt"
	"github.com/xensr/xensr/internal/cli"
	"io"
	"os"

	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/migrate/transport"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// args are the parsed command line.
type args struct {
	paused, receive, quiet bool
	name, config, file     string
	listen                 string // -listen ADDR
	net                    transport.Flags
}

func parse(argv []string, stderr io.Writer) (*args, int) {
	c := cli.New("xsrrestore", "FILE|- | -migrate-receive | -listen ADDR", `Restores a PVH guest in pure Go from an xl save file, a bare libxl stream
or a bare libxc stream (FILE, or - for stdin); with -migrate-receive acts
as xl migrate-receive on stdin/stdout (xl migrate -s CMD); with -listen
receives live migrations from xsrsave -to.`, stderr)
	fs := c.Flags
	a := &args{}
	fs.BoolVar(&a.paused, "p", false, "leave the restored domain paused")
	fs.StringVar(&a.name, "name", "", "name of the restored domain (default: the configuration's)")
	fs.StringVar(&a.config, "config", "", "libxl JSON configuration (needed for a bare libxl or libxc stream)")
	fs.BoolVar(&a.receive, "migrate-receive", false, "act as `xl migrate-receive` on stdin/stdout")
	fs.BoolVar(&a.quiet, "q", false, "no progress lines")
	fs.StringVar(&a.listen, "listen", "", "receive migrations from `xsrsave -to` on this address, e.g. :7000")
	a.net.Register(fs)
	if _, code, ok := c.Parse(argv); !ok {
		return nil, code
	}
	if a.receive {
		return a, -1
	}
	if a.listen != "" {
		if fs.NArg() != 0 {
			return nil, c.UsageError("-listen takes no FILE")
		}
		if err := a.net.Check(); err != nil {
			return nil, c.UsageError("%v", err)
		}
		return a, -1
	}
	if fs.NArg() != 1 {
		return nil, c.UsageError("want one FILE (or -)")
	}
	a.file = fs.Arg(0)
	return a, -1
}

func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a, rc := parse(argv, stderr)
	if rc >= 0 {
		return rc
	}
	if a.listen != "" {
		if err := listen(context.Background(), a, stderr); err != nil {
			fmt.Fprintln(stderr, "xsrrestore:", err)
			return 1
		}
		return 0
	}
	opt := migrate.RestoreOptions{Name: a.name, Paused: a.paused}
	if !a.quiet {
		opt.Log = stderr
	}
	if a.config != "" {
		b, err := os.ReadFile(a.config)
		if err != nil {
			fmt.Fprintln(stderr, "xsrrestore:", err)
			return 1
		}
		opt.Config = b
	}
	var in io.Reader = stdin
	if !a.receive && a.file != "-" {
		f, err := os.Open(a.file)
		if err != nil {
			fmt.Fprintln(stderr, "xsrrestore:", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	if err := restore(context.Background(), a, in, stdout, stderr, opt); err != nil {
		fmt.Fprintln(stderr, "xsrrestore:", err)
		return 1
	}
	return 0
}
