package xenstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/xenstoretest"
)

// incr is a transaction body: read-modify-write of a counter.
func incr(ctx context.Context, key string) func(tx *xenstore.Tx) error {
	return func(tx *xenstore.Tx) error {
		v, err := tx.Read(ctx, key)
		if errors.Is(err, syscall.ENOENT) {
			v, err = []byte("0"), nil
		}
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(v))
		return tx.Write(ctx, key, []byte(strconv.Itoa(n+1)))
	}
}

// TestTxLostInLiveUpdate: C xenstored's live update keeps the connection
// and forgets its transactions. A commit of a forgotten transaction reports
// ErrTxLost (an EAGAIN); a Transaction whose body fails because its
// transaction vanished runs again and commits once. Without the abort
// probe, Transaction returned the body's ENOENT to the caller.
func TestTxLostInLiveUpdate(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := xenstore.DialWith(ctx, s.Dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	held, err := c.TransactionStart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held.Write(ctx, "/held", []byte("x"))
	s.ForgetTransactions()
	err = held.Commit(ctx)
	if !errors.Is(err, xenstore.ErrTxLost) || !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("commit of a forgotten transaction: %v", err)
	}
	if ok, _ := c.Exists(ctx, "/held"); ok {
		t.Fatal("the forgotten transaction's write was applied")
	}
	if n := c.OpenTransactions(); n != 0 {
		t.Fatalf("%d transactions still counted open", n)
	}

	runs := 0
	err = c.Transaction(ctx, func(tx *xenstore.Tx) error {
		runs++
		if runs == 1 {
			s.ForgetTransactions() // the update happens inside the body
		}
		return incr(ctx, "/ctr")(tx)
	})
	v, _ := c.Read(ctx, "/ctr")
	if err != nil || runs != 2 || string(v) != "1" {
		t.Fatalf("Transaction: %v after %d runs, counter %q", err, runs, v)
	}
}

// TestRedial: with Redial, a daemon that drops every connection (five
// times, while goroutines run transactions, reads and writes) costs no
// hung call; every transaction reported committed is applied exactly once (and
// one whose commit was in flight is reported with ErrClosed, not retried);
// the watch stays open, gets the new-watch event after each re-dial and
// fires for writes after the last one.
func TestRedial(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := xenstore.Options{Redial: true}.Dial(ctx, s.Dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Watch(ctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	<-w.C
	held, err := c.TransactionStart(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const workers = 4
	commits := make([]int, workers)
	unknown := make([]int, workers) // commits in flight when the connection dropped
	var mu sync.Mutex
	var failures []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				err := c.Transaction(cctx, incr(cctx, fmt.Sprintf("/ctr/%d", g)))
				if err == nil {
					commits[g]++
				} else if errors.Is(err, xenstore.ErrClosed) {
					unknown[g]++
				}
				_, rerr := c.Read(cctx, "/local/domain/0")
				ccancel()
				for _, e := range []error{err, rerr} {
					// A request in flight when the connection drops fails
					// with ErrClosed (it may have been applied); anything
					// else, a deadline above all, is a failure.
					if e != nil && !errors.Is(e, xenstore.ErrClosed) {
						mu.Lock()
						failures = append(failures, e)
						mu.Unlock()
					}
				}
			}
		}(g)
	}
	for i := 0; i < 5; i++ {
		time.Sleep(50 * time.Millisecond)
		s.Restart()
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(failures), failures[0])
	}
	total := 0
	for g := 0; g < workers; g++ {
		v, _ := c.Read(ctx, fmt.Sprintf("/ctr/%d", g))
		// Each reported commit is applied once; a commit whose reply was
		// lost with the connection may or may not be.
		n, _ := strconv.Atoi(string(v))
		if n < commits[g] || n > commits[g]+unknown[g] {
			t.Errorf("worker %d: counter %q, %d commits reported, %d unknown", g, v, commits[g], unknown[g])
		}
		total += commits[g]
	}
	if total == 0 {
		t.Fatal("no transaction committed")
	}
	if err := held.Commit(ctx); !errors.Is(err, xenstore.ErrTxLost) {
		t.Errorf("commit of a transaction of the old connection: %v", err)
	}
	// The watch: new-watch events after the re-dials, then a write's event.
	initial := 0
	for done := false; !done; {
		select {
		case ev, ok := <-w.C:
			if !ok {
				t.Fatalf("watch closed: %v", w.Err())
			}
			if ev.Path == "/w" {
				initial++
			}
		default:
			done = true
		}
	}
	if initial == 0 {
		t.Error("no new-watch event after re-dialling")
	}
	if err := c.Write(ctx, "/w/after", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.C:
		if ev.Path != "/w/after" {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no event after the re-dials")
	}
	t.Logf("%d transactions committed across 5 restarts; %d new-watch events", total, initial)
}

// TestNoRedial: without the option a dropped connection breaks the Client,
// as before (the control for TestRedial).
func TestNoRedial(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx := context.Background()
	c, err := xenstore.DialWith(ctx, s.Dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(ctx, "/"); err != nil { // the server has the connection
		t.Fatal(err)
	}
	s.Restart()
	time.Sleep(20 * time.Millisecond)
	if _, err := c.Read(ctx, "/"); !errors.Is(err, xenstore.ErrClosed) {
		t.Fatalf("Read after the drop: %v, want ErrClosed", err)
	}
}

// TestRedialClose: Close while re-dialling a daemon that is gone ends the
// waiting requests with ErrClosed.
func TestRedialClose(t *testing.T) {
	s := xenstoretest.NewServer()
	up := true
	var mu sync.Mutex
	dial := func(ctx context.Context) (xenstore.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			return nil, errors.New("daemon down")
		}
		return s.Dial(ctx)
	}
	ctx := context.Background()
	c, err := xenstore.Options{Redial: true}.Dial(ctx, dial)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "/"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	up = false
	mu.Unlock()
	s.Restart()
	done := make(chan error)
	go func() { _, err := c.Read(ctx, "/"); done <- err }()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, xenstore.ErrClosed) {
			t.Fatalf("waiting Read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waiting after Close")
	}
}
