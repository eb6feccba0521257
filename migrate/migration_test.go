package migrate

import (
	"context"

	"bytes"
	"errors"
	"github.com/xensr/xensr/stream/xl"
	"io"
	"testing"
)

// fakeReceiver plays `xl migrate-receive`: banner, read the whole image,
// ready, wait for permission, report status.
func fakeReceiver(t *testing.T, fromSender io.Reader, toSender io.WriteCloser, status byte, img *bytes.Buffer, done chan error) {
	go func() {
		defer toSender.Close()
		io.WriteString(toSender, xl.MigrateBanner)
		// Read the image up to the end: parse what arrived so far after
		// every chunk until it is complete.
		buf := make([]byte, 1<<16)
		for {
			n, err := fromSender.Read(buf)
			img.Write(buf[:n])
			if _, perr := parseImage(img.Bytes()); perr == nil {
				break
			}
			if err != nil {
				done <- err
				return
			}
		}
		io.WriteString(toSender, xl.MigrateReady)
		if err := expect(fromSender, xl.MigratePermission); err != nil {
			done <- err
			return
		}
		io.WriteString(toSender, xl.MigrateReport)
		toSender.Write([]byte{status})
		if status != 0 {
			io.WriteString(toSender, xl.MigratePermission)
		}
		done <- nil
	}()
}

func TestMigrationProtocol(t *testing.T) {
	for _, status := range []byte{0, 3} {
		f := newFakeDomain(2000)
		sr, sw := io.Pipe() // sender -> receiver
		rr, rw := io.Pipe() // receiver -> sender
		var img bytes.Buffer
		done := make(chan error, 1)
		fakeReceiver(t, sr, rw, status, &img, done)
		var names []string
		var copied bytes.Buffer
		m := &Migration{Send: sw, Recv: rr, Copy: &copied, Name: "guest3", Rename: func(to string) error { names = append(names, to); return nil }}
		_, err := m.Run(context.Background(), NewSaver(f, SaveOptions{Live: true, Config: []byte(testConfig)}))
		if rerr := <-done; rerr != nil {
			t.Fatalf("receiver: %v", rerr)
		}
		if !bytes.Equal(copied.Bytes(), img.Bytes()) {
			t.Errorf("stream copy: %d bytes, receiver got %d", copied.Len(), img.Len())
		}
		if status == 0 {
			if err != nil || !f.destroyed || f.resumes != 0 {
				t.Fatalf("status 0: err %v destroyed %v resumes %d", err, f.destroyed, f.resumes)
			}
			if len(names) != 1 || names[0] != "guest3--migratedaway" {
				t.Errorf("renames %v", names)
			}
		} else {
			if err == nil || f.destroyed || f.resumes != 1 || f.info.Suspended() {
				t.Fatalf("status %d: err %v destroyed %v resumes %d", status, err, f.destroyed, f.resumes)
			}
			if len(names) != 2 || names[1] != "guest3" {
				t.Errorf("renames %v", names)
			}
		}
	}
}

func TestMigrationReceiverDiesResumes(t *testing.T) {
	f := newFakeDomain(2000)
	sr, sw := io.Pipe()
	rr, rw := io.Pipe()
	go func() { // banner, then dies mid-stream
		io.WriteString(rw, xl.MigrateBanner)
		io.CopyN(io.Discard, sr, 1<<20)
		sr.CloseWithError(errors.New("receiver died"))
		rw.Close()
	}()
	m := &Migration{Send: sw, Recv: rr, Name: "guest3"}
	_, err := m.Run(context.Background(), NewSaver(f, SaveOptions{Live: true, Config: []byte(testConfig)}))
	var se *SaveError
	if !errors.As(err, &se) || !se.Resumed || f.destroyed || f.info.Suspended() || f.logDirty {
		t.Fatalf("err %v destroyed %v suspended %v", err, f.destroyed, f.info.Suspended())
	}
}

func TestMigrationBadBanner(t *testing.T) {
	f := newFakeDomain(10)
	m := &Migration{Send: io.Discard, Recv: bytes.NewReader([]byte("ssh: connect failed\n"))}
	_, err := m.Run(context.Background(), NewSaver(f, SaveOptions{}))
	var pe *ProtocolError
	if !errors.As(err, &pe) || f.info.Suspended() || f.maps != 0 {
		t.Fatalf("err %v", err)
	}
}

func TestPrepareConfig(t *testing.T) {
	in := []byte("{\n  \"c_info\": {\"type\": \"pvh\", \"name\": \"guest3\", \"domid\": 5},\n  \"b_info\": {\"max_memkb\": 131072}\n}\x00")
	out, err := PrepareConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("domid")) || !bytes.Contains(out, []byte(`"max_memkb": 131072`)) || ConfigName(out) != "guest3" {
		t.Fatalf("prepared config:\n%s", out)
	}
	keep := []byte(`{"c_info":{"name":"g"}}`)
	if out, _ := PrepareConfig(keep); !bytes.Equal(out, keep) {
		t.Fatalf("a config without domid must pass unchanged: %s", out)
	}
	if _, err := PrepareConfig([]byte("not json")); err == nil {
		t.Fatal("accepted non-JSON")
	}
}
