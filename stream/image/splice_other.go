//go:build !linux

package image

import "io"

// A splicer is Linux-only (splice(2)); elsewhere a pipe's page contents
// are read through the skipReader's scratch buffer.
type splicer struct{}

// newSplicer returns nil: there is no splice(2).
func newSplicer(io.Reader) *splicer { return nil }

// discard is never called: newSplicer returns nil.
func (*splicer) discard(int) (int, error) { return 0, io.ErrUnexpectedEOF }
