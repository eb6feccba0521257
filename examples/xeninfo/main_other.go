//go:build !linux

package main

import (
	"errors"
	"io"
)

func start(io.Writer, bool) error { return errors.New("xeninfo needs Linux dom0 (/dev/xen/privcmd)") }
