// Package xenstoretest is an in-memory xenstored for tests, in the spirit of
// net/http/httptest: it speaks the wire protocol over any connection and
// keeps a tree with values, permissions, watches and transactions.
//
// It models what the conformance suite asserts of the real daemons: nodes
// created with their parents, removal of subtrees, permission lists,
// watches that fire on registration and on every change at or below their
// path (and on @introduceDomain/@releaseDomain), transactions that see a
// private copy of the tree and fail their commit with EAGAIN when another
// change was committed meanwhile, DIRECTORY_PART, and the payload limit. It
// runs every connection as dom0, which the daemons exempt from permission
// checks, and enforces no quotas.
//
// SetFaults makes it misbehave the way a broken or hostile daemon might, and
// FireAll sends watch events of any size, so that tests can check that a
// client bounds what such a daemon costs it.
package xenstoretest

import (
	"context"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/xensr/xensr/xenstore"
)

type node struct {
	value    []byte
	perms    []string
	children map[string]bool
}

type tree map[string]*node

func (t tree) clone() tree {
	c := make(tree, len(t))
	for p, n := range t {
		ch := make(map[string]bool, len(n.children))
		for k := range n.children {
			ch[k] = true
		}
		c[p] = &node{value: n.value, perms: append([]string(nil), n.perms...), children: ch}
	}
	return c
}

type txn struct {
	tree tree
	gen  uint64
	conn *conn
}

// A Server is an in-memory xenstored.
type Server struct {
	mu      sync.Mutex
	tree    tree
	gen     uint64 // bumped by every committed change
	nextTx  uint32
	txs     map[uint32]*txn
	conns   map[*conn]bool
	domains map[uint32]bool
	faults  Faults
	fresh   int // names made up by DirectoryPartEndless
}

// Faults makes a Server misbehave. The zero value is a correct daemon.
type Faults struct {
	// DirectoryPartEndless: DIRECTORY_PART replies never end the listing;
	// each holds about 4 KiB of names never sent before and no terminator.
	DirectoryPartEndless bool
	// DirectoryPartEmpty: DIRECTORY_PART replies hold the generation only,
	// neither a name nor the terminator.
	DirectoryPartEmpty bool
	// DirectoryPartNewGen: every DIRECTORY_PART reply carries a generation
	// never sent before, as if the directory changed between every two
	// requests.
	DirectoryPartNewGen bool
}

// Restart drops every connection, with its watches and transactions, and
// keeps the tree: what clients see when the daemon restarts, or re-executes
// itself in a live update without keeping sockets.
func (s *Server) Restart() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.rw.Close()
	}
}

// ForgetTransactions drops every open transaction and keeps connections
// and watches: what C xenstored's live update does (it hands sockets and
// watches to the new daemon but not transactions). Their requests then get
// ENOENT.
func (s *Server) ForgetTransactions() {
	s.mu.Lock()
	s.txs = map[uint32]*txn{}
	s.mu.Unlock()
}

// SetFaults sets how the Server misbehaves from now on.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// FireAll sends one WATCH_EVENT naming path to every watch of every
// connection, whatever the watch's path, without checking path against the
// protocol's limits (it may be megabytes long). It returns how many events it
// sent.
func (s *Server) FireAll(path string) int {
	s.mu.Lock()
	var evs []event
	for c := range s.conns {
		for _, w := range c.watches {
			evs = append(evs, event{c, path, w.token})
		}
	}
	s.mu.Unlock()
	for _, ev := range evs {
		ev.c.send(xenstore.Message{Header: xenstore.Header{Op: xenstore.OpWatchEvent}, Payload: nul(ev.path, ev.token)})
	}
	return len(evs)
}

type watch struct{ path, token string }

type conn struct {
	rw      io.ReadWriteCloser
	wmu     sync.Mutex
	watches []watch
}

// NewServer returns a Server holding "/", /local/domain/0 and dom0 introduced.
func NewServer() *Server {
	s := &Server{tree: tree{"/": {perms: []string{"n0"}, children: map[string]bool{}}},
		txs: map[uint32]*txn{}, conns: map[*conn]bool{}, domains: map[uint32]bool{0: true}}
	s.tree.mkdirAll("/local/domain/0")
	return s
}

// Dial returns a client end of a new in-memory connection to the Server,
// fit to be a xenstore.Dialer.
func (s *Server) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	a, b := net.Pipe()
	go s.Serve(b)
	return a, nil
}

// Serve answers requests on rw until it fails or is closed.
func (s *Server) Serve(rw io.ReadWriteCloser) {
	c := &conn{rw: rw}
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		for id, t := range s.txs {
			if t.conn == c {
				delete(s.txs, id)
			}
		}
		s.mu.Unlock()
		rw.Close()
	}()
	var buf []byte
	for {
		msg, b, err := xenstore.ReadMessage(rw, buf, xenstore.PayloadMax)
		buf = b
		if err != nil {
			return
		}
		s.mu.Lock()
		op, payload, events := s.handle(c, msg)
		s.mu.Unlock()
		c.send(xenstore.Message{Header: xenstore.Header{Op: op, ReqID: msg.ReqID, TxID: msg.TxID}, Payload: payload})
		for _, ev := range events {
			ev.c.send(xenstore.Message{Header: xenstore.Header{Op: xenstore.OpWatchEvent}, Payload: nul(ev.path, ev.token)})
		}
	}
}

func (c *conn) send(m xenstore.Message) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.rw.Write(xenstore.AppendMessage(nil, m))
}

type event struct {
	c           *conn
	path, token string
}

func nul(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = append(append(b, p...), 0)
	}
	return b
}

func split(b []byte) []string {
	s := string(b)
	s = strings.TrimSuffix(s, "\x00")
	return strings.Split(s, "\x00")
}

func errReply(name string) (xenstore.Op, []byte, []event) {
	return xenstore.OpError, nul(name), nil
}

var ok = nul("OK")

func validPath(p string) bool {
	if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "@") {
		return false
	}
	if len(p) > xenstore.AbsPathMax || (p != "/" && strings.HasSuffix(p, "/")) || strings.Contains(p, "//") {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-/_@", r)) {
			return false
		}
	}
	return true
}

func parent(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func (t tree) mkdirAll(p string) bool {
	if _, ok := t[p]; ok {
		return false
	}
	if p != "/" {
		t.mkdirAll(parent(p))
		pp := t[parent(p)]
		pp.children[p[strings.LastIndex(p, "/")+1:]] = true
		t[p] = &node{perms: append([]string(nil), pp.perms...), children: map[string]bool{}}
	}
	return true
}

func (t tree) rm(p string) {
	n := t[p]
	for ch := range n.children {
		t.rm(strings.TrimSuffix(p, "/") + "/" + ch)
	}
	delete(t, p)
	if pp := t[parent(p)]; pp != nil {
		delete(pp.children, p[strings.LastIndex(p, "/")+1:])
	}
}

// fire returns the events for a change of path: watches at or above it, and
// (for a removal) below it.
func (s *Server) fire(path string, removal bool) []event {
	var evs []event
	for c := range s.conns {
		for _, w := range c.watches {
			if under(path, w.path) || (removal && under(w.path, path)) {
				evs = append(evs, event{c, path, w.token})
			}
		}
	}
	return evs
}

// under reports whether p is at or below dir.
func under(p, dir string) bool {
	return p == dir || dir == "/" && strings.HasPrefix(p, "/") || strings.HasPrefix(p, dir+"/")
}

func (s *Server) handle(c *conn, m xenstore.Message) (xenstore.Op, []byte, []event) {
	args := split(m.Payload)
	t := s.tree
	var tx *txn
	if m.TxID != 0 && m.Op != xenstore.OpTransactionEnd {
		if tx = s.txs[m.TxID]; tx == nil || tx.conn != c {
			return errReply("ENOENT")
		}
		t = tx.tree
	}
	path := args[0]
	needPath := func() bool { return validPath(path) }
	// commit applies a change to the live tree (or the transaction's copy)
	// and returns the events it fires.
	changed := func(removal bool) []event {
		if tx != nil {
			return nil
		}
		s.gen++
		return s.fire(path, removal)
	}
	switch m.Op {
	case xenstore.OpRead:
		if !needPath() {
			return errReply("EINVAL")
		}
		n := t[path]
		if n == nil {
			return errReply("ENOENT")
		}
		return m.Op, append([]byte(nil), n.value...), nil
	case xenstore.OpWrite:
		i := strings.IndexByte(string(m.Payload), 0)
		if i < 0 {
			return errReply("EINVAL")
		}
		path = string(m.Payload[:i])
		if !needPath() || strings.HasPrefix(path, "@") {
			return errReply("EINVAL")
		}
		t.mkdirAll(path)
		t[path].value = append([]byte(nil), m.Payload[i+1:]...)
		return m.Op, ok, changed(false)
	case xenstore.OpMkdir:
		if !needPath() {
			return errReply("EINVAL")
		}
		if !t.mkdirAll(path) {
			return m.Op, ok, nil
		}
		return m.Op, ok, changed(false)
	case xenstore.OpRm:
		if !needPath() || path == "/" {
			return errReply("EINVAL")
		}
		if t[path] == nil {
			if t[parent(path)] != nil {
				return m.Op, ok, nil
			}
			return errReply("ENOENT")
		}
		t.rm(path)
		return m.Op, ok, changed(true)
	case xenstore.OpDirectory, xenstore.OpDirectoryPart:
		if !needPath() {
			return errReply("EINVAL")
		}
		n := t[path]
		if n == nil {
			return errReply("ENOENT")
		}
		names := make([]string, 0, len(n.children))
		for k := range n.children {
			names = append(names, k)
		}
		sort.Strings(names)
		if m.Op == xenstore.OpDirectory {
			b := nul(names...)
			if len(b) > xenstore.PayloadMax {
				return errReply("E2BIG")
			}
			return m.Op, b, nil
		}
		if len(args) < 2 {
			return errReply("EINVAL")
		}
		off, err := strconv.Atoi(args[1])
		if err != nil {
			return errReply("EINVAL")
		}
		b := nul(strconv.FormatUint(s.gen, 10))
		if s.faults.DirectoryPartNewGen {
			s.fresh++
			b = nul(strconv.FormatUint(s.gen, 10) + "-" + strconv.Itoa(s.fresh))
		}
		switch {
		case s.faults.DirectoryPartEmpty:
			return m.Op, b, nil
		case s.faults.DirectoryPartEndless:
			for len(b) < xenstore.PayloadMax-64 {
				s.fresh++
				b = append(b, nul("name-made-up-by-a-hostile-daemon-"+strconv.Itoa(s.fresh))...)
			}
			return m.Op, b, nil
		}
		all := nul(names...)
		if off > len(all) {
			return errReply("EINVAL")
		}
		rest := all[off:]
		room := xenstore.PayloadMax - len(b) - 1
		if len(rest) <= room {
			return m.Op, append(append(b, rest...), 0), nil
		}
		cut := strings.LastIndexByte(string(rest[:room]), 0) + 1
		return m.Op, append(b, rest[:cut]...), nil
	case xenstore.OpGetPerms:
		if !needPath() {
			return errReply("EINVAL")
		}
		n := t[path]
		if n == nil {
			return errReply("ENOENT")
		}
		return m.Op, nul(n.perms...), nil
	case xenstore.OpSetPerms:
		if !needPath() || len(args) < 2 {
			return errReply("EINVAL")
		}
		n := t[path]
		if n == nil {
			return errReply("ENOENT")
		}
		for _, p := range args[1:] {
			if _, err := xenstore.ParsePerm(p); err != nil {
				return errReply("EINVAL")
			}
		}
		n.perms = append([]string(nil), args[1:]...)
		return m.Op, ok, changed(false)
	case xenstore.OpWatch:
		if len(args) < 2 || !needPath() {
			return errReply("EINVAL")
		}
		for _, w := range c.watches {
			if w.path == path && w.token == args[1] {
				return errReply("EEXIST")
			}
		}
		c.watches = append(c.watches, watch{path, args[1]})
		return m.Op, ok, []event{{c, path, args[1]}}
	case xenstore.OpUnwatch:
		if len(args) < 2 {
			return errReply("EINVAL")
		}
		for i, w := range c.watches {
			if w.path == path && w.token == args[1] {
				c.watches = append(c.watches[:i], c.watches[i+1:]...)
				return m.Op, ok, nil
			}
		}
		return errReply("ENOENT")
	case xenstore.OpResetWatches:
		c.watches = nil
		return m.Op, ok, nil
	case xenstore.OpTransactionStart:
		s.nextTx++
		s.txs[s.nextTx] = &txn{tree: s.tree.clone(), gen: s.gen, conn: c}
		return m.Op, nul(strconv.FormatUint(uint64(s.nextTx), 10)), nil
	case xenstore.OpTransactionEnd:
		tx := s.txs[m.TxID]
		if tx == nil || tx.conn != c {
			return errReply("ENOENT")
		}
		delete(s.txs, m.TxID)
		if path != "T" {
			return m.Op, ok, nil
		}
		if tx.gen != s.gen {
			return errReply("EAGAIN")
		}
		var evs []event
		changed := false
		for p := range unionKeys(s.tree, tx.tree) {
			a, b := s.tree[p], tx.tree[p]
			if a == nil || b == nil || string(a.value) != string(b.value) || strings.Join(a.perms, ",") != strings.Join(b.perms, ",") {
				changed = true
				evs = append(evs, s.fire(p, b == nil)...)
			}
		}
		if changed {
			s.gen++
		}
		s.tree = tx.tree
		return m.Op, ok, evs
	case xenstore.OpGetDomainPath:
		d, err := strconv.ParseUint(path, 10, 32)
		if err != nil {
			return errReply("EINVAL")
		}
		return m.Op, nul("/local/domain/" + strconv.FormatUint(d, 10)), nil
	case xenstore.OpIsDomainIntroduced:
		d, err := strconv.ParseUint(path, 10, 32)
		if err != nil {
			return errReply("EINVAL")
		}
		if s.domains[uint32(d)] {
			return m.Op, nul("T"), nil
		}
		return m.Op, nul("F"), nil
	case xenstore.OpIntroduce, xenstore.OpRelease:
		d, err := strconv.ParseUint(path, 10, 32)
		if err != nil || (m.Op == xenstore.OpIntroduce && len(args) < 3) {
			return errReply("EINVAL")
		}
		special := "@introduceDomain"
		if m.Op == xenstore.OpRelease {
			if !s.domains[uint32(d)] {
				return errReply("ENOENT")
			}
			delete(s.domains, uint32(d))
			special = "@releaseDomain"
		} else {
			s.domains[uint32(d)] = true
		}
		return m.Op, ok, s.fire(special, false)
	case xenstore.OpResume, xenstore.OpSetTarget:
		if _, err := strconv.ParseUint(path, 10, 32); err != nil {
			return errReply("EINVAL")
		}
		return m.Op, ok, nil
	}
	return errReply("ENOSYS")
}

func unionKeys(a, b tree) map[string]bool {
	m := make(map[string]bool, len(a)+len(b))
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}
