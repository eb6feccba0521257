//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/migrate/transport"
)

func restore(ctx context.Context, a *args, in io.Reader, out, stderr io.Writer, opt migrate.RestoreOptions) error {
	// SIGINT/SIGTERM cancel the restore: the half-built domain goes away.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, unix.SIGTERM)
	defer stop()
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	h, err := migrate.OpenHost(octx)
	cancel()
	if err != nil {
		return err
	}
	defer h.Close()
	t := time.Now()
	var r *migrate.Restored
	if a.receive {
		r, err = migrate.Receive(ctx, h.Builder(), h.Toolstack(), in, out, opt)
	} else {
		r, err = h.Restore(ctx, in, opt)
	}
	if err != nil {
		return err
	}
	if !a.quiet {
		st := r.Stats
		fmt.Fprintf(stderr, "xsrrestore: restored domain %d (%s): %d pages, %d bytes of stream in %.3f s (populate %.3f s, copy %.3f s)\n",
			r.Domid, r.Name, st.Pages, st.Bytes, time.Since(t).Seconds(), st.Populate.Seconds(), st.Copy.Seconds())
	}
	return nil
}

// listen receives migrations from `xsrsave -to` until SIGINT/SIGTERM (or
// one with -once).
func listen(ctx context.Context, a *args, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, unix.SIGTERM)
	defer stop()
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	h, err := migrate.OpenHost(octx)
	cancel()
	if err != nil {
		return err
	}
	defer h.Close()
	logf := func(f string, v ...any) {
		if !a.quiet {
			fmt.Fprintf(stderr, f+"\n", v...)
		}
	}
	err = transport.ListenHost(ctx, h, a.listen, &a.net, logf, func(r *transport.Received, err error) {
		if err != nil {
			fmt.Fprintln(stderr, "xsrrestore:", err)
			return
		}
		logf("xsrrestore: %s from %s runs here: %s encoding, %d bytes on the wire for %d of stream in %.3f s",
			r.Name, r.Remote, r.Encoding, r.WireBytes, r.StreamBytes, r.Total.Seconds())
	})
	if ctx.Err() != nil {
		return nil // stopped by a signal
	}
	return err
}
