// Command xsrsave saves or live-migrates a running PVH (or HVM without a
// device model) Xen guest in pure Go, with no libxc, libxl or cgo, into an
// image that Xen's own `xl restore` and `xl migrate-receive` accept.
//
//	xsrsave -domid N -o FILE|-            save; destroy the domain on success
//	xsrsave -domid N -o FILE -c           checkpoint: leave it running
//	xsrsave -domid N -live -o FILE        log-dirty pre-copy rounds first
//	xsrsave -domid N -live -migrate CMD   run CMD (e.g. "xl migrate-receive")
//	                                      and migrate to it, as `xl migrate -s ""`
//	xsrsave -domid N -to HOST:PORT        live-migrate over the network to
//	                                      `xsrrestore -listen :PORT` (migrate/transport:
//	                                      -encodings, -rate, -policy, -tls-cert/-key/-ca)
//	xsrsave ... -skip-zero                zero pages of the first pass go as
//	                                      XALLOC records without data
//
// Progress (pages sent, dirty pages per round, rate) goes to stderr. On any
// failure the domain is resumed and left running.
package main

import (
	"fmt"
	"github.com/xensr/xensr/internal/cli"
	"io"
	"os"
	"time"

	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/migrate/transport"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// closingWriter closes its file after limit bytes: a broken output,
// injected mid-save to prove the domain survives it.
type closingWriter struct {
	f     *os.File
	limit int64
}

func (w *closingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.limit {
		n, _ := w.f.Write(p[:w.limit])
		w.limit = 0
		w.f.Close()
		return n, fmt.Errorf("injected failure: %w", os.ErrClosed)
	}
	n, err := w.f.Write(p)
	w.limit -= int64(n)
	return n, err
}

func run(args []string, stdout, stderr io.Writer) int {
	c := cli.New("xsrsave", "", `Saves a running PVH guest in pure Go into an xl save image (-o FILE|-),
live-migrates it into a receiver command (-migrate "xl migrate-receive"),
or over the network into xsrrestore -listen (-to HOST:PORT). Exactly one
of -o, -migrate and -to; -domid is required.`, stderr)
	fs := c.Flags
	domid := fs.Int("domid", -1, "domain to save")
	out := fs.String("o", "", "output file, - for stdout")
	live := fs.Bool("live", false, "pre-copy memory with log-dirty rounds while the guest runs")
	checkpoint := fs.Bool("c", false, "leave the domain running after the save")
	migrateCmd := fs.String("migrate", "", "receiver command run with sh -c, e.g. \"xl migrate-receive\"")
	rounds := fs.Int("max-rounds", 5, "pre-copy rounds after the first pass")
	target := fs.Uint64("target-dirty", 50, "stop pre-copy below this many dirty pages")
	configFile := fs.String("config", "", "libxl JSON configuration to embed (default: the one xl keeps for the domain)")
	suspendTimeout := fs.Duration("suspend-timeout", 60*time.Second, "how long to wait for the guest to suspend")
	streamCopy := fs.String("stream-copy", "", "with -migrate: also write the stream sent to the receiver into this file")
	skipZero := fs.Bool("skip-zero", false, "send all-zero pages of the first pass without data (XALLOC)")
	quiet := fs.Bool("q", false, "no progress lines")
	to := fs.String("to", "", "live-migrate over the network to `xsrrestore -listen` at HOST:PORT")
	var nf transport.Flags
	nf.Register(fs)
	if _, code, ok := c.ParseN(args, 0, 0); !ok {
		return code
	}
	dests := 0
	for _, d := range []string{*out, *migrateCmd, *to} {
		if d != "" {
			dests++
		}
	}
	if *domid <= 0 || dests != 1 {
		return c.UsageError("want -domid N and one of -o FILE|-, -migrate CMD, -to HOST:PORT")
	}
	if *to != "" {
		if err := nf.Check(); err != nil {
			return c.UsageError("%v", err)
		}
	}
	var progress io.Writer = stderr
	if *quiet {
		progress = nil
	}
	err := saveDomain(saveArgs{
		domid: uint32(*domid), out: *out, live: *live, checkpoint: *checkpoint,
		migrate: *migrateCmd, rounds: *rounds, target: *target, configFile: *configFile,
		suspendTimeout: *suspendTimeout, injectClose: injectCloseAfter, streamCopy: *streamCopy, skipZero: *skipZero,
		to: *to, net: &nf,
		stdout: stdout, stderr: stderr, progress: progress,
	})
	if err != nil {
		return c.Fail(err)
	}
	return cli.ExitOK
}

// injectCloseAfter, when not negative, makes the output file fail after that
// many bytes: the hook of the lab's failure cells, set by tests, never a flag.
var injectCloseAfter int64 = -1

type saveArgs struct {
	domid          uint32
	out            string
	live           bool
	checkpoint     bool
	migrate        string
	rounds         int
	target         uint64
	configFile     string
	suspendTimeout time.Duration
	injectClose    int64
	streamCopy     string
	skipZero       bool
	to             string           // -to HOST:PORT
	net            *transport.Flags // its options
	stdout, stderr io.Writer
	progress       io.Writer
}

func summary(w io.Writer, id uint32, st migrate.Stats, what string) {
	if w == nil {
		return
	}
	sec := st.Total.Seconds()
	if sec <= 0 {
		sec = 1e-9
	}
	fmt.Fprintf(w, "xsrsave: %s domain %d: %d pages (%.1f MiB) and %d zero pages without data in %d round(s), %d bytes of stream in %.3f s (%.1f MiB/s), downtime %.3f s\n",
		what, id, st.Pages, float64(st.Pages*migrate.PageSize)/(1<<20), st.Zero, len(st.Rounds), st.Bytes, sec,
		float64(st.Bytes)/(1<<20)/sec, st.Downtime.Seconds())
}
