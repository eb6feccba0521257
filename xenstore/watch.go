package xenstore

import (
	"context"
	"strconv"
	"sync"
)

// An Event is one watch firing: the path that changed (or the watched path,
// for the event every new watch fires at once) and the watch's token.
//
// Lost > 0 marks an overflow event: the receiver did not keep up, Lost
// events were dropped (see WatchBuffer), and this event, whose Path is the
// watched path, stands for all of them. A receiver that sees it must re-read
// whatever it watches, as after a new watch's first event.
type Event struct {
	Path  string
	Token string
	Lost  int
}

// WatchBuffer is how many undelivered events a Watch queues on C. When an
// event arrives and C is full, the queued events and the new one are
// replaced by one overflow event (Lost counts them), like the kernel's
// inotify queue overflow: xenstore only promises that a change fires the
// watch, not one event per change, so a watcher that falls behind learns
// that it must re-read rather than receiving every path.
//
// An event whose path is longer than AbsPathMax (which no correct daemon
// sends) is not queued either: it becomes an overflow event with Lost 1.
//
// So a Watch holds at most WatchBuffer events of at most AbsPathMax bytes
// of path each (its token is the Watch's own string), about 800 KiB, however
// many events a daemon sends and however slowly C is drained.
const WatchBuffer = 256

// A Watch delivers the events of one registered watch on C. It is closed
// when the watch is removed or the connection breaks.
type Watch struct {
	Path  string
	Token string
	C     <-chan Event

	c       *Client
	ch      chan Event
	mu      sync.Mutex
	closed  bool
	err     error
	dropped int
}

// Watch registers a watch on path (and everything below it). The daemon
// fires one event at once; then one per change.
func (c *Client) Watch(ctx context.Context, path string) (*Watch, error) {
	if err := checkPath(OpWatch, path); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nextToken++
	token := "xensr-" + strconv.FormatUint(c.nextToken, 10)
	ch := make(chan Event, WatchBuffer)
	w := &Watch{Path: path, Token: token, C: ch, c: c, ch: ch}
	c.watches[token] = w
	c.mu.Unlock()
	if _, err := c.request(ctx, 0, 0, OpWatch, path, nul(path, token)); err != nil {
		c.mu.Lock()
		delete(c.watches, token)
		c.mu.Unlock()
		return nil, err
	}
	return w, nil
}

// Stop unregisters the watch and closes C.
func (w *Watch) Stop(ctx context.Context) error {
	w.c.mu.Lock()
	_, ok := w.c.watches[w.Token]
	delete(w.c.watches, w.Token)
	w.c.mu.Unlock()
	var err error
	if ok {
		_, err = w.c.request(ctx, 0, 0, OpUnwatch, w.Path, nul(w.Path, w.Token))
	}
	w.close(nil)
	return err
}

// Dropped returns how many events were dropped because C was full or their
// path was too long: the sum of the Lost counts of the overflow events.
func (w *Watch) Dropped() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// Err returns why C was closed by a broken connection, or nil.
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// send queues ev on C; when C is full it replaces the queue by one overflow
// event (see WatchBuffer).
func (w *Watch) send(ev Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.dropped += ev.Lost // an event that already stands for lost ones
	select {
	case w.ch <- ev:
		return
	default:
	}
	// Replace the queue and ev by one overflow event. Queued overflow
	// events were counted in dropped when they were made; the others and
	// ev (if it is a plain event) are dropped now.
	lost, fresh := max(ev.Lost, 1), 0
	if ev.Lost == 0 {
		fresh = 1
	}
	for drained := false; !drained; {
		select {
		case old := <-w.ch:
			if old.Lost > 0 {
				lost += old.Lost
			} else {
				lost++
				fresh++
			}
		default:
			drained = true
		}
	}
	// Only send (under w.mu) fills w.ch, and it is empty now.
	w.dropped += fresh
	w.ch <- Event{Path: w.Path, Token: w.Token, Lost: lost}
}

func (w *Watch) close(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed, w.err = true, err
		close(w.ch)
	}
}

func (c *Client) deliverWatch(payload []byte) {
	parts := splitNul(payload)
	if len(parts) < 2 {
		return
	}
	c.mu.Lock()
	w := c.watches[parts[1]]
	c.mu.Unlock()
	if w == nil {
		return
	}
	if len(parts[0]) > AbsPathMax {
		w.send(Event{Path: w.Path, Token: w.Token, Lost: 1})
		return
	}
	w.send(Event{Path: parts[0], Token: w.Token})
}
