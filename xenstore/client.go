package xenstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrClosed reports a request on a closed or broken connection. The cause
// of a broken connection is wrapped too.
var ErrClosed = errors.New("xenstore: connection closed")

// A Conn is a connection to the daemon: a unix socket or the xenbus device.
type Conn = io.ReadWriteCloser

// A Dialer opens a connection to the daemon.
type Dialer func(ctx context.Context) (Conn, error)

type reply struct {
	msg Message
	err error
}

// A Client is one connection to xenstored, safe for concurrent use:
// requests from many goroutines are pipelined on it and matched to their
// replies by request id; watch events are delivered on channels.
//
// The path operations (Read, Write, ...) are methods of the embedded
// handle, shared with Tx.
type Client struct {
	handle
	dial Dialer

	wmu  sync.Mutex // serialises writes of whole messages
	conn io.ReadWriteCloser

	mu      sync.Mutex
	pending map[uint32]chan reply
	nextID  uint32
	watches map[string]*Watch // by token
	broken  error
	done    chan struct{}

	// Redial (see the Redial option): while conn is nil the Client is
	// re-dialling and requests wait for ready. gen counts connections, so
	// that a transaction of an older one is known to be lost.
	redial   bool
	closed   bool
	closedCh chan struct{}
	ready    chan struct{}
	gen      uint64

	// serial makes requests one at a time: over /dev/xen/xenbus, as
	// libxenstore does there (see NewClient).
	serial   atomic.Bool
	serialMu sync.Mutex

	// transaction gate for Quiesce/Resume
	txMu      sync.Mutex
	txCond    *sync.Cond
	openTx    int
	quiesced  bool
	nextToken uint64
}

// NewClient returns a Client speaking over conn. It cannot Reconnect.
//
// Over a unix socket requests are pipelined. Over the xenbus device (an
// *os.File), the Linux driver relays requests through dom0's shared ring,
// and the lab showed replies of concurrent requests coming back under the
// wrong request id; there the Client sends one request at a time, as
// libxenstore does, and goroutines queue for the device.
func NewClient(conn io.ReadWriteCloser) *Client {
	c := &Client{closedCh: make(chan struct{})}
	c.handle = handle{c: c}
	c.txCond = sync.NewCond(&c.txMu)
	c.watches = map[string]*Watch{}
	c.start(conn)
	return c
}

// Options configure a Client: Options{...}.Dial(ctx, dial) makes one.
type Options struct {
	// Redial makes the Client ride through a daemon that drops its
	// connection (a restart; a live update of a daemon that does not keep
	// sockets): when the connection breaks, requests in flight fail with
	// ErrClosed (they may or may not have been applied), the Client dials
	// again with backoff until it connects or is closed, and meanwhile new
	// requests wait (bounded by their contexts). On the new connection it
	// registers every open Watch again, so each gets the event the daemon
	// fires for a new watch and C stays open; transactions of the old
	// connection fail with ErrTxLost (an EAGAIN), so Transaction runs them
	// again.
	Redial bool
}

// DialWith connects with dial and keeps it for Reconnect: Options{}.Dial.
func DialWith(ctx context.Context, dial Dialer) (*Client, error) {
	return Options{}.Dial(ctx, dial)
}

// Dial connects with dial and keeps it for Reconnect and, with Redial, for
// re-dialling by itself.
func (opt Options) Dial(ctx context.Context, dial Dialer) (*Client, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	c := NewClient(conn)
	c.mu.Lock()
	c.dial = dial
	c.redial = opt.Redial
	c.mu.Unlock()
	return c, nil
}

func (c *Client) start(conn io.ReadWriteCloser) {
	_, serial := conn.(*os.File)
	c.serial.Store(serial)
	c.conn = conn
	c.pending = map[uint32]chan reply{}
	c.broken = nil
	c.done = make(chan struct{})
	c.gen++
	go c.readLoop(conn, c.done)
}

// Close closes the connection; pending and later requests fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.closedCh)
	}
	c.mu.Unlock()
	c.fail(nil, ErrClosed)
	return nil
}

// Err returns why the connection broke, or nil while it works.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

// fail handles the breaking of conn (nil: whatever connection there is):
// it fails the requests waiting on it and, with Redial and unless the
// Client is closed, starts dialling again; otherwise the Client is broken
// and its watches are closed.
func (c *Client) fail(conn io.ReadWriteCloser, err error) { c.breakConn(conn, err, true) }

// breakConn is fail, with re-dialling allowed or not.
func (c *Client) breakConn(conn io.ReadWriteCloser, err error, redial bool) {
	c.mu.Lock()
	if c.broken != nil || (conn != nil && conn != c.conn) {
		c.mu.Unlock()
		return
	}
	if !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	pend := c.pending
	c.pending = map[uint32]chan reply{}
	old := c.conn
	if redial && c.redial && !c.closed && c.dial != nil {
		if old == nil {
			c.mu.Unlock()
			return // already re-dialling
		}
		c.conn = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
		old.Close()
		for _, ch := range pend {
			ch <- reply{err: err}
		}
		go c.redialLoop()
		return
	}
	c.broken = err
	watches := c.watches
	ready := c.ready
	c.ready = nil
	c.mu.Unlock()
	if old != nil {
		old.Close()
	}
	if ready != nil {
		close(ready)
	}
	for _, ch := range pend {
		ch <- reply{err: err}
	}
	for _, w := range watches {
		w.close(err)
	}
}

// redialLoop dials until it connects or the Client is closed, then
// registers the open watches again.
func (c *Client) redialLoop() {
	backoff := 10 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { // Close cancels the dial
			select {
			case <-c.closedCh:
				cancel()
			case <-ctx.Done():
			}
		}()
		conn, err := c.dial(ctx)
		cancel()
		if err == nil {
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				conn.Close()
				return
			}
			c.start(conn)
			ready := c.ready
			c.ready = nil
			watches := make([]*Watch, 0, len(c.watches))
			for _, w := range c.watches {
				watches = append(watches, w)
			}
			c.mu.Unlock()
			close(ready)
			for _, w := range watches {
				wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := c.request(wctx, 0, 0, OpWatch, w.Path, nul(w.Path, w.Token))
				wcancel()
				if err != nil && !errors.Is(err, syscall.EEXIST) {
					break // the new connection broke too: the next loop registers them
				}
			}
			return
		}
		select {
		case <-c.closedCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (c *Client) readLoop(conn io.ReadWriteCloser, done chan struct{}) {
	defer close(done)
	// Replies are read through a buffer: a header and its payload, and the
	// replies to pipelined requests that arrived together, take one read
	// instead of two each.
	r := bufio.NewReaderSize(conn, HeaderSize+PayloadMax)
	var buf []byte
	for {
		msg, b, err := ReadMessage(r, buf, ReplyMax)
		buf = b
		if err != nil {
			c.fail(conn, err)
			return
		}
		if msg.Op == OpWatchEvent {
			c.deliverWatch(msg.Payload)
			continue
		}
		c.mu.Lock()
		ch := c.pending[msg.ReqID]
		delete(c.pending, msg.ReqID)
		c.mu.Unlock()
		if ch == nil {
			continue // the caller gave up (context); drop the reply
		}
		ch <- reply{msg: Message{msg.Header, append([]byte(nil), msg.Payload...)}}
	}
}

// request sends one message and waits for its reply. A request of a
// transaction (tx != 0) opened on another connection than the current one
// (gen) fails with ErrTxLost.
func (c *Client) request(ctx context.Context, tx uint32, gen uint64, op Op, path string, payload []byte) ([]byte, error) {
	b, _, err := c.requestGen(ctx, tx, gen, op, path, payload)
	return b, err
}

// requestGen is request, also returning the generation of the connection
// the request went on.
func (c *Client) requestGen(ctx context.Context, tx uint32, gen uint64, op Op, path string, payload []byte) ([]byte, uint64, error) {
	if len(payload) > PayloadMax {
		return nil, 0, &Error{Op: op, Path: path, Errno: syscall.E2BIG, Name: "E2BIG"}
	}
	if c.serial.Load() {
		c.serialMu.Lock()
		defer c.serialMu.Unlock()
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	for c.conn == nil && c.broken == nil && c.ready != nil { // re-dialling
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-c.closedCh:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		c.mu.Lock()
	}
	if c.broken != nil {
		err := c.broken
		c.mu.Unlock()
		return nil, 0, err
	}
	if tx != 0 && gen != c.gen {
		c.mu.Unlock()
		return nil, 0, txLost(tx)
	}
	gen = c.gen
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	conn := c.conn
	c.mu.Unlock()

	msg := AppendMessage(make([]byte, 0, HeaderSize+len(payload)), Message{Header{op, id, tx, 0}, payload})
	c.wmu.Lock()
	_, err := conn.Write(msg)
	c.wmu.Unlock()
	if err != nil {
		c.fail(conn, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			if tx != 0 && op != OpTransactionEnd && c.redial && !c.isClosed() {
				return nil, gen, txLost(tx) // its connection broke
			}
			if op == OpTransactionEnd {
				return nil, gen, fmt.Errorf("%w (the connection broke with TRANSACTION_END in flight: the transaction may or may not have been applied)", r.err)
			}
			return nil, gen, r.err
		}
		if r.msg.Op == OpError {
			return nil, gen, errorFromReply(op, path, r.msg.Payload)
		}
		if r.msg.Op != op {
			return nil, gen, fmt.Errorf("%w: %v reply to %v", ErrProtocol, r.msg.Op, op)
		}
		return r.msg.Payload, gen, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, gen, ctx.Err()
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Reconnect replaces a broken connection with a new one from the Dialer the
// Client was made with. Watches of the old connection have been closed (their
// Err says why); register them again.
func (c *Client) Reconnect(ctx context.Context) error {
	if c.dial == nil {
		return errors.New("xenstore: client has no dialer (made by NewClient)")
	}
	c.mu.Lock()
	if c.conn == nil && c.broken == nil {
		c.mu.Unlock()
		return nil // re-dialling already (Redial)
	}
	c.mu.Unlock()
	c.breakConn(nil, ErrClosed, false)
	<-c.done
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.watches = map[string]*Watch{}
	c.start(conn)
	c.mu.Unlock()
	return nil
}

// handle carries the path operations of a Client (tx 0) or a transaction
// (opened on connection generation gen).
type handle struct {
	c   *Client
	tx  uint32
	gen uint64
}

func checkPath(op Op, path string) error {
	max := RelPathMax
	if strings.HasPrefix(path, "/") {
		max = AbsPathMax
	}
	if path == "" || len(path) > max {
		return &Error{Op: op, Path: path, Errno: syscall.EINVAL, Name: "EINVAL"}
	}
	return nil
}

func nul(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = append(append(b, p...), 0)
	}
	return b
}

func (h handle) pathOp(ctx context.Context, op Op, path string, payload []byte) ([]byte, error) {
	if err := checkPath(op, path); err != nil {
		return nil, err
	}
	return h.c.request(ctx, h.tx, h.gen, op, path, payload)
}

// Read returns the value of the node at path.
func (h handle) Read(ctx context.Context, path string) ([]byte, error) {
	return h.pathOp(ctx, OpRead, path, nul(path))
}

// Write sets the value of the node at path, creating it and its parents.
func (h handle) Write(ctx context.Context, path string, value []byte) error {
	_, err := h.pathOp(ctx, OpWrite, path, append(append([]byte(path), 0), value...))
	return err
}

// Mkdir creates the node at path (and its parents) with an empty value.
func (h handle) Mkdir(ctx context.Context, path string) error {
	_, err := h.pathOp(ctx, OpMkdir, path, nul(path))
	return err
}

// Rm removes the node at path and everything below it.
func (h handle) Rm(ctx context.Context, path string) error {
	_, err := h.pathOp(ctx, OpRm, path, nul(path))
	return err
}

// Directory lists the names of the children of path. When the list is too
// long for one reply it is fetched in parts with DIRECTORY_PART.
func (h handle) Directory(ctx context.Context, path string) ([]string, error) {
	b, err := h.pathOp(ctx, OpDirectory, path, nul(path))
	if err == nil {
		return splitNul(b), nil
	}
	if !errors.Is(err, syscall.E2BIG) {
		return nil, err
	}
	return h.directoryParts(ctx, path)
}

// DirectoryMax bounds the listing Directory assembles from DIRECTORY_PART
// replies: the names and their NUL terminators may total at most this many
// bytes. A daemon's node holds its children's names in one record, which
// xenstored keeps far below this; a listing that grows past it is refused
// with E2BIG rather than held.
const DirectoryMax = 1 << 20

// DirectoryAttempts bounds how often Directory restarts a DIRECTORY_PART
// listing because the directory's generation changed under it.
const DirectoryAttempts = 8

// directoryParts reads a long directory with DIRECTORY_PART: each reply is
// the generation count followed by names from the offset; an empty name ends
// the list. A changed generation means the directory changed: start again,
// at most DirectoryAttempts times. Every reply that does not end the list
// must carry at least one name, and the names may total at most
// DirectoryMax bytes, so a daemon that never ends the list costs at most
// DirectoryAttempts*DirectoryMax/2 requests and DirectoryMax bytes of names.
func (h handle) directoryParts(ctx context.Context, path string) ([]string, error) {
	for attempt := 0; attempt < DirectoryAttempts; attempt++ {
		var names []string
		gen, off := "", 0
		for {
			b, err := h.pathOp(ctx, OpDirectoryPart, path, nul(path, strconv.Itoa(off)))
			if err != nil {
				return nil, err
			}
			parts := splitNul(b)
			if len(parts) == 0 {
				return nil, fmt.Errorf("%w: empty DIRECTORY_PART reply", ErrProtocol)
			}
			if gen == "" {
				gen = parts[0]
			} else if parts[0] != gen {
				break // changed under us
			}
			finished := len(b) >= 2 && b[len(b)-1] == 0 && b[len(b)-2] == 0
			got := 0
			for _, n := range parts[1:] {
				if n == "" {
					finished = true
					break
				}
				if off+len(n)+1 > DirectoryMax {
					return nil, &Error{Op: OpDirectoryPart, Path: path, Errno: syscall.E2BIG, Name: "E2BIG"}
				}
				names = append(names, n)
				off += len(n) + 1
				got++
			}
			if finished {
				return names, nil
			}
			if got == 0 {
				return nil, fmt.Errorf("%w: DIRECTORY_PART reply at offset %d holds no name and does not end the list", ErrProtocol, off)
			}
		}
	}
	return nil, &Error{Op: OpDirectoryPart, Path: path, Errno: syscall.EAGAIN, Name: "EAGAIN"}
}

// GetPerms returns the permissions of the node at path.
func (h handle) GetPerms(ctx context.Context, path string) ([]Perm, error) {
	b, err := h.pathOp(ctx, OpGetPerms, path, nul(path))
	if err != nil {
		return nil, err
	}
	var perms []Perm
	for _, s := range splitNul(b) {
		p, err := ParsePerm(s)
		if err != nil {
			return nil, err
		}
		perms = append(perms, p)
	}
	return perms, nil
}

// SetPerms sets the permissions of the node at path; the first entry is the
// owner and the default access.
func (h handle) SetPerms(ctx context.Context, path string, perms []Perm) error {
	parts := []string{path}
	for _, p := range perms {
		parts = append(parts, p.String())
	}
	_, err := h.pathOp(ctx, OpSetPerms, path, nul(parts...))
	return err
}

// Exists reports whether the node at path exists.
func (h handle) Exists(ctx context.Context, path string) (bool, error) {
	_, err := h.Read(ctx, path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	return false, err
}

func (c *Client) simple(ctx context.Context, op Op, args ...string) ([]byte, error) {
	return c.request(ctx, 0, 0, op, "", nul(args...))
}

func did(d uint32) string { return strconv.FormatUint(uint64(d), 10) }

// GetDomainPath returns the home path of a domain, e.g. /local/domain/3.
func (c *Client) GetDomainPath(ctx context.Context, domid uint32) (string, error) {
	b, err := c.simple(ctx, OpGetDomainPath, did(domid))
	return string(trimNul(b)), err
}

// IsDomainIntroduced reports whether the daemon knows the domain.
func (c *Client) IsDomainIntroduced(ctx context.Context, domid uint32) (bool, error) {
	b, err := c.simple(ctx, OpIsDomainIntroduced, did(domid))
	return string(trimNul(b)) == "T", err
}

// Introduce tells the daemon about a new domain's xenstore ring page (its
// guest frame) and event channel.
func (c *Client) Introduce(ctx context.Context, domid uint32, gfn uint64, evtchn uint32) error {
	_, err := c.simple(ctx, OpIntroduce, did(domid), strconv.FormatUint(gfn, 10), did(evtchn))
	return err
}

// Release tells the daemon that a domain is gone.
func (c *Client) Release(ctx context.Context, domid uint32) error {
	_, err := c.simple(ctx, OpRelease, did(domid))
	return err
}

// ResumeDomain sends RESUME: it clears the shutdown flag of a domain after a
// failed suspend, so the daemon serves it again.
func (c *Client) ResumeDomain(ctx context.Context, domid uint32) error {
	_, err := c.simple(ctx, OpResume, did(domid))
	return err
}

// SetTarget gives domain domid the privileges of a device model over target.
func (c *Client) SetTarget(ctx context.Context, domid, target uint32) error {
	_, err := c.simple(ctx, OpSetTarget, did(domid), did(target))
	return err
}

// ResetWatches removes every watch of this connection in the daemon.
func (c *Client) ResetWatches(ctx context.Context) error {
	_, err := c.simple(ctx, OpResetWatches, "")
	return err
}

// Control sends a CONTROL command (e.g. "log", "memreport", "quota") and
// returns the daemon's textual answer.
func (c *Client) Control(ctx context.Context, cmd string, args ...string) (string, error) {
	b, err := c.simple(ctx, OpControl, append([]string{cmd}, args...)...)
	return string(trimNul(b)), err
}

// GetFeature returns the feature bits of a domain's connection (daemons
// without the operation answer ENOSYS or EINVAL).
func (c *Client) GetFeature(ctx context.Context, domid uint32) (uint32, error) {
	b, err := c.simple(ctx, OpGetFeature, did(domid))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(trimNul(b)), 10, 32)
	return uint32(v), err
}

// SetFeature sets the feature bits of a domain's connection.
func (c *Client) SetFeature(ctx context.Context, domid, features uint32) error {
	_, err := c.simple(ctx, OpSetFeature, did(domid), did(features))
	return err
}

// GetQuota returns the global quota name (GET_QUOTA).
func (c *Client) GetQuota(ctx context.Context, name string) (uint32, error) {
	return c.getQuota(ctx, name)
}

// GetDomainQuota returns domain domid's quota name.
func (c *Client) GetDomainQuota(ctx context.Context, domid uint32, name string) (uint32, error) {
	return c.getQuota(ctx, did(domid), name)
}

func (c *Client) getQuota(ctx context.Context, args ...string) (uint32, error) {
	b, err := c.simple(ctx, OpGetQuota, args...)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(trimNul(b)), 10, 32)
	return uint32(v), err
}

// SetQuota sets the global quota name (SET_QUOTA).
func (c *Client) SetQuota(ctx context.Context, name string, value uint32) error {
	_, err := c.simple(ctx, OpSetQuota, name, did(value))
	return err
}

// SetDomainQuota sets domain domid's quota name.
func (c *Client) SetDomainQuota(ctx context.Context, domid uint32, name string, value uint32) error {
	_, err := c.simple(ctx, OpSetQuota, did(domid), name, did(value))
	return err
}

// A Tx is an open transaction. Its path operations see the transaction's
// view; Commit or Abort ends it.
type Tx struct {
	handle
	ended bool
}

// TransactionStart opens a transaction. It waits while the Client is
// quiesced.
func (c *Client) TransactionStart(ctx context.Context) (*Tx, error) {
	if err := c.enterTx(ctx); err != nil {
		return nil, err
	}
	b, gen, err := c.requestGen(ctx, 0, 0, OpTransactionStart, "", nul(""))
	if err != nil {
		c.leaveTx()
		return nil, err
	}
	id, err := strconv.ParseUint(string(trimNul(b)), 10, 32)
	if err != nil {
		c.leaveTx()
		return nil, fmt.Errorf("%w: transaction id %q", ErrProtocol, b)
	}
	return &Tx{handle: handle{c: c, tx: uint32(id), gen: gen}}, nil
}

// ID returns the daemon's transaction id.
func (t *Tx) ID() uint32 { return t.tx }

// ErrTxLost reports a transaction the daemon no longer knows: it answered
// TRANSACTION_END with ENOENT, as C xenstored does after a live update
// (which keeps connections but not their transactions), or the connection
// it was opened on was replaced. Nothing of the transaction was committed.
// Errors wrapping it also match syscall.EAGAIN, so Transaction retries.
var ErrTxLost = errors.New("xenstore: transaction lost by the daemon (restart or live update); nothing committed")

func txLost(tx uint32) error {
	return fmt.Errorf("%w: %w", ErrTxLost, &Error{Op: OpTransactionEnd, Path: "tx " + strconv.FormatUint(uint64(tx), 10), Errno: syscall.EAGAIN, Name: "EAGAIN"})
}

func (t *Tx) end(ctx context.Context, commit string) error {
	if t.ended {
		return errors.New("xenstore: transaction already ended")
	}
	t.ended = true
	defer t.c.leaveTx()
	_, err := t.c.request(ctx, t.tx, t.gen, OpTransactionEnd, "", nul(commit))
	if errors.Is(err, syscall.ENOENT) {
		return txLost(t.tx)
	}
	return err
}

// Commit ends the transaction, applying its changes; an error matching
// syscall.EAGAIN means another change conflicted and nothing was applied.
func (t *Tx) Commit(ctx context.Context) error { return t.end(ctx, "T") }

// Abort ends the transaction, discarding its changes.
func (t *Tx) Abort(ctx context.Context) error { return t.end(ctx, "F") }

// TxRetries bounds how often Transaction retries a conflicting transaction.
const TxRetries = 32

// Transaction runs fn in a transaction and commits it, retrying the whole of
// fn (with backoff, at most TxRetries times) while the commit reports
// EAGAIN, including a transaction the daemon lost (ErrTxLost). An error from
// fn aborts the transaction and is returned, unless the abort shows that
// the daemon had lost the transaction: then fn runs again.
func (c *Client) Transaction(ctx context.Context, fn func(tx *Tx) error) error {
	backoff := time.Millisecond
	for attempt := 0; ; attempt++ {
		tx, err := c.TransactionStart(ctx)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			// An abort the daemon answers with ENOENT means it had lost
			// the transaction, and fn's error (often ENOENT too) came
			// from that: run fn again.
			if aerr := tx.Abort(context.WithoutCancel(ctx)); errors.Is(aerr, ErrTxLost) && attempt+1 < TxRetries {
				continue
			}
			return err
		}
		err = tx.Commit(ctx)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || attempt+1 >= TxRetries {
			return err
		}
		d := backoff/2 + rand.N(backoff)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

func (c *Client) enterTx(ctx context.Context) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.quiesced {
		stop := context.AfterFunc(ctx, func() {
			c.txMu.Lock()
			c.txCond.Broadcast()
			c.txMu.Unlock()
		})
		defer stop()
		for c.quiesced && ctx.Err() == nil {
			c.txCond.Wait()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	c.openTx++
	return nil
}

func (c *Client) leaveTx() {
	c.txMu.Lock()
	c.openTx--
	c.txCond.Broadcast()
	c.txMu.Unlock()
}

// Quiesce stops new transactions from starting and waits until the open ones
// have ended, so that no caller holds a transaction across a suspend (the
// hang of FreeBSD EN-17:05). It returns ctx's error if they do not end in
// time; the Client stays quiesced until Resume either way.
func (c *Client) Quiesce(ctx context.Context) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	c.quiesced = true
	stop := context.AfterFunc(ctx, func() {
		c.txMu.Lock()
		c.txCond.Broadcast()
		c.txMu.Unlock()
	})
	defer stop()
	for c.openTx > 0 && ctx.Err() == nil {
		c.txCond.Wait()
	}
	if c.openTx > 0 {
		return fmt.Errorf("xenstore: quiesce: %d transactions still open: %w", c.openTx, ctx.Err())
	}
	return nil
}

// Resume lets transactions start again after Quiesce.
func (c *Client) Resume() {
	c.txMu.Lock()
	c.quiesced = false
	c.txCond.Broadcast()
	c.txMu.Unlock()
}

// OpenTransactions returns the number of transactions open on this Client.
func (c *Client) OpenTransactions() int {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	return c.openTx
}
