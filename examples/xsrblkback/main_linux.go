//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/xensr/xensr/blkback"
	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/evtchn"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
)

func start(o options, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	flag := os.O_RDWR
	if o.readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(o.file, flag, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < blkif.SectorSize {
		return fmt.Errorf("%s: %d bytes, less than a sector", o.file, st.Size())
	}
	xs, err := xenstore.Dial(ctx)
	if err != nil {
		return err
	}
	defer xs.Close()
	gnt, err := grant.OpenDevice()
	if err != nil {
		return err
	}
	defer gnt.Close()
	ev, err := evtchn.Open()
	if err != nil {
		return err
	}
	defer ev.Close()
	b, err := Serve(ctx, xs, gnt, ev, f, uint64(st.Size())/blkif.SectorSize, o, stderr)
	if b != nil {
		s := b.Stats()
		fmt.Fprintf(stdout, "requests %d (errors %d): %d reads %d bytes, %d writes %d bytes, %d flushes\n",
			s.Requests, s.Errors, s.Reads, s.BytesRead, s.Writes, s.BytesWritten, s.Flushes)
	}
	if errors.Is(err, blkback.ErrClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Serve adds the device's nodes, runs the backend until the guest closes
// the disk or ctx ends, and removes the nodes.
func Serve(ctx context.Context, xs *xenstore.Client, m grant.Mapper, ev blkback.Events, disk blkback.Disk, sectors uint64, o options, logw io.Writer) (*blkback.Backend, error) {
	d := o.device()
	back, front := blkback.DiskEntries(d, o.vdev, o.file, o.typ, o.readOnly)
	if err := xs.Transaction(ctx, func(tx *xenstore.Tx) error { return xenbus.Add(ctx, tx, d, back, front) }); err != nil {
		return nil, err
	}
	defer xenbus.Remove(context.WithoutCancel(ctx), xs, d)
	logf := func(string, ...any) {}
	if o.verbose {
		logf = func(format string, a ...any) { fmt.Fprintf(logw, format+"\n", a...) }
	}
	b := blkback.New(blkback.Config{Store: xs, Device: d, Disk: disk, Sectors: sectors, ReadOnly: o.readOnly,
		Tracker: grant.NewTracker(m, nil), Events: ev, Logf: logf})
	return b, b.Run(ctx)
}
