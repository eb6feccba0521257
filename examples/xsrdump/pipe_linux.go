//go:build linux

package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// pipeBuffer is the pipe buffer xsrdump asks for on a pipe input: the
// default 64 KiB costs a system call and a wake-up of each side per 64 KiB.
// 1 MiB is what an unprivileged process may ask for by default
// (/proc/sys/fs/pipe-max-size).
const pipeBuffer = 1 << 20

// growPipe enlarges the kernel buffer of r when it is a pipe; it is a hint,
// so failure is ignored.
func growPipe(r io.Reader) {
	f, ok := r.(*os.File)
	if !ok {
		return
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	if c, err := f.SyscallConn(); err == nil {
		c.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeBuffer) })
	}
}
