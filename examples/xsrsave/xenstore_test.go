package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// fakeXenstored answers requests on conn from a map, xenstored-style.
func fakeXenstored(conn net.Conn, store map[string]string, resumed *[]string) {
	defer conn.Close()
	h := make([]byte, 16)
	for {
		if _, err := io.ReadFull(conn, h); err != nil {
			return
		}
		typ, id, n := binary.LittleEndian.Uint32(h), binary.LittleEndian.Uint32(h[4:]), binary.LittleEndian.Uint32(h[12:])
		body := make([]byte, n)
		io.ReadFull(conn, body)
		parts := strings.SplitN(string(body), "\x00", 2)
		reply, rtyp := "OK\x00", typ
		switch typ {
		case xsRead:
			v, ok := store[parts[0]]
			if !ok {
				reply, rtyp = "ENOENT\x00", xsError
			} else {
				reply = v
			}
		case xsWrite:
			store[parts[0]] = parts[1]
		case xsRm:
			delete(store, parts[0])
		case xsResume:
			*resumed = append(*resumed, parts[0])
		}
		// A stray message with another id first: the client must skip it.
		stray := make([]byte, 16)
		binary.LittleEndian.PutUint32(stray, 15)
		binary.LittleEndian.PutUint32(stray[4:], id+1000)
		conn.Write(stray)
		out := make([]byte, 16, 16+len(reply))
		binary.LittleEndian.PutUint32(out, rtyp)
		binary.LittleEndian.PutUint32(out[4:], id)
		binary.LittleEndian.PutUint32(out[12:], uint32(len(reply)))
		conn.Write(append(out, reply...))
	}
}

func TestXenstoreClient(t *testing.T) {
	a, b := net.Pipe()
	store := map[string]string{"/local/domain/3/name": "guest3"}
	var resumed []string
	go fakeXenstored(b, store, &resumed)
	c := &xsConn{rw: a}
	defer c.Close()
	if v, err := c.Read("/local/domain/3/name"); err != nil || v != "guest3" {
		t.Fatalf("Read: %q %v", v, err)
	}
	if err := c.Write("/local/domain/3/control/shutdown", "suspend"); err != nil || store["/local/domain/3/control/shutdown"] != "suspend" {
		t.Fatalf("Write: %v %v", err, store)
	}
	_, err := c.Read("/nope")
	var xe *XenstoreError
	if !errors.As(err, &xe) || xe.Name != "ENOENT" || xe.Path != "/nope" {
		t.Fatalf("Read missing: %v", err)
	}
	if err := c.Resume(3); err != nil || len(resumed) != 1 || resumed[0] != "3" {
		t.Fatalf("Resume: %v %v", err, resumed)
	}
	if err := c.Write("/big", strings.Repeat("x", 5000)); err == nil {
		t.Fatal("oversized payload was sent")
	}
}
