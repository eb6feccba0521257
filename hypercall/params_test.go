package hypercall

import "testing"

// TestStateShutdownReasons checks xl's state column for each shutdown
// reason: only SHUTDOWN_crash (3) shows as crashed, and a suspended domain
// (SHUTDOWN_suspend, 2) shows as shut down.
func TestStateShutdownReasons(t *testing.T) {
	for _, c := range []struct {
		reason    uint32
		state     string
		suspended bool
	}{
		{ShutdownPoweroff, "---s--", false},
		{ShutdownReboot, "---s--", false},
		{ShutdownSuspend, "---s--", true},
		{ShutdownCrash, "----c-", false},
		{ShutdownWatchdog, "---s--", false},
	} {
		d := DomainInfo{Flags: DomainShutdown | c.reason<<16}
		if got := d.State(); got != c.state {
			t.Errorf("reason %d: state %q, want %q", c.reason, got, c.state)
		}
		if d.Suspended() != c.suspended {
			t.Errorf("reason %d: Suspended() = %v", c.reason, d.Suspended())
		}
	}
	if d := (DomainInfo{Flags: ShutdownSuspend << 16}); d.Suspended() {
		t.Error("a running domain with a stale reason reads as suspended")
	}
}

func TestPageHasData(t *testing.T) {
	for typ, want := range map[uint32]bool{PageTypeNone: true, PageTypeL1Tab | PageTypePinned: true,
		PageTypeBroken: false, PageTypeXAlloc: false, PageTypeXTab: false} {
		if PageHasData(typ) != want {
			t.Errorf("PageHasData(%#x) = %v", typ, !want)
		}
	}
}
