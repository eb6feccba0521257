package xenstore

import (
	"context"
	"strconv"
	"sync"
)

// An Event is one watch firing: the path that changed (or the watched path,
// for the event every new watch fires at once) and the watch's token.
type Event struct {
	Path  string
	Token string
}

// WatchBuffer is how many undelivered events a Watch queues. When a
// receiver falls further behind, the oldest events are dropped and Dropped
// counts them: a watcher must re-read the state anyway, as xenstore only
// promises that a change fires the watch, not one event per change.
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
	if _, err := c.request(ctx, 0, OpWatch, path, nul(path, token)); err != nil {
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
		_, err = w.c.request(ctx, 0, OpUnwatch, w.Path, nul(w.Path, w.Token))
	}
	w.close(nil)
	return err
}

// Dropped returns how many events were dropped because C was full.
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

func (w *Watch) send(ev Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for {
		select {
		case w.ch <- ev:
			return
		default:
		}
		select { // full: drop the oldest
		case <-w.ch:
			w.dropped++
		default:
		}
	}
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
	if w != nil {
		w.send(Event{Path: parts[0], Token: parts[1]})
	}
}
