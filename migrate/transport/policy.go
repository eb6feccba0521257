package transport

import (
	"time"

	"github.com/xensr/xensr/migrate"
)

// RateOptions tune RatePolicy.
type RateOptions struct {
	// TargetDowntime: stop the precopy once the pages left would be sent
	// in this time. 0 means 300ms.
	TargetDowntime time.Duration
	// MaxRounds caps the rounds after the first full pass. 0 means 30.
	MaxRounds int
	// Bandwidth is the link's bytes a second, used when a round was too
	// short to measure (and as a cap on the measured rate); 0: measured only.
	Bandwidth float64
}

// Estimate is what RatePolicy concludes from the rounds so far.
type Estimate struct {
	DirtyRate float64       // pages dirtied a second, measured over the round before last
	SendRate  float64       // pages sent a second in the last round
	Left      float64       // pages expected dirty if the guest is suspended now
	Downtime  time.Duration // Left / SendRate
	Converges bool          // DirtyRate < SendRate: another round leaves fewer pages
}

// Estimates returns the estimate after the last of rounds (at least two:
// the dirty rate needs a round sent while the guest ran). ok is false with
// fewer rounds.
func Estimates(rounds []migrate.RoundStats, bandwidth float64) (e Estimate, ok bool) {
	if len(rounds) < 2 {
		return Estimate{}, false
	}
	last, prev := rounds[len(rounds)-1], rounds[len(rounds)-2]
	// last.Dirty pages were dirtied while prev was being sent.
	span := prev.Elapsed
	if span <= 0 {
		span = time.Millisecond
	}
	e.DirtyRate = float64(last.Dirty) / span.Seconds()
	link := bandwidth / migrate.PageSize
	if last.Elapsed >= time.Millisecond && last.Dirty > 0 {
		e.SendRate = float64(last.Dirty) / last.Elapsed.Seconds()
		if link > 0 && link < e.SendRate {
			e.SendRate = link
		}
	} else {
		e.SendRate = link
	}
	e.Left = e.DirtyRate * last.Elapsed.Seconds()
	if e.SendRate > 0 {
		e.Downtime = time.Duration(e.Left / e.SendRate * float64(time.Second))
		e.Converges = e.DirtyRate < e.SendRate
	}
	return e, true
}

// RatePolicy returns a precopy policy that uses the measured dirty rate and
// send rate: after the first pass it always runs two more rounds (the
// second measures the dirty rate over a short round); then it stops when the pages expected dirty at
// suspension would be sent within TargetDowntime, when the guest dirties
// pages at least as fast as they are sent (more rounds would not shrink
// the rest), when a round found nothing dirty, or after MaxRounds.
func RatePolicy(o RateOptions) migrate.Policy {
	if o.TargetDowntime <= 0 {
		o.TargetDowntime = 300 * time.Millisecond
	}
	if o.MaxRounds <= 0 {
		o.MaxRounds = 30
	}
	return func(last migrate.RoundStats, all []migrate.RoundStats) bool {
		if last.Round >= o.MaxRounds {
			return false
		}
		if last.Dirty == 0 && last.Round > 0 {
			return false
		}
		if last.Round < 2 {
			// The dirty rate measured over the first pass is diluted: a
			// guest rewriting a small working set fills it long before a
			// full pass ends. Measure it over round 1, which is short.
			return true
		}
		e, ok := Estimates(all, o.Bandwidth)
		if !ok || e.SendRate <= 0 {
			return false // nothing to go by: stop rather than loop
		}
		return e.Downtime > o.TargetDowntime && e.Converges
	}
}
