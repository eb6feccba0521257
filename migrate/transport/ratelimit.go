package transport

import (
	"io"
	"time"
)

// RateLimiter is a token bucket on a writer: on average at most Rate bytes
// a second pass, in bursts of at most Burst bytes.
type RateLimiter struct {
	W     io.Writer
	Rate  float64 // bytes per second; 0 or less passes everything at once
	Burst int     // bucket size in bytes; 0 means Rate/20, at least 16 KiB

	tokens float64
	last   time.Time
	sleep  func(time.Duration) // time.Sleep unless a test replaces it
	now    func() time.Time
}

// NewRateLimiter returns a limiter of rate bytes a second on w.
func NewRateLimiter(w io.Writer, rate float64) *RateLimiter {
	return &RateLimiter{W: w, Rate: rate}
}

func (l *RateLimiter) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	b := int(l.Rate / 20)
	if b < 16<<10 {
		b = 16 << 10
	}
	return b
}

// Write writes p to the underlying writer once the bucket holds enough
// tokens for each piece.
func (l *RateLimiter) Write(p []byte) (int, error) {
	if l.Rate <= 0 {
		return l.W.Write(p)
	}
	if l.sleep == nil {
		l.sleep, l.now = time.Sleep, time.Now
	}
	b := l.burst()
	if l.last.IsZero() {
		l.last = l.now()
		l.tokens = float64(b)
	}
	done := 0
	for len(p) > 0 {
		n := len(p)
		if n > b {
			n = b
		}
		now := l.now()
		l.tokens += now.Sub(l.last).Seconds() * l.Rate
		l.last = now
		if l.tokens > float64(b) {
			l.tokens = float64(b)
		}
		if need := float64(n) - l.tokens; need > 0 {
			d := time.Duration(need / l.Rate * float64(time.Second))
			l.sleep(d)
			l.tokens += d.Seconds() * l.Rate
			l.last = l.last.Add(d)
		}
		l.tokens -= float64(n)
		w, err := l.W.Write(p[:n])
		done += w
		if err != nil {
			return done, err
		}
		p = p[n:]
	}
	return done, nil
}
