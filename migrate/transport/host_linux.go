//go:build linux

package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/xensr/xensr/migrate"
)

// SendDomain live-migrates domain domid of h to the receiver at addr
// (HOST:PORT) as the flags say: opt is the save's options (Config,
// XenMajor/XenMinor, Log...); Live is set here, and Policy when -policy rate
// is given or opt has none.
func SendDomain(ctx context.Context, h *migrate.Host, domid uint32, addr string, f *Flags, opt migrate.SaveOptions, logf func(string, ...any)) (Result, error) {
	s, err := f.Sender()
	if err != nil {
		return Result{}, err
	}
	if f.Policy == "rate" || opt.Policy == nil {
		if opt.Policy, err = f.PrecopyPolicy(); err != nil {
			return Result{}, err
		}
	}
	cfg, err := f.TLS(false, addr)
	if err != nil {
		return Result{}, err
	}
	d := h.Domain(domid)
	if opt.Config == nil {
		if opt.Config, err = d.Config(); err != nil {
			return Result{}, err
		}
	}
	name := migrate.ConfigName(opt.Config)
	if name == "" {
		return Result{}, errors.New("the domain's configuration has no name")
	}
	opt.Live = true
	s.Rename, s.Logf = d.Rename, logf
	conn, err := Dial(ctx, addr, cfg)
	if err != nil {
		return Result{}, &Error{Side: "sender", Phase: PhaseHandshake, SourceRunning: true, Err: err}
	}
	return s.Send(ctx, conn, d, name, opt)
}

// ListenHost receives domains into h on addr (":PORT") until ctx ends, or
// after the first migration with f.Once (then its outcome is returned).
// done, if set, is called with each outcome.
func ListenHost(ctx context.Context, h *migrate.Host, addr string, f *Flags, logf func(string, ...any), done func(*Received, error)) error {
	r, err := f.Receiver(HostTarget(h.Builder(), h.Toolstack()))
	if err != nil {
		return err
	}
	r.Logf = logf
	cfg, err := f.TLS(true, "")
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	if !f.Once {
		return r.Serve(ctx, l, done)
	}
	defer l.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		res, err := r.ServeConn(ctx, c)
		if done != nil {
			done(res, err)
		}
		var e *Error
		if errors.As(err, &e) && e.Phase == PhaseHandshake {
			continue // a stray peer: keep waiting for the migration
		}
		return err
	}
}
