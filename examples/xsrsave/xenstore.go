package main

// A minimal xenstore client: sequential requests on one connection, no
// watches, no transactions. It stands in for the project's xenstore
// package, which was not yet available when this program was written.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// xenstore wire message types (xen/include/public/io/xs_wire.h).
const (
	xsDirectory = 1
	xsRead      = 2
	xsWrite     = 11
	xsRm        = 13
	xsError     = 16
	xsResume    = 18
	xsMaxLoad   = 4096
)

// XenstoreError is an error reply from xenstored.
type XenstoreError struct {
	Op   uint32
	Path string
	Name string // e.g. "ENOENT"
}

func (e *XenstoreError) Error() string {
	return fmt.Sprintf("xenstore op %d %s: %s", e.Op, e.Path, e.Name)
}

type xsConn struct {
	rw    io.ReadWriteCloser
	reqID uint32
	hdr   [16]byte
}

func (c *xsConn) Close() error { return c.rw.Close() }

func (c *xsConn) request(op uint32, what string, payload []byte) ([]byte, error) {
	if len(payload) > xsMaxLoad {
		return nil, fmt.Errorf("xenstore op %d %s: payload %d bytes > %d", op, what, len(payload), xsMaxLoad)
	}
	c.reqID++
	h := c.hdr[:]
	binary.LittleEndian.PutUint32(h[0:], op)
	binary.LittleEndian.PutUint32(h[4:], c.reqID)
	binary.LittleEndian.PutUint32(h[8:], 0)
	binary.LittleEndian.PutUint32(h[12:], uint32(len(payload)))
	if _, err := c.rw.Write(append(h[:16:16], payload...)); err != nil {
		return nil, err
	}
	for {
		if _, err := io.ReadFull(c.rw, h); err != nil {
			return nil, err
		}
		typ, id, n := binary.LittleEndian.Uint32(h[0:]), binary.LittleEndian.Uint32(h[4:]), binary.LittleEndian.Uint32(h[12:])
		if n > xsMaxLoad {
			return nil, fmt.Errorf("xenstore reply of %d bytes", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.rw, body); err != nil {
			return nil, err
		}
		if id != c.reqID {
			continue // a stray reply (watch events are never registered)
		}
		if typ == xsError {
			return nil, &XenstoreError{Op: op, Path: what, Name: string(bytes.TrimRight(body, "\x00"))}
		}
		if typ != op {
			return nil, fmt.Errorf("xenstore op %d %s: reply type %d", op, what, typ)
		}
		return body, nil
	}
}

func (c *xsConn) Read(path string) (string, error) {
	b, err := c.request(xsRead, path, append([]byte(path), 0))
	return string(b), err
}

func (c *xsConn) Write(path, value string) error {
	_, err := c.request(xsWrite, path, append(append([]byte(path), 0), value...))
	return err
}

func (c *xsConn) Remove(path string) error {
	_, err := c.request(xsRm, path, append([]byte(path), 0))
	return err
}

func (c *xsConn) Directory(path string) ([]string, error) {
	b, err := c.request(xsDirectory, path, append([]byte(path), 0))
	if err != nil {
		return nil, err
	}
	s := strings.TrimRight(string(b), "\x00")
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, "\x00"), nil
}

// Resume tells xenstored a suspended domain runs again (XS_RESUME).
func (c *xsConn) Resume(domid uint32) error {
	_, err := c.request(xsResume, "resume", append([]byte(strconv.FormatUint(uint64(domid), 10)), 0))
	return err
}

var errNoXenstore = errors.New("xenstore: no socket and no /dev/xen/xenbus")
