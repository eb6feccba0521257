package migrate

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream/xl"
)

// ProtocolError is an unexpected message from the migration receiver.
type ProtocolError struct {
	Want string // the message expected
	Got  []byte // what arrived instead (possibly short)
	Err  error  // read error, if any
}

func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("migration receiver: waiting for %q: %v (got %q)", e.Want, e.Err, e.Got)
	}
	return fmt.Sprintf("migration receiver: expected %q, got %q", e.Want, e.Got)
}

// Unwrap returns the read error.
func (e *ProtocolError) Unwrap() error { return e.Err }

// expect reads exactly len(msg) bytes from r and checks they are msg.
func expect(r io.Reader, msg string) error {
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(r, buf)
	if err != nil {
		return &ProtocolError{Want: msg, Got: buf[:n], Err: err}
	}
	if !bytes.Equal(buf, []byte(msg)) {
		return &ProtocolError{Want: msg, Got: buf}
	}
	return nil
}

// Migration is the sender's side of xl's migration protocol around one
// save stream: banner, stream, ready, permission, report.
type Migration struct {
	Send io.Writer // to the receiver's stdin
	Recv io.Reader // from the receiver's stdout
	// Copy, if set, receives a copy of the save stream (not of the
	// protocol messages around it).
	Copy io.Writer
	// Rename renames the source domain (to "NAME--migratedaway" before the
	// receiver takes the name, back on failure); nil skips renaming.
	Rename func(to string) error
	Name   string // the domain's name
	Logf   func(string, ...any)
}

// Run performs the migration: the Saver saves into m.Send. It returns nil
// when the receiver reports its copy running; then the source has been
// destroyed (s.Commit). On any failure before the point of no return,
// including a cancelled ctx, the source domain is resumed.
func (m *Migration) Run(ctx context.Context, s *Saver) (Stats, error) {
	logf := m.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := expect(m.Recv, xl.MigrateBanner); err != nil {
		return Stats{}, err // nothing touched yet
	}
	var w io.Writer = m.Send
	if m.Copy != nil {
		w = io.MultiWriter(m.Send, m.Copy)
	}
	st, err := s.Save(ctx, w)
	if err != nil {
		return st, err // Save resumed the domain
	}
	if err := expect(m.Recv, xl.MigrateReady); err != nil {
		s.Abort()
		return st, fmt.Errorf("%w [domain resumed at the sender]", err)
	}
	logf("migrate: migration target has acknowledged the transfer")
	away := m.Name + "--migratedaway"
	if m.Rename != nil && m.Name != "" {
		if err := m.Rename(away); err != nil {
			s.Abort()
			return st, fmt.Errorf("rename to %s: %w [domain resumed at the sender]", away, err)
		}
	}
	// Point of no return: once "go" is sent, the receiver may run its copy.
	if _, err := io.WriteString(m.Send, xl.MigratePermission); err != nil {
		return st, fmt.Errorf("sending permission to go: %w (source left suspended as %s)", err, away)
	}
	if err := expect(m.Recv, xl.MigrateReport); err != nil {
		return st, fmt.Errorf("%w (source left suspended as %s)", err, away)
	}
	var rc [1]byte
	if _, err := io.ReadFull(m.Recv, rc[:]); err != nil {
		return st, fmt.Errorf("reading receiver status: %w (source left suspended as %s)", err, away)
	}
	if rc[0] != 0 {
		logf("migrate: migration target reports startup failure (status %d)", rc[0])
		if err := expect(m.Recv, xl.MigratePermission); err != nil {
			return st, fmt.Errorf("target failed (status %d) and gave no permission to resume: %w", rc[0], err)
		}
		if m.Rename != nil && m.Name != "" {
			m.Rename(m.Name)
		}
		if err := s.Abort(); err != nil {
			return st, err
		}
		return st, fmt.Errorf("migration target failed to start the domain (status %d); resumed at the sender", rc[0])
	}
	logf("migrate: migration target reports successful startup")
	return st, s.Commit()
}
