package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress reports long work on stderr: a live line rewritten in place on a
// terminal (at most ten times a second), a plain line every Interval
// otherwise, and nothing when quiet. It is safe for concurrent use.
type Progress struct {
	mu       sync.Mutex
	w        io.Writer
	live     bool
	quiet    bool
	label    string
	total    int64 // 0: unknown
	done     int64
	start    time.Time
	last     time.Time
	now      func() time.Time
	Interval time.Duration // between plain lines; default 5 s
}

// NewProgress reports on w (live when w is a terminal) the progress of
// label towards total bytes (0 when unknown).
func NewProgress(w io.Writer, quiet bool, label string, total int64) *Progress {
	f, _ := w.(*os.File)
	p := &Progress{w: w, live: IsTerminal(f), quiet: quiet, label: label, total: total,
		now: time.Now, Interval: 5 * time.Second}
	p.start = p.now()
	p.last = p.start
	return p
}

// Add counts n more bytes done.
func (p *Progress) Add(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.quiet {
		return
	}
	t := p.now()
	every := p.Interval
	if p.live {
		every = 100 * time.Millisecond
	}
	if t.Sub(p.last) < every {
		return
	}
	p.last = t
	p.print(t, false)
}

// Writer returns an io.Writer that counts what passes through it, for
// io.TeeReader or io.MultiWriter.
func (p *Progress) Writer() io.Writer { return progressWriter{p} }

type progressWriter struct{ p *Progress }

func (w progressWriter) Write(b []byte) (int, error) { w.p.Add(int64(len(b))); return len(b), nil }

// Done prints the final line (on a terminal, ends the live line).
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet {
		return
	}
	p.print(p.now(), true)
}

// line formats the progress at time t.
func (p *Progress) line(t time.Time) string {
	el := t.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el
	}
	s := fmt.Sprintf("%s: %s", p.label, Bytes(float64(p.done)))
	if p.total > 0 {
		s += fmt.Sprintf(" of %s (%.0f%%)", Bytes(float64(p.total)), 100*float64(p.done)/float64(p.total))
	}
	s += fmt.Sprintf(", %s/s", Bytes(rate))
	if p.total > 0 && rate > 0 && p.done < p.total {
		eta := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		s += fmt.Sprintf(", ETA %s", eta.Round(time.Second))
	}
	return s
}

func (p *Progress) print(t time.Time, final bool) {
	l := p.line(t)
	switch {
	case p.live && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", l)
	case p.live:
		fmt.Fprintf(p.w, "\r\033[K%s", l)
	default:
		fmt.Fprintln(p.w, l)
	}
}
