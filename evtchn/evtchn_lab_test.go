//go:build linux

package evtchn

import (
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
	wait := func() []Port {
		t.Helper()
		got := make(chan []Port, 1)
		go func() {
			ps, err := d.Pending(nil, make([]byte, 64))
			if err != nil {
				t.Error(err)
			}
			got <- ps
		}()
		select {
		case ps := <-got:
			return ps
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10 s")
			return nil
		}
	}
	if err := d.Notify(b); err != nil {
		t.Fatal(err)
	}
	if ps := wait(); len(ps) != 1 || ps[0] != a {
		t.Fatalf("pending %v after notifying %d, want [%d]", ps, b, a)
	}
	if err := d.Unmask(a); err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(a); err != nil {
		t.Fatal(err)
	}
	if ps := wait(); len(ps) != 1 || ps[0] != b {
		t.Fatalf("pending %v after notifying %d, want [%d]", ps, a, b)
	}
	if err := d.Unbind(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(b); err == nil {
		t.Fatal("notify of an unbound port succeeded")
	}
}
