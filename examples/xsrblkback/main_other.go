//go:build !linux

package main

import (
	"errors"
	"io"
)

func start(options, io.Writer, io.Writer) error {
	return errors.New("xsrblkback needs Linux dom0 (/dev/xen/gntdev, /dev/xen/evtchn)")
}
