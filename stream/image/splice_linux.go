//go:build linux

package image

import (
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// devNull is a descriptor open on /dev/null for writing, opened once per
// process and kept open: the sink of every splice.
var devNull = sync.OnceValues(func() (*os.File, error) {
	return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
})

// A splicer passes over a pipe's bytes inside the kernel: splice(2) moves
// them from the pipe to /dev/null, so they are never copied into the
// process.
type splicer struct {
	in   syscall.RawConn
	null int
}

// newSplicer returns a splicer for r when r is an *os.File open on a pipe
// (anonymous or named) and /dev/null can be opened, nil otherwise.
func newSplicer(r io.Reader) *splicer {
	f, ok := r.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return nil
	}
	in, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	null, err := devNull()
	if err != nil {
		return nil
	}
	return &splicer{in: in, null: int(null.Fd())}
}

// discard passes over the next n bytes of the pipe, splicing again after a
// short splice, and returns how many it passed over: fewer than n only with
// an error, io.EOF when the pipe's writers are gone.
func (sp *splicer) discard(n int) (int, error) {
	done := 0
	for done < n {
		var m int64
		var serr error
		err := sp.in.Read(func(fd uintptr) bool {
			for {
				m, serr = unix.Splice(int(fd), nil, sp.null, nil, n-done, unix.SPLICE_F_MOVE)
				if serr != unix.EINTR {
					break
				}
			}
			// An empty non-blocking pipe: wait until it is readable.
			return serr != unix.EAGAIN
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			m = 0
		}
		done += int(m)
		if err != nil {
			return done, err
		}
		if m == 0 {
			return done, io.EOF
		}
	}
	return done, nil
}
