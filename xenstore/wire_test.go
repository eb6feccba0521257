package xenstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"syscall"
	"testing"
	"time"
)

func FuzzReadMessage(f *testing.F) {
	f.Add(AppendMessage(nil, Message{Header{OpRead, 1, 0, 0}, []byte("/local/domain/0\x00")}))
	f.Add(AppendMessage(nil, Message{Header{OpWatchEvent, 0, 0, 0}, []byte("/a\x00tok\x00")}))
	f.Add(AppendMessage(nil, Message{Header{OpError, 7, 0, 0}, []byte("ENOENT\x00")}))
	f.Add(AppendMessage(nil, Message{Header{OpGetPerms, 2, 0, 0}, []byte("n0\x00r5\x00b7\x00")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var buf []byte
		for {
			m, nb, err := ReadMessage(r, buf, ReplyMax)
			buf = nb
			if err != nil {
				return
			}
			if len(m.Payload) > ReplyMax || int(m.Len) != len(m.Payload) {
				t.Fatalf("payload %d, header len %d", len(m.Payload), m.Len)
			}
			again := AppendMessage(nil, m)
			if m2, _, err := ReadMessage(bytes.NewReader(again), nil, ReplyMax); err != nil || !bytes.Equal(m2.Payload, m.Payload) || m2.Header != m.Header {
				t.Fatalf("re-encoding differs: %v", err)
			}
			for _, s := range splitNul(m.Payload) {
				ParsePerm(s)
			}
			if e := errorFromReply(m.Op, "", m.Payload); e.Error() == "" {
				t.Fatal("empty error text")
			}
		}
	})
}

func TestErrorMapping(t *testing.T) {
	e := errorFromReply(OpRead, "/x", []byte("ENOENT\x00"))
	if !errors.Is(e, fs.ErrNotExist) || !errors.Is(e, syscall.ENOENT) || errors.Is(e, syscall.EACCES) {
		t.Fatalf("%v", e)
	}
	if e := errorFromReply(OpWrite, "/x", []byte("EQUOTA\x00")); !errors.Is(e, EQUOTA) {
		t.Fatalf("%v", e)
	}
	if e := errorFromReply(OpWrite, "/x", []byte("EACCES\x00")); !errors.Is(e, fs.ErrPermission) {
		t.Fatalf("%v", e)
	}
	if _, err := DecodeHeader(AppendMessage(nil, Message{Header: Header{Op: OpRead}, Payload: make([]byte, PayloadMax+1)})); !errors.Is(err, ErrProtocol) {
		t.Fatalf("oversized header accepted: %v", err)
	}
}

// TestBrokenConnection checks that a dying daemon fails every waiter with
// ErrClosed, closes watches, and that Reconnect brings the client back.
func TestBrokenConnection(t *testing.T) {
	var server net.Conn
	dials := 0
	dial := func(ctx context.Context) (Conn, error) {
		a, b := net.Pipe()
		server = b
		dials++
		go func(b net.Conn) { // answer WATCH, then go silent
			m, _, err := ReadMessage(b, nil, PayloadMax)
			if err != nil {
				return
			}
			b.Write(AppendMessage(nil, Message{Header{m.Op, m.ReqID, 0, 0}, []byte("OK\x00")}))
			io.Copy(io.Discard, b)
		}(b)
		return a, nil
	}
	ctx := context.Background()
	c, err := DialWith(ctx, dial)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, "/x")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { _, err := c.Read(ctx, "/y"); done <- err }()
	}
	time.Sleep(50 * time.Millisecond)
	server.Close()
	for i := 0; i < 3; i++ {
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter got %v, want ErrClosed", err)
		}
	}
	if _, open := <-w.C; open || !errors.Is(w.Err(), ErrClosed) {
		t.Fatalf("watch not closed with ErrClosed: %v", w.Err())
	}
	if _, err := c.Read(ctx, "/z"); !errors.Is(err, ErrClosed) {
		t.Fatalf("request after break: %v", err)
	}
	if err := c.Reconnect(ctx); err != nil || dials != 2 || c.Err() != nil {
		t.Fatalf("Reconnect: %v (dials %d, err %v)", err, dials, c.Err())
	}
}

func TestContextCancel(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b) // a daemon that never answers
	c := NewClient(a)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Read(ctx, "/x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}
