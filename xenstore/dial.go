package xenstore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// DefaultRundir is where xenstored puts its socket unless XENSTORED_RUNDIR
// says otherwise.
const DefaultRundir = "/run/xenstored"

// SocketPath returns the daemon's unix socket path as libxenstore computes
// it: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
// /run/xenstored/socket.
func SocketPath() string {
	if p := os.Getenv("XENSTORED_PATH"); p != "" {
		return p
	}
	dir := os.Getenv("XENSTORED_RUNDIR")
	if dir == "" {
		dir = DefaultRundir
	}
	return filepath.Join(dir, "socket")
}

// DevicePath returns the xenbus device path as libxenstore computes it on
// Linux: $XENSTORED_PATH, else /dev/xen/xenbus if it exists, else
// /proc/xen/xenbus.
func DevicePath() string {
	if p := os.Getenv("XENSTORED_PATH"); p != "" {
		return p
	}
	if _, err := os.Stat("/dev/xen/xenbus"); err == nil {
		return "/dev/xen/xenbus"
	}
	return "/proc/xen/xenbus"
}

// DialPath connects to path: a unix socket if it is one, else a device
// (/dev/xen/xenbus) opened read-write.
func DialPath(ctx context.Context, path string) (io.ReadWriteCloser, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&fs.ModeSocket != 0 {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

// DialDefault connects the way libxenstore's xs_open does: the daemon's
// socket first, then the xenbus device.
func DialDefault(ctx context.Context) (io.ReadWriteCloser, error) {
	conn, err := DialPath(ctx, SocketPath())
	if err == nil {
		return conn, nil
	}
	conn, err2 := DialPath(ctx, DevicePath())
	if err2 == nil {
		return conn, nil
	}
	return nil, errors.Join(err, err2)
}

// Dial returns a Client connected like libxenstore's xs_open, able to
// Reconnect the same way. Options{Redial: true}.Dial(ctx, DialDefault)
// makes one that re-dials by itself.
func Dial(ctx context.Context) (*Client, error) {
	return DialWith(ctx, DialDefault)
}
