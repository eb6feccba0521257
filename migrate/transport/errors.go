package transport

import (
	"errors"
	"fmt"

	"github.com/xensr/xensr/migrate"
)

// Phase is a stage of a migration, named in every error.
type Phase int

// The phases of a migration, in order.
const (
	// PhaseHandshake: preamble, hello, welcome or refusal. Nothing of the
	// domain has been touched or created on either side.
	PhaseHandshake Phase = iota + 1
	// PhasePrecopy: the stream up to the suspension (live rounds, or the
	// first part of a non-live save); the guest runs at the source.
	PhasePrecopy
	// PhaseStopAndCopy: the guest is suspended at the source and the rest of
	// the stream is sent.
	PhaseStopAndCopy
	// PhaseCommit: the stream is complete; READY, GO, RUNNING or FAILED
	// decide which copy runs.
	PhaseCommit
)

// String names the phase, e.g. "stop-and-copy".
func (p Phase) String() string {
	switch p {
	case PhaseHandshake:
		return "handshake"
	case PhasePrecopy:
		return "precopy"
	case PhaseStopAndCopy:
		return "stop-and-copy"
	case PhaseCommit:
		return "commit"
	}
	return fmt.Sprintf("phase %d", int(p))
}

// Error is a failed migration, on either side.
type Error struct {
	Side  string // "sender" or "receiver"
	Phase Phase
	// SourceRunning (sender side) says the guest runs at the source: it
	// was resumed or never stopped. False after GO when the receiver's
	// answer was lost: the source is left suspended, as xl leaves it.
	SourceRunning bool
	// Cleaned (receiver side) says nothing of the domain is left here.
	Cleaned bool
	Err     error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("migration %s: %s failed: %v", e.Side, e.Phase, e.Err)
	switch {
	case e.Side == "sender" && e.SourceRunning:
		s += " [guest running at the source]"
	case e.Side == "sender" && e.Phase >= PhasePrecopy:
		s += " [source left suspended]"
	case e.Side == "receiver" && e.Cleaned:
		s += " [nothing left at the target]"
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// RefusedError is a receiver's refusal of a hello.
type RefusedError struct {
	Code   byte // Refuse* constant
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused by the receiver (code %d): %s", e.Code, e.Reason)
}

// Is makes errors.Is(err, migrate.ErrNameExists) true for a refusal of the
// domain's name.
func (e *RefusedError) Is(target error) bool {
	return e.Code == RefuseName && target == migrate.ErrNameExists
}

// PeerError is a failure the other end reported: ABORT from a sender,
// FAILED from a receiver.
type PeerError struct {
	Kind   Kind
	Reason string
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("peer sent %v: %s", e.Kind, e.Reason)
}

// ErrTimeout is a peer that did not answer in time (a handshake deadline,
// or no frame within the I/O timeout).
var ErrTimeout = errors.New("transport: peer did not answer in time")
