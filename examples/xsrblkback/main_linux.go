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
	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/privcmd"
	"github.com/xensr/xensr/xenstore"
	"golang.org/x/sys/unix"
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
	pc, err := privcmd.Open()
	if err != nil {
		return err
	}
	defer pc.Close()
	srv := server{xs: xs, tr: grant.NewTracker(gnt, nil), ev: ev, ringFrame: ringFrameResolver(pc), log: stderr}
	if o.copy {
		srv.copier = gnt
	}
	b, err := srv.serve(ctx, f, uint64(st.Size())/blkif.SectorSize, o)
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

// ringFrameResolver reads guests' grant tables through privcmd
// (XENMEM_acquire_resource of the shared grant-table frames).
func ringFrameResolver(pc *privcmd.Device) grant.Resolver {
	return blkback.TableResolver(func(dom, idx uint32) ([]byte, func() error, error) {
		mem, err := pc.MmapResource(uint32(dom), hypercall.ResourceGrantTable, hypercall.ResourceGrantTableIDShared, idx, 1, unix.PROT_READ)
		if err != nil {
			return nil, nil, err
		}
		return mem, func() error { return privcmd.Munmap(mem) }, nil
	})
}

// server is what the backend runs through: xenstore, the grant Tracker,
// the event channels, and the ring-frame resolver (nil: frames unknown).
type server struct {
	xs        *xenstore.Client
	tr        *grant.Tracker
	ev        blkback.Events
	ringFrame grant.Resolver
	copier    blkback.Copier // nil: map the data pages
	log       io.Writer
	started   func(*blkback.Backend) // if set, called before the backend runs
}

// serve runs the backend through blkback.Attach (nodes written, served,
// removed) until the guest closes the disk or ctx ends.
func (s server) serve(ctx context.Context, disk blkback.Disk, sectors uint64, o options) (*blkback.Backend, error) {
	logf := func(string, ...any) {}
	if o.verbose {
		logf = func(format string, a ...any) { fmt.Fprintf(s.log, format+"\n", a...) }
	}
	cfg := blkback.Config{Store: s.xs, Device: o.device(), Disk: disk, Sectors: sectors, ReadOnly: o.readOnly,
		Tracker: s.tr, Events: s.ev, RingFrame: s.ringFrame, Copy: s.copier, Logf: logf}
	return blkback.Attach(ctx, cfg, o.vdev, o.file, o.typ, s.started)
}
