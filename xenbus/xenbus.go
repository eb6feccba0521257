// Package xenbus is the xenstore side of Xen's split devices: the XenbusState
// values of xen/include/public/io/xenbus.h that a frontend and a backend
// step through, the paths a toolstack gives a device, and the toolstack's
// part of adding one: the frontend and backend directories with their
// owners and permissions, written in one transaction (as libxl's
// libxl__device_generic_add does).
package xenbus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/xensr/xensr/xenstore"
)

// A State is a XenbusState.
type State int

// The states.
const (
	StateUnknown       State = 0
	StateInitialising  State = 1
	StateInitWait      State = 2
	StateInitialised   State = 3
	StateConnected     State = 4
	StateClosing       State = 5
	StateClosed        State = 6
	StateReconfiguring State = 7
	StateReconfigured  State = 8
)

var stateNames = [...]string{"Unknown", "Initialising", "InitWait", "Initialised", "Connected", "Closing", "Closed", "Reconfiguring", "Reconfigured"}

// String returns the name without the XenbusState prefix.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ParseState parses a "state" node's value.
func ParseState(b []byte) (State, error) {
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > int(StateReconfigured) {
		return StateUnknown, fmt.Errorf("xenbus: state %q is not a XenbusState", b)
	}
	return State(n), nil
}

// A Store is what the functions here need of a xenstore connection or
// transaction (*xenstore.Client and *xenstore.Tx have these methods).
type Store interface {
	Read(ctx context.Context, path string) ([]byte, error)
	Write(ctx context.Context, path string, value []byte) error
	Mkdir(ctx context.Context, path string) error
	Rm(ctx context.Context, path string) error
	SetPerms(ctx context.Context, path string, perms []xenstore.Perm) error
}

// A Device names one split device.
type Device struct {
	Kind       string // "vbd", "vif", ...: the frontend's directory
	BackKind   string // the backend's directory when it differs ("qdisk" for QEMU's); "" means Kind
	BackDomid  uint32 // the domain running the backend
	FrontDomid uint32 // the guest
	Devid      uint32 // the device number (for a vbd, the encoded virtual device)
}

// BackendPath is /local/domain/BACK/backend/KIND/FRONT/DEVID (BackKind
// when set).
func (d Device) BackendPath() string {
	k := d.BackKind
	if k == "" {
		k = d.Kind
	}
	return fmt.Sprintf("/local/domain/%d/backend/%s/%d/%d", d.BackDomid, k, d.FrontDomid, d.Devid)
}

// FrontendPath is /local/domain/FRONT/device/KIND/DEVID.
func (d Device) FrontendPath() string {
	return fmt.Sprintf("/local/domain/%d/device/%s/%d", d.FrontDomid, d.Kind, d.Devid)
}

// An Entry is one node written under a device directory.
type Entry struct{ Key, Value string }

// Add writes the device's two directories, replacing any left over: the
// frontend directory owned by the guest and readable by the backend domain,
// holding "backend" and front; the backend directory owned by the backend
// domain and readable by the guest, holding "frontend" and back. The
// entries should include "state" (StateInitialising) on each side.
func Add(ctx context.Context, s Store, d Device, back, front []Entry) error {
	fp, bp := d.FrontendPath(), d.BackendPath()
	steps := []func() error{
		func() error { return rmIfAny(ctx, s, fp) },
		func() error { return s.Mkdir(ctx, fp) },
		func() error {
			return s.SetPerms(ctx, fp, []xenstore.Perm{{Domain: d.FrontDomid, Access: xenstore.AccessNone}, {Domain: d.BackDomid, Access: xenstore.AccessRead}})
		},
		func() error { return s.Write(ctx, fp+"/backend", []byte(bp)) },
		func() error { return writeAll(ctx, s, fp, front) },
		func() error { return rmIfAny(ctx, s, bp) },
		func() error { return s.Mkdir(ctx, bp) },
		func() error {
			return s.SetPerms(ctx, bp, []xenstore.Perm{{Domain: d.BackDomid, Access: xenstore.AccessNone}, {Domain: d.FrontDomid, Access: xenstore.AccessRead}})
		},
		func() error { return s.Write(ctx, bp+"/frontend", []byte(fp)) },
		func() error { return writeAll(ctx, s, bp, back) },
	}
	for _, st := range steps {
		if err := st(); err != nil {
			return fmt.Errorf("xenbus: adding %s %d of dom%d: %w", d.Kind, d.Devid, d.FrontDomid, err)
		}
	}
	return nil
}

func rmIfAny(ctx context.Context, s Store, p string) error {
	if err := s.Rm(ctx, p); err != nil && !isNoent(err) {
		return err
	}
	return nil
}

func isNoent(err error) bool { return errors.Is(err, fs.ErrNotExist) }

func writeAll(ctx context.Context, s Store, dir string, es []Entry) error {
	for _, e := range es {
		if err := s.Write(ctx, dir+"/"+e.Key, []byte(e.Value)); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes both directories of the device (after the two ends have
// closed).
func Remove(ctx context.Context, s Store, d Device) error {
	if err := rmIfAny(ctx, s, d.FrontendPath()); err != nil {
		return err
	}
	return rmIfAny(ctx, s, d.BackendPath())
}

// ReadState reads dir/state; a missing node is StateClosed with no error
// (a directory removed is a device gone), as Linux's xenbus reads it.
func ReadState(ctx context.Context, s Store, dir string) (State, error) {
	b, err := s.Read(ctx, dir+"/state")
	if err != nil {
		if isNoent(err) {
			return StateClosed, nil
		}
		return StateUnknown, err
	}
	return ParseState(b)
}

// WriteState writes dir/state.
func WriteState(ctx context.Context, s Store, dir string, st State) error {
	return s.Write(ctx, dir+"/state", []byte(strconv.Itoa(int(st))))
}

// WaitState watches dir/state until ok accepts the state, and returns it;
// it gives up at ctx's end.
func WaitState(ctx context.Context, c *xenstore.Client, dir string, ok func(State) bool) (State, error) {
	w, err := c.Watch(ctx, dir+"/state")
	if err != nil {
		return StateUnknown, err
	}
	defer w.Stop(context.WithoutCancel(ctx))
	tick := time.NewTicker(time.Second) // a lost event costs a second, not the wait
	defer tick.Stop()
	for {
		st, err := ReadState(ctx, c, dir)
		if err != nil {
			return st, err
		}
		if ok(st) {
			return st, nil
		}
		select {
		case <-w.C:
		case <-tick.C:
		case <-ctx.Done():
			return st, fmt.Errorf("xenbus: %s/state stayed %v: %w", dir, st, ctx.Err())
		}
	}
}
