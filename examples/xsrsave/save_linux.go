//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/migrate/transport"
)

// lockedWriter serialises writes from our progress and the receiver's
// stderr copier.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func saveDomain(a saveArgs) error {
	if a.migrate != "" {
		lw := &lockedWriter{w: a.stderr}
		a.stderr = lw
		if a.progress != nil {
			a.progress = lw
		}
	}
	// SIGINT/SIGTERM cancel the save: the guest is resumed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	h, err := migrate.OpenHost(octx)
	cancel()
	if err != nil {
		return err
	}
	defer h.Close()
	d := h.Domain(a.domid)
	d.SuspendTimeout = a.suspendTimeout
	var config []byte
	if a.configFile != "" {
		if config, err = os.ReadFile(a.configFile); err == nil {
			config, err = migrate.PrepareConfig(config)
		}
	} else {
		config, err = d.Config()
	}
	if err != nil {
		return err
	}
	major, minor, err := h.X.Version()
	if err != nil {
		return fmt.Errorf("xen_version: %w", err)
	}
	if a.to != "" {
		logf := func(f string, v ...any) {
			if a.progress != nil {
				fmt.Fprintf(a.progress, f+"\n", v...)
			}
		}
		res, err := transport.SendDomain(ctx, h, a.domid, a.to, a.net, migrate.SaveOptions{
			Policy: migrate.RoundsPolicy(a.rounds, a.target), SkipZero: a.skipZero,
			Config: config, XenMajor: major, XenMinor: minor, Log: a.progress,
		}, logf)
		if err != nil {
			return err
		}
		summary(a.progress, a.domid, res.Save, "migrated")
		logf("xsrsave: %s encoding, %d bytes on the wire for %d of stream, %.3f s in all, downtime %.3f s (suspend to running at the target)",
			res.Encoding, res.WireBytes, res.StreamBytes, res.Total.Seconds(), res.Downtime.Seconds())
		return nil
	}
	s := migrate.NewSaver(d, migrate.SaveOptions{
		Live: a.live, Policy: migrate.RoundsPolicy(a.rounds, a.target), SkipZero: a.skipZero,
		Config: config, XenMajor: major, XenMinor: minor, Log: a.progress,
	})
	logf := func(f string, v ...any) {
		if a.progress != nil {
			fmt.Fprintf(a.progress, f+"\n", v...)
		}
	}

	if a.migrate != "" {
		cmd := exec.Command("/bin/sh", "-c", a.migrate)
		send, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		recv, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = a.stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("migration receiver: %w", err)
		}
		var streamCopy io.Writer
		if a.streamCopy != "" {
			cf, err := os.Create(a.streamCopy)
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				return err
			}
			defer cf.Close()
			streamCopy = cf
		}
		m := &migrate.Migration{Send: send, Copy: streamCopy, Recv: recv, Name: migrate.ConfigName(config), Logf: logf,
			Rename: d.Rename}
		st, err := m.Run(ctx, s)
		send.Close()
		werr := cmd.Wait()
		if err != nil {
			return err
		}
		if werr != nil {
			logf("xsrsave: receiver exited: %v", werr)
		}
		summary(a.progress, a.domid, st, "migrated")
		return nil
	}

	var w io.Writer
	var f *os.File
	if a.out == "-" {
		w = a.stdout
	} else {
		if f, err = os.Create(a.out); err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if a.injectClose >= 0 {
		if f == nil {
			return fmt.Errorf("an injected close needs -o FILE")
		}
		w = &closingWriter{f: f, limit: a.injectClose}
	}
	st, err := s.Save(ctx, w)
	if err == nil && f != nil {
		err = f.Sync()
		if err != nil {
			s.Abort()
		}
	}
	if err != nil {
		return err
	}
	if a.checkpoint {
		if err := s.Abort(); err != nil {
			return err
		}
		summary(a.progress, a.domid, st, "checkpointed")
		return nil
	}
	if err := s.Commit(); err != nil {
		return fmt.Errorf("saved, but destroying the domain failed: %w", err)
	}
	summary(a.progress, a.domid, st, "saved")
	return nil
}
