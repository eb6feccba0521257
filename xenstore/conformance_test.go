package xenstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/xenstoretest"
)

// conformance is the one suite run against the in-process test server and,
// in the lab, against the real C xenstored and oxenstored. daemon names the
// daemon ("test", "c", "ocaml") where the real ones are known to differ.
func conformance(t *testing.T, dial xenstore.Dialer, daemon string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := xenstore.DialWith(ctx, dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := fmt.Sprintf("/xensr-test/%s-%d", daemon, time.Now().UnixNano())
	t.Cleanup(func() { c.Rm(context.Background(), base) })

	t.Run("ReadWrite", func(t *testing.T) {
		p := base + "/rw/a/b"
		if err := c.Write(ctx, p, []byte("value 1")); err != nil {
			t.Fatal(err)
		}
		got, err := c.Read(ctx, p)
		if err != nil || string(got) != "value 1" {
			t.Fatalf("Read = %q, %v", got, err)
		}
		// Parents were created, with empty values.
		if v, err := c.Read(ctx, base+"/rw/a"); err != nil || len(v) != 0 {
			t.Fatalf("parent Read = %q, %v", v, err)
		}
		// Binary values survive.
		bin := []byte{0, 1, 2, 255, 0}
		c.Write(ctx, p, bin)
		if got, _ := c.Read(ctx, p); string(got) != string(bin) {
			t.Fatalf("binary value = %v", got)
		}
	})
	t.Run("NotExist", func(t *testing.T) {
		_, err := c.Read(ctx, base+"/missing")
		var xe *xenstore.Error
		if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) || !errors.As(err, &xe) || xe.Op != xenstore.OpRead {
			t.Fatalf("Read missing: %v", err)
		}
		if ok, err := c.Exists(ctx, base+"/missing"); ok || err != nil {
			t.Fatalf("Exists = %v, %v", ok, err)
		}
		if _, err := c.Directory(ctx, base+"/missing/deeper"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Directory missing: %v", err)
		}
	})
	t.Run("InvalidPath", func(t *testing.T) {
		for _, p := range []string{base + "/bad path", base + "//x", base + "/trailing/"} {
			if err := c.Write(ctx, p, nil); !errors.Is(err, syscall.EINVAL) {
				t.Errorf("Write %q: %v, want EINVAL", p, err)
			}
		}
	})
	t.Run("MkdirDirectoryRm", func(t *testing.T) {
		d := base + "/dir"
		for _, n := range []string{"c", "a", "b"} {
			if err := c.Mkdir(ctx, d+"/"+n); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Mkdir(ctx, d+"/a"); err != nil { // existing: no error
			t.Fatalf("Mkdir existing: %v", err)
		}
		names, err := c.Directory(ctx, d)
		slices.Sort(names)
		if err != nil || !slices.Equal(names, []string{"a", "b", "c"}) {
			t.Fatalf("Directory = %v, %v", names, err)
		}
		if err := c.Rm(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(ctx, d+"/a"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("child after Rm: %v", err)
		}
	})
	t.Run("LongDirectory", func(t *testing.T) {
		// More names than one 4096-byte reply holds: DIRECTORY says E2BIG,
		// the client falls back to DIRECTORY_PART.
		d := base + "/long"
		want := make([]string, 0, 300)
		err := c.Transaction(ctx, func(tx *xenstore.Tx) error {
			for i := 0; i < 300; i++ {
				n := fmt.Sprintf("child-with-a-long-name-%04d", i)
				want = append(want[:i], n)
				if err := tx.Mkdir(ctx, d+"/"+n); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		names, err := c.Directory(ctx, d)
		if errors.Is(err, syscall.ENOSYS) && daemon == "ocaml-xenbus" {
			// Seen in the lab: oxenstored (Xen 4.17) answers DIRECTORY
			// with E2BIG over the ring and has no DIRECTORY_PART, so a
			// directory this long cannot be listed through /dev/xen/xenbus.
			// On its socket it sends the long reply whole (see ReplyMax).
			t.Skipf("daemons differ: oxenstored over xenbus cannot list %d bytes of names: %v", len(want)*27, err)
		}
		slices.Sort(names)
		if err != nil || !slices.Equal(names, want) {
			t.Fatalf("Directory: %d names, %v", len(names), err)
		}
	})
	t.Run("Perms", func(t *testing.T) {
		p := base + "/perms"
		c.Write(ctx, p, []byte("x"))
		want := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 5, Access: xenstore.AccessRead}, {Domain: 7, Access: xenstore.AccessBoth}}
		if err := c.SetPerms(ctx, p, want); err != nil {
			t.Fatal(err)
		}
		got, err := c.GetPerms(ctx, p)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("GetPerms = %v, %v", got, err)
		}
		// A new child inherits its parent's permissions.
		c.Write(ctx, p+"/child", nil)
		if got, _ := c.GetPerms(ctx, p+"/child"); !slices.Equal(got, want) {
			t.Fatalf("child perms = %v", got)
		}
	})
	t.Run("Limits", func(t *testing.T) {
		err := c.Write(ctx, base+"/big", make([]byte, xenstore.PayloadMax))
		if !errors.Is(err, syscall.E2BIG) {
			t.Fatalf("oversized Write: %v", err)
		}
		long := "/" + strings.Repeat("x", xenstore.AbsPathMax)
		if _, err := c.Read(ctx, long); !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("over-long path: %v", err)
		}
		// The connection still works.
		if err := c.Write(ctx, base+"/after", []byte("ok")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Watch", func(t *testing.T) {
		p := base + "/watched"
		c.Mkdir(ctx, p)
		w, err := c.Watch(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		expect := func(path string) {
			t.Helper()
			deadline := time.After(10 * time.Second)
			for {
				select {
				case ev := <-w.C:
					if ev.Token != w.Token {
						t.Fatalf("event token %q, want %q", ev.Token, w.Token)
					}
					if ev.Path == path {
						return
					}
				case <-deadline:
					t.Fatalf("no watch event for %s", path)
				}
			}
		}
		expect(p) // fired at registration
		c.Write(ctx, p+"/x/y", []byte("1"))
		expect(p + "/x/y")
		c.Rm(ctx, p+"/x")
		expect(p + "/x")
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if _, open := <-w.C; open {
			// drain anything queued before Stop
			for range w.C {
			}
		}
	})
	t.Run("TransactionIsolation", func(t *testing.T) {
		p := base + "/tx"
		c.Write(ctx, p, []byte("before"))
		tx, err := c.TransactionStart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Write(ctx, p, []byte("inside")); err != nil {
			t.Fatal(err)
		}
		if v, _ := c.Read(ctx, p); string(v) != "before" {
			t.Fatalf("uncommitted write visible outside: %q", v)
		}
		if v, _ := tx.Read(ctx, p); string(v) != "inside" {
			t.Fatalf("transaction reads %q", v)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if v, _ := c.Read(ctx, p); string(v) != "inside" {
			t.Fatalf("after commit: %q", v)
		}
		if tx, err = c.TransactionStart(ctx); err != nil {
			t.Fatal(err)
		}
		tx.Write(ctx, p, []byte("aborted"))
		tx.Abort(ctx)
		if v, _ := c.Read(ctx, p); string(v) != "inside" {
			t.Fatalf("after abort: %q", v)
		}
	})
	t.Run("TransactionConflict", func(t *testing.T) {
		p := base + "/conflict"
		c.Write(ctx, p, []byte("0"))
		tx, err := c.TransactionStart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx.Read(ctx, p)
		tx.Write(ctx, p, []byte("tx"))
		c.Write(ctx, p, []byte("outside")) // conflicting change
		err = tx.Commit(ctx)
		if !errors.Is(err, syscall.EAGAIN) {
			t.Fatalf("conflicting commit: %v, want EAGAIN", err)
		}
		if v, _ := c.Read(ctx, p); string(v) != "outside" {
			t.Fatalf("value %q", v)
		}
	})
	t.Run("TransactionRetryCounter", func(t *testing.T) {
		// Concurrent read-modify-write through Transaction: every increment
		// lands, whatever the conflicts.
		p := base + "/counter"
		c.Write(ctx, p, []byte("0"))
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- c.Transaction(ctx, func(tx *xenstore.Tx) error {
					v, err := tx.Read(ctx, p)
					if err != nil {
						return err
					}
					k, _ := strconv.Atoi(string(v))
					return tx.Write(ctx, p, []byte(strconv.Itoa(k+1)))
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if v, _ := c.Read(ctx, p); string(v) != strconv.Itoa(n) {
			t.Fatalf("counter = %s, want %d", v, n)
		}
	})
	t.Run("Pipelined", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					p := fmt.Sprintf("%s/pipe/%d/%d", base, g, i)
					val := []byte(p)
					if err := c.Write(ctx, p, val); err != nil {
						errs <- err
						return
					}
					if v, err := c.Read(ctx, p); err != nil || string(v) != string(val) {
						errs <- fmt.Errorf("read %s = %q, %v", p, v, err)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
	t.Run("Domains", func(t *testing.T) {
		p, err := c.GetDomainPath(ctx, 0)
		if err != nil || p != "/local/domain/0" {
			t.Fatalf("GetDomainPath(0) = %q, %v", p, err)
		}
		if ok, err := c.IsDomainIntroduced(ctx, 0); err != nil || !ok {
			t.Fatalf("IsDomainIntroduced(0) = %v, %v", ok, err)
		}
		if ok, err := c.IsDomainIntroduced(ctx, 4242); err != nil || ok {
			t.Fatalf("IsDomainIntroduced(4242) = %v, %v", ok, err)
		}
	})
	t.Run("OptionalOps", func(t *testing.T) {
		// GET_FEATURE and GET_QUOTA arrived after Xen 4.17: a daemon
		// without them must answer with an error, not break the connection.
		if _, err := c.GetFeature(ctx, 0); err != nil {
			t.Logf("%s xenstored: GET_FEATURE: %v", daemon, err)
		}
		if _, err := c.GetQuota(ctx, "nodes"); err != nil {
			t.Logf("%s xenstored: GET_QUOTA: %v", daemon, err)
		}
		if err := c.Write(ctx, base+"/still-alive", nil); err != nil {
			t.Fatalf("connection broken after optional ops: %v", err)
		}
	})
	t.Run("QuiesceWaitsForTransactions", func(t *testing.T) {
		tx, err := c.TransactionStart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		qctx, qcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		if err := c.Quiesce(qctx); err == nil {
			t.Fatal("Quiesce returned with a transaction open")
		}
		qcancel()
		// While quiesced, new transactions wait.
		started := make(chan error, 1)
		go func() {
			tx2, err := c.TransactionStart(ctx)
			if err == nil {
				err = tx2.Abort(ctx)
			}
			started <- err
		}()
		select {
		case err := <-started:
			t.Fatalf("transaction started while quiesced (%v)", err)
		case <-time.After(200 * time.Millisecond):
		}
		tx.Abort(ctx)
		if err := c.Quiesce(ctx); err != nil {
			t.Fatal(err)
		}
		// Plain requests still work while quiesced.
		if _, err := c.Read(ctx, "/local/domain/0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		c.Resume()
		if err := <-started; err != nil {
			t.Fatalf("transaction after Resume: %v", err)
		}
	})
}

func TestConformanceTestServer(t *testing.T) {
	conformance(t, xenstoretest.NewServer().Dial, "test")
}
