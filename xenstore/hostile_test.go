package xenstore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/xenstoretest"
)

// memSince returns the bytes allocated since before (TotalAlloc) and the
// live heap growth after a collection.
func memSince(before runtime.MemStats) (total, live int64) {
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc), int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

func memNow() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// longDir makes a directory whose listing needs DIRECTORY_PART.
func longDir(t *testing.T, ctx context.Context, c *xenstore.Client, dir string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if err := c.Mkdir(ctx, fmt.Sprintf("%s/child-with-a-longish-name-%03d", dir, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDirectoryPartHostile: a daemon whose DIRECTORY_PART replies never end
// the listing, or carry no name, or always a new generation, costs the
// client a bounded number of requests and bytes, and Directory returns an
// error well before the caller's deadline. Before the bound, the endless
// daemon made Directory loop until the deadline, allocating without limit,
// and the empty one made it loop forever.
func TestDirectoryPartHostile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults xenstoretest.Faults
		want   error
	}{
		{"endless", xenstoretest.Faults{DirectoryPartEndless: true}, syscall.E2BIG},
		{"empty", xenstoretest.Faults{DirectoryPartEmpty: true}, xenstore.ErrProtocol},
		{"newgen", xenstoretest.Faults{DirectoryPartNewGen: true}, syscall.EAGAIN},
		{"endless-newgen", xenstoretest.Faults{DirectoryPartEndless: true, DirectoryPartNewGen: true}, syscall.EAGAIN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := xenstoretest.NewServer()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := xenstore.DialWith(ctx, s.Dial)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			longDir(t, ctx, c, "/big")
			s.SetFaults(tc.faults)
			before := memNow()
			t0 := time.Now()
			names, err := c.Directory(ctx, "/big")
			took := time.Since(t0)
			total, _ := memSince(before)
			t.Logf("%s: %v after %v, %d names, %.1f MiB allocated", tc.name, err, took, len(names), float64(total)/(1<<20))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Directory = %d names, %v; want %v", len(names), err, tc.want)
			}
			// The listing is bounded by DirectoryMax; what is allocated on
			// the way (replies, requests, strings) is a small multiple.
			if limit := int64(24 * xenstore.DirectoryMax); total > limit {
				t.Errorf("Directory allocated %d bytes, bound %d", total, limit)
			}
		})
	}
}

// TestDirectoryPartCorrect: the bounds leave a correct long listing alone.
func TestDirectoryPartCorrect(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx := context.Background()
	c, err := xenstore.DialWith(ctx, s.Dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	longDir(t, ctx, c, "/big")
	names, err := c.Directory(ctx, "/big")
	if err != nil || len(names) != 300 || names[299] != "child-with-a-longish-name-299" {
		t.Fatalf("Directory = %d names, %v", len(names), err)
	}
}

// fireAndSync sends n events of path to every watch and then makes a round
// trip, so that the client has handled every event when it returns.
func fireAndSync(t *testing.T, ctx context.Context, s *xenstoretest.Server, c *xenstore.Client, path string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if s.FireAll(path) != 1 {
			t.Fatal("FireAll: want exactly one watch")
		}
	}
	if _, err := c.Read(ctx, "/local/domain/0"); err != nil {
		t.Fatal(err)
	}
}

// drain takes what C holds and returns the plain events and the sum of the
// overflow events' Lost counts.
func drain(w *xenstore.Watch) (plain []xenstore.Event, lost, overflows int) {
	for {
		select {
		case ev := <-w.C:
			if ev.Lost > 0 {
				lost += ev.Lost
				overflows++
				if ev.Path != w.Path || ev.Token != w.Token {
					panic(fmt.Sprintf("overflow event %+v does not name the watch", ev))
				}
			} else {
				plain = append(plain, ev)
			}
		default:
			return
		}
	}
}

// TestWatchQueueBounded: a daemon sending many huge watch events to a
// watcher that does not read costs the client a bounded live heap (before
// the bound, 100 events of 1 MiB each were all held: 100 MiB), and
// the watcher learns how many events it lost.
func TestWatchQueueBounded(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := xenstore.DialWith(ctx, s.Dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Watch(ctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	huge := "/w/" + strings.Repeat("x", xenstore.ReplyMax-64)
	before := memNow()
	const n = 100 // each 1 MiB: 100 MiB held before the bound
	fireAndSync(t, ctx, s, c, huge, n)
	_, live := memSince(before)
	t.Logf("live heap after %d events of %d bytes: %+.1f MiB", n, len(huge), float64(live)/(1<<20))
	// Bound: the read buffer (ReplyMax) plus WatchBuffer events of
	// AbsPathMax bytes, and slack.
	if limit := int64(xenstore.ReplyMax + xenstore.WatchBuffer*xenstore.AbsPathMax + 4<<20); live > limit {
		t.Errorf("live heap grew by %d bytes holding watch events, bound %d", live, limit)
	}
	plain, lost, overflows := drain(w)
	// n+1 events: the watch's first one and n too long to queue.
	if len(plain)+lost != n+1 || lost < n || overflows == 0 || w.Dropped() != lost {
		t.Errorf("plain %d + lost %d (in %d overflow events, Dropped %d), want 1 + %d", len(plain), lost, overflows, w.Dropped(), n)
	}
	runtime.KeepAlive(w)
}

// TestWatchOverflowMarker: a watcher that falls behind on valid events gets
// one overflow event standing for what it missed, every event is accounted
// for, and events after the overflow arrive normally. With the old policy
// (drop the oldest silently) the receiver saw no marker in C.
func TestWatchOverflowMarker(t *testing.T) {
	s := xenstoretest.NewServer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := xenstore.DialWith(ctx, s.Dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Watch(ctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	long := "/w/" + strings.Repeat("y", xenstore.AbsPathMax-3)
	before := memNow()
	const n = 1000
	fireAndSync(t, ctx, s, c, long, n)
	_, live := memSince(before)
	if limit := int64(xenstore.WatchBuffer*(xenstore.AbsPathMax+64) + 2<<20); live > limit {
		t.Errorf("live heap grew by %d bytes, bound %d", live, limit)
	}
	plain, lost, overflows := drain(w)
	t.Logf("%d events: %d delivered, %d lost in %d overflow events", n+1, len(plain), lost, overflows)
	if len(plain)+lost != n+1 || overflows == 0 || w.Dropped() != lost {
		t.Fatalf("plain %d + lost %d (in %d overflow events, Dropped %d), want %d", len(plain), lost, overflows, w.Dropped(), n+1)
	}
	for _, ev := range plain {
		if ev.Path != long && ev.Path != "/w" {
			t.Fatalf("event path %.40q...", ev.Path)
		}
	}
	// After the overflow the queue works as before.
	if err := c.Write(ctx, "/w/after", []byte("1")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.C:
		if ev.Path != "/w/after" || ev.Lost != 0 {
			t.Fatalf("event after overflow: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event after the overflow")
	}
}
