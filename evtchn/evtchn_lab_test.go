//go:build linux

package evtchn

import (
	"slices"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
)

// TestLabLoopback binds an unbound port for dom0 and a second port of dom0
// to it, notifies one end and sees the other fire, masked until Unmask.
func TestLabLoopback(t *testing.T) {
	labtest.Require(t)
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := d.BindUnbound(0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.BindInterdomain(0, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ports %d <-> %d", a, b)
	// wait collects fired ports (unmasking them) until want fires. Xen
	// marks a port pending when BindInterdomain connects it (notifications
	// to the unbound port may have been lost), so b may fire once unasked.
	wait := func(want Port) []Port {
		t.Helper()
		got := make(chan []Port, 1)
		go func() {
			var all []Port
			for !slices.Contains(all, want) {
				ps, err := d.Pending(nil, make([]byte, 64))
				if err != nil {
					t.Error(err)
					break
				}
				all = append(all, ps...)
				d.Unmask(ps...)
			}
			got <- all
		}()
		select {
		case ps := <-got:
			return ps
		case <-time.After(10 * time.Second):
			t.Fatalf("port %d did not fire within 10 s", want)
			return nil
		}
	}
	if err := d.Notify(b); err != nil {
		t.Fatal(err)
	}
	ps := wait(a)
	t.Logf("notify %d: fired %v", b, ps)
	for _, p := range ps {
		if p != a && p != b {
			t.Fatalf("pending %v after notifying %d: port %d is not ours", ps, b, p)
		}
	}
	if len(ps) > 2 {
		t.Fatalf("pending %v after notifying %d, want %d (and %d once, from the bind)", ps, b, a, b)
	}
	if err := d.Notify(a); err != nil {
		t.Fatal(err)
	}
	if ps := wait(b); len(ps) != 1 {
		t.Fatalf("pending %v after notifying %d, want [%d]", ps, a, b)
	}
	if err := d.Unbind(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(b); err == nil {
		t.Fatal("notify of an unbound port succeeded")
	}
}
