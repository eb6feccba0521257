//go:build linux

package main

import (
	"net"
	"os"
)

// dialXenstore connects to xenstored's unix socket (XENSTORED_PATH or
// /run/xenstored/socket), or else to /dev/xen/xenbus.
func dialXenstore() (*xsConn, error) {
	path := os.Getenv("XENSTORED_PATH")
	if path == "" {
		path = "/run/xenstored/socket"
	}
	if c, err := net.Dial("unix", path); err == nil {
		return &xsConn{rw: c}, nil
	}
	f, err := os.OpenFile("/dev/xen/xenbus", os.O_RDWR, 0)
	if err != nil {
		return nil, errNoXenstore
	}
	return &xsConn{rw: f}, nil
}
