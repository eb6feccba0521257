package transport

import (
	"testing"
	"time"

	"github.com/xensr/xensr/migrate"
)

func rounds(rs ...migrate.RoundStats) []migrate.RoundStats {
	for i := range rs {
		rs[i].Round = i
	}
	return rs
}

func rs(dirty uint64, el time.Duration) migrate.RoundStats {
	return migrate.RoundStats{Dirty: dirty, Sent: dirty, Elapsed: el}
}

func TestEstimates(t *testing.T) {
	// 65536 pages in 2 s; 6000 dirtied meanwhile (3000/s), sent in 0.2 s
	// (30000/s): 600 expected dirty now, 20 ms to send them.
	e, ok := Estimates(rounds(rs(65536, 2*time.Second), rs(6000, 200*time.Millisecond)), 0)
	if !ok || e.DirtyRate != 3000 || e.SendRate != 30000 || e.Left != 600 || e.Downtime != 20*time.Millisecond || !e.Converges {
		t.Fatalf("%+v %v", e, ok)
	}
	// A 1 MiB/s link caps the send rate at 256 pages/s.
	e, _ = Estimates(rounds(rs(65536, 2*time.Second), rs(6000, 200*time.Millisecond)), 1<<20)
	if e.SendRate != 256 || e.Converges {
		t.Fatalf("%+v", e)
	}
	if _, ok := Estimates(rounds(rs(10, time.Second)), 0); ok {
		t.Fatal("an estimate from the first pass alone")
	}
}

func TestRatePolicy(t *testing.T) {
	p := RatePolicy(RateOptions{TargetDowntime: 50 * time.Millisecond, MaxRounds: 6})
	for _, tc := range []struct {
		name string
		rs   []migrate.RoundStats
		more bool
	}{
		{"first pass: measure", rounds(rs(65536, 2*time.Second)), true},
		{"round 1: measure again", rounds(rs(65536, 2*time.Second), rs(6000, 200*time.Millisecond)), true},
		{"20ms left: stop", rounds(rs(65536, 2*time.Second), rs(6000, 2*time.Second), rs(6000, 200*time.Millisecond)), false},
		// 30000 dirtied in 1 s (30000/s), sent in 0.5 s (60000/s): 15000
		// left, 250 ms: converging, go on.
		{"converging: go on", rounds(rs(65536, time.Second), rs(30000, time.Second), rs(30000, 500*time.Millisecond)), true},
		// Dirtied as fast as sent: another round leaves as much.
		{"not converging: stop", rounds(rs(65536, time.Second), rs(60000, time.Second), rs(60000, time.Second)), false},
		{"nothing dirty: stop", rounds(rs(65536, time.Second), rs(0, 0)), false},
		{"max rounds", rounds(rs(65536, time.Second), rs(30000, 500*time.Millisecond), rs(30000, 500*time.Millisecond),
			rs(30000, 500*time.Millisecond), rs(30000, 500*time.Millisecond), rs(30000, 500*time.Millisecond), rs(30000, 500*time.Millisecond)), false},
	} {
		if got := p(tc.rs[len(tc.rs)-1], tc.rs); got != tc.more {
			t.Errorf("%s: another round %v, want %v", tc.name, got, tc.more)
		}
	}
	// Control: on the non-converging guest xl's policy goes on (the
	// dirty count stays above 50), so the rate policy saves rounds.
	nc := rounds(rs(65536, time.Second), rs(60000, time.Second))
	if !migrate.DefaultPolicy(nc[1], nc) {
		t.Fatal("DefaultPolicy stopped a non-converging guest after one round")
	}
}

// TestRatePolicySimulated runs both policies on a simulated guest that
// dirties a working set at a fixed rate over a fixed-rate link: the rate
// policy's stop-and-copy fits its target when the rounds converge, it stops
// after the measuring rounds when they do not, and it never sends more
// pages in all than xl's policy.
func TestRatePolicySimulated(t *testing.T) {
	const sendRate = 25000.0 // pages/s
	const target = 300 * time.Millisecond
	for _, dirtyRate := range []float64{2000, 20000, 40000} {
		run := func(p migrate.Policy) (left, total float64, n int) {
			var all []migrate.RoundStats
			pages := 65536.0
			for round := 0; ; round++ {
				total += pages
				el := time.Duration(pages / sendRate * float64(time.Second))
				all = append(all, migrate.RoundStats{Round: round, Dirty: uint64(pages), Sent: uint64(pages), Elapsed: el})
				pages = min(dirtyRate*el.Seconds(), 16384) // the working set caps it
				if !p(all[len(all)-1], all) {
					return pages, total + pages, len(all)
				}
			}
		}
		rl, rt, rn := run(RatePolicy(RateOptions{TargetDowntime: target}))
		dl, dt, dn := run(migrate.DefaultPolicy)
		t.Logf("dirty %v/s: rate policy %d rounds, %.0f pages left, %.0f sent; default %d rounds, %.0f left, %.0f sent", dirtyRate, rn, rl, rt, dn, dl, dt)
		down := time.Duration(rl / sendRate * float64(time.Second))
		if dirtyRate < sendRate && down > target {
			t.Errorf("dirty %v/s: stop-and-copy of %v, target %v", dirtyRate, down, target)
		}
		if dirtyRate >= sendRate && rn > 3 {
			t.Errorf("dirty %v/s over a %v/s link: %d rounds, want a stop after the measuring rounds", dirtyRate, sendRate, rn)
		}
		if rt > dt {
			t.Errorf("dirty %v/s: rate policy sent %.0f pages, default %.0f", dirtyRate, rt, dt)
		}
	}
}
