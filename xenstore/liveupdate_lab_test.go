//go:build linux

package xenstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/migration"
)

// xenstoredBinary returns the real path of the C daemon in dom0.
func xenstoredBinary(t *testing.T) string {
	for _, p := range []string{"/usr/sbin/xenstored", "/usr/lib/xen-4.17/bin/xenstored"} {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
	}
	t.Fatal("no xenstored binary in dom0")
	return ""
}

// TestLabLiveUpdate runs `xenstore-control live-update` on the C xenstored
// (the new binary is the same one, started through a two-line wrapper that
// copies the state file the old daemon wrote before the new one reads and
// deletes it) while one client holds watches and an open transaction and
// goroutines hammer it with reads, writes, transactions and watches. It
// decodes the captured state: every node the test made with its
// permissions, every watch with its token, the connections; re-encodes it
// byte for byte; and checks that no call hung, every transaction committed
// exactly once and watches fire after the update.
func TestLabLiveUpdate(t *testing.T) {
	labtest.Require(t)
	d := labDaemon(t)
	out := labtest.OutDir(t)
	if d == "ocaml" {
		// Not attempted: it would put the daemon the other lab tests use at
		// risk, for a result Xen already states.
		t.Skip("oxenstored cannot live-update: Xen 4.17's SUPPORT.md says \"OCaml xenstored daemon ... Status, Liveupdate: Not functional\", and its dump is not the migration stream this package reads")
	}
	bin := xenstoredBinary(t)
	capture := filepath.Join(out, "xenstored-state.bin")
	wrapper := "/tmp/xensr-lu-xenstored"
	// xenstored 4.17 writes the state to xs_daemon_rootdir()/state_dump,
	// which is its run directory ($XENSTORED_RUNDIR or /var/run/xenstored);
	// the new daemon reads it and deletes it.
	script := fmt.Sprintf("#!/bin/sh\necho \"$0 $*\" > %s/wrapper.log\ncp \"${XENSTORED_RUNDIR:-/var/run/xenstored}/state_dump\" %s 2>>%s/wrapper.log\nexec %s \"$@\"\n", out, capture, out, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	c, err := xenstore.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := fmt.Sprintf("/xensr-lu/%d", time.Now().UnixNano())
	defer c.Rm(context.Background(), "/xensr-lu")

	// Nodes with permissions.
	nodes := []struct {
		path  string
		perms []xenstore.Perm
	}{
		{base + "/a", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessBoth}}},
		{base + "/b", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 5, Access: xenstore.AccessRead}}},
		{base + "/c/d", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}, {Domain: 7, Access: xenstore.AccessWrite}}},
	}
	for _, n := range nodes {
		if err := c.Write(ctx, n.path, []byte("value of "+n.path)); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPerms(ctx, n.path, n.perms); err != nil {
			t.Fatalf("SetPerms %s: %v", n.path, err)
		}
	}
	w1, err := c.Watch(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := c.Watch(ctx, base+"/b")
	if err != nil {
		t.Fatal(err)
	}
	held, err := c.TransactionStart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := held.Write(ctx, base+"/held", []byte("x")); err != nil {
		t.Fatal(err)
	}

	// The stress: readers/writers, transactions, a watcher, on the one client.
	const callTimeout = 30 * time.Second
	var hung, otherErr, commits atomic.Int64
	var errMu sync.Mutex
	var errs []string
	note := func(err error) {
		if errors.Is(err, context.DeadlineExceeded) {
			hung.Add(1)
		} else {
			otherErr.Add(1)
		}
		errMu.Lock()
		if len(errs) < 20 {
			errs = append(errs, err.Error())
		}
		errMu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const workers = 6
	txCommits := make([]int, workers)
	var maxCall atomic.Int64
	call := func(f func(ctx context.Context) error) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		t0 := time.Now()
		if err := f(cctx); err != nil {
			note(err)
		}
		if d := int64(time.Since(t0)); d > maxCall.Load() {
			maxCall.Store(d)
		}
	}
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			key := fmt.Sprintf("%s/s/%d", base, g)
			ctr := key + "/ctr"
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				call(func(ctx context.Context) error { return c.Write(ctx, key+"/w", []byte(strconv.Itoa(i))) })
				call(func(ctx context.Context) error {
					v, err := c.Read(ctx, key+"/w")
					if err == nil && string(v) != strconv.Itoa(i) {
						return fmt.Errorf("read %s = %q, want %d", key, v, i)
					}
					return err
				})
				call(func(ctx context.Context) error {
					err := c.Transaction(ctx, func(tx *xenstore.Tx) error {
						v, err := tx.Read(ctx, ctr)
						if errors.Is(err, os.ErrNotExist) {
							v, err = []byte("0"), nil
						}
						if err != nil {
							return err
						}
						n, _ := strconv.Atoi(string(v))
						return tx.Write(ctx, ctr, []byte(strconv.Itoa(n+1)))
					})
					if err == nil {
						txCommits[g]++
						commits.Add(1)
					}
					return err
				})
			}
		}(g)
	}
	var watchMissed, watchSeen atomic.Int64
	wg.Add(1)
	go func() { // a watcher writing and waiting for its own events
		defer wg.Done()
		w, err := c.Watch(ctx, base+"/wg")
		if err != nil {
			note(err)
			return
		}
		<-w.C
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := fmt.Sprintf("%s/wg/%d", base, i)
			call(func(ctx context.Context) error { return c.Write(ctx, p, nil) })
			timer := time.After(callTimeout)
		wait:
			for {
				select {
				case ev := <-w.C:
					if ev.Path == p || ev.Lost > 0 {
						watchSeen.Add(1)
						break wait
					}
				case <-timer:
					watchMissed.Add(1)
					break wait
				}
			}
		}
	}()

	time.Sleep(time.Second)
	before := commits.Load()
	t0 := time.Now()
	res, luErr := labtest.RunErr("xenstore-control", "live-update", "-t", "5", "-F", wrapper)
	luTime := time.Since(t0)
	t.Logf("xenstore-control live-update -t 5 -F %s: %v after %v: %s", wrapper, luErr, luTime, strings.TrimSpace(res))
	if b, err := os.ReadFile(filepath.Join(out, "wrapper.log")); err == nil {
		t.Logf("the new daemon was started as: %s", strings.TrimSpace(string(b)))
	}
	afterLU := commits.Load()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	if luErr != nil {
		t.Fatalf("live update failed: %v", luErr)
	}
	commitsAfter := commits.Load() - afterLU
	t.Logf("LIVE-UPDATE-STRESS commits before LU %d, during %d, after %d; hung calls %d; other errors %d; longest call %v; watch events seen %d, missed %d",
		before, afterLU-before, commitsAfter, hung.Load(), otherErr.Load(), time.Duration(maxCall.Load()), watchSeen.Load(), watchMissed.Load())
	for _, e := range errs {
		t.Logf("stress error: %s", e)
	}
	if hung.Load() > 0 || otherErr.Load() > 0 {
		t.Errorf("stress: %d calls hung past %v, %d failed otherwise", hung.Load(), callTimeout, otherErr.Load())
	}
	if commitsAfter == 0 {
		t.Errorf("no transaction committed after the live update")
	}
	if watchMissed.Load() > 0 {
		t.Errorf("%d watch events missed", watchMissed.Load())
	}
	// Every transaction committed exactly once.
	for g := 0; g < workers; g++ {
		v, err := c.Read(ctx, fmt.Sprintf("%s/s/%d/ctr", base, g))
		if err != nil || string(v) != strconv.Itoa(txCommits[g]) {
			t.Errorf("worker %d: counter %q (%v), %d commits reported", g, v, err, txCommits[g])
		}
	}
	// The transaction held across the update is gone: its commit says so.
	if err := held.Commit(ctx); !errors.Is(err, xenstore.ErrTxLost) || !errors.Is(err, os.ErrNotExist) && !isEAGAIN(err) {
		t.Errorf("commit of the transaction held across the update: %v, want ErrTxLost (EAGAIN)", err)
	} else {
		t.Logf("held transaction: %v", err)
	}
	// The held watches fire for writes after the update.
	for _, w := range []*xenstore.Watch{w1, w2} {
		drainWatch(w)
	}
	if err := c.Write(ctx, base+"/b/after", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*xenstore.Watch{w1, w2} {
		if !waitEvent(w, base+"/b/after", 10*time.Second) {
			t.Errorf("watch %s (%s): no event for a write after the update", w.Path, w.Token)
		}
	}

	// The state the old daemon handed over.
	raw, err := os.ReadFile(capture)
	if err != nil {
		t.Fatalf("no captured state (the wrapper copies it): %v", err)
	}
	st, err := migration.ReadState(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("decoding the captured state (%d bytes): %v", len(raw), err)
	}
	again, err := st.Bytes()
	if err != nil || !bytes.Equal(again, raw) {
		t.Errorf("re-encoding the captured state: %v, identical %v", err, bytes.Equal(again, raw))
	}
	counts := map[migration.Type]int{}
	for _, r := range st.Records {
		counts[r.Type()]++
	}
	t.Logf("LIVE-UPDATE-STATE %d bytes, version %d, flags %d, records %v", len(raw), st.Header.Version, st.Header.Flags, counts)
	byPath := map[string]*migration.Node{}
	for _, n := range st.Nodes() {
		if n.ConnID == 0 {
			byPath[n.Path] = n
		}
	}
	for _, n := range nodes {
		got := byPath[n.path]
		if got == nil {
			t.Errorf("node %s not in the state", n.path)
			continue
		}
		var want, have []string
		for _, p := range n.perms {
			want = append(want, p.String())
		}
		for _, p := range got.Perms {
			have = append(have, fmt.Sprintf("%c%d", p.Access, p.DomID))
		}
		if !slices.Equal(want, have) || string(got.Value) != "value of "+n.path {
			t.Errorf("node %s: perms %v value %q, want %v", n.path, got.Perms, got.Value, want)
		}
	}
	conns := map[uint32]*migration.Connection{}
	sockets := 0
	for _, cn := range st.Connections() {
		conns[cn.ID] = cn
		if cn.Kind == migration.ConnSocket {
			sockets++
		}
		t.Logf("connection %d: %v dom %d fd %d, %d bytes in, %d out", cn.ID, cn.Kind, cn.DomID, cn.SocketFD, len(cn.In), len(cn.Out))
	}
	var ourConn uint32
	for _, w := range []*xenstore.Watch{w1, w2} {
		found := false
		for _, sw := range st.Watches() {
			if sw.Token == w.Token && sw.Path == w.Path {
				found = true
				if ourConn == 0 {
					ourConn = sw.ConnID
				} else if sw.ConnID != ourConn {
					t.Errorf("watch %s on connection %d, the other on %d", w.Token, sw.ConnID, ourConn)
				}
			}
		}
		if !found {
			t.Errorf("watch %s %s not in the state", w.Path, w.Token)
		}
	}
	if cn := conns[ourConn]; cn == nil || cn.Kind != migration.ConnSocket {
		t.Errorf("our watches' connection %d is not a socket connection in the state", ourConn)
	}
	if sockets < 2 {
		t.Errorf("%d socket connections in the state; want ours and xenstore-control's", sockets)
	}
	ok := false
	for _, cn := range st.Connections() {
		if bytes.Contains(cn.Out, []byte("OK")) {
			ok = true
		}
	}
	if !ok {
		t.Errorf("no connection holds the pending OK of the live-update command")
	}
}

func isEAGAIN(err error) bool {
	var xe *xenstore.Error
	return errors.As(err, &xe) && xe.Name == "EAGAIN"
}

func drainWatch(w *xenstore.Watch) {
	for {
		select {
		case <-w.C:
		default:
			return
		}
	}
}

func waitEvent(w *xenstore.Watch, path string, d time.Duration) bool {
	timer := time.After(d)
	for {
		select {
		case ev, ok := <-w.C:
			if !ok {
				return false
			}
			if ev.Path == path || ev.Lost > 0 {
				return true
			}
		case <-timer:
			return false
		}
	}
}
