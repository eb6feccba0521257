//go:build !linux

package main

import "io"

// growPipe is Linux-only (F_SETPIPE_SZ); elsewhere pipes keep their size.
func growPipe(io.Reader) {}
