package migrate

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/xensr/xensr/stream/xl"
)

// TestGoToGoMigration runs the Go sender (Migration, live) against the Go
// receiver (Receive) over pipes, both on fakes: the receiver's domain has
// the sender's final memory and runs under the original name, the sender's
// domain is destroyed.
func TestGoToGoMigration(t *testing.T) {
	f := newFakeDomain(3000)
	f.onClean = func(f *fakeDomain, call int) {
		for i := 0; i < 100/(call+1); i++ {
			f.setPage(uint64(i*5), 0x3c, uint32(call+1))
		}
	}
	sr, sw := io.Pipe() // sender -> receiver
	rr, rw := io.Pipe() // receiver -> sender
	b, ts := newFakeBuilder(), newFakeToolstack()
	type result struct {
		r   *Restored
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := Receive(context.Background(), b, ts, sr, rw, RestoreOptions{})
		rw.Close()
		done <- result{r, err}
	}()
	var names []string
	m := &Migration{Send: sw, Recv: rr, Name: "guest3", Rename: func(to string) error { names = append(names, to); return nil }}
	_, err := m.Run(context.Background(), NewSaver(f, SaveOptions{Live: true, Config: []byte(restoreConfig)}))
	sw.Close()
	res := <-done
	if err != nil || res.err != nil {
		t.Fatalf("sender: %v; receiver: %v", err, res.err)
	}
	if !f.destroyed || res.r.Name != "guest3" {
		t.Fatalf("source destroyed %v, receiver's name %q", f.destroyed, res.r.Name)
	}
	checkRestored(t, f, b, ts, res.r)
}

// TestReceiveSenderDies: the sender disappears mid-stream: nothing is left
// at the receiver.
func TestReceiveSenderDies(t *testing.T) {
	_, img := restoreImage(t, 2000, false)
	b, ts := newFakeBuilder(), newFakeToolstack()
	_, err := Receive(context.Background(), b, ts, &cutReader{r: bytes.NewReader(img), n: len(img) / 2}, io.Discard, RestoreOptions{})
	if err == nil || leftovers(b, ts) != "" || b.creates != 1 {
		t.Fatalf("err %v, left %s", err, leftovers(b, ts))
	}
}

// TestReceiveNoPermission: the sender vanishes after "ready" (it resumed
// its copy): the receiver reports failure, destroys its own copy, leaves
// nothing and hands the domain back, as xl migrate-receive does.
func TestReceiveNoPermission(t *testing.T) {
	_, img := restoreImage(t, 1500, false)
	b, ts := newFakeBuilder(), newFakeToolstack()
	var out bytes.Buffer
	_, err := Receive(context.Background(), b, ts, bytes.NewReader(img), &out, RestoreOptions{})
	if err == nil || b.creates != 1 || leftovers(b, ts) != "" {
		t.Fatalf("err %v, created %d, left %s", err, b.creates, leftovers(b, ts))
	}
	want := xl.MigrateBanner + xl.MigrateReady + xl.MigrateReport + "\x01" + xl.MigratePermission
	if out.String() != want {
		t.Fatalf("receiver said %q, want %q", out.String(), want)
	}
}
