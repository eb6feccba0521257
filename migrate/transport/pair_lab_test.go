//go:build linux

package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/migrate"
)

// The two-host lab (internal/xenlab/pair.sh) runs TestLabPair in both
// dom0s: XENSR_PAIR_ROLE is "source" or "target", XENSR_PAIR_PEER the other
// host's address on the private link.
const (
	envPairRole = "XENSR_PAIR_ROLE"
	envPairPeer = "XENSR_PAIR_PEER"
	envPairLoad = "XENSR_PAIR_DIRTY" // MiB/s of the loaded runs (default 4)
	// envPairConnect makes TestLabPairConnect carry stdin/stdout to HOST:PORT.
	envPairConnect = "XENSR_PAIR_CONNECT"

	portGo      = 7000 // Receiver (Go -> Go)
	portXLRecv  = 7001 // bridge to `xl migrate-receive`
	portControl = 7002 // the source's questions to the target
	portGoXL    = 7003 // migrate.Receive (xl migrate -> Go)

	pairGuest = "guest3" // PVH: migrate saves HVM/PVH guests only
)

// tick is one console counter line and when it was seen.
type tick struct {
	At time.Time
	N  int
}

// ticker records the counter lines of every console log of a guest (its
// name with any suffix), polling every 20 ms.
type ticker struct {
	mu    sync.Mutex
	ticks []tick
	sizes map[string]int64
	rest  map[string]string
}

var counterLine = regexp.MustCompile(`counter=(\d+)`)

func newTicker(ctx context.Context, name string) *ticker {
	tk := &ticker{sizes: map[string]int64{}, rest: map[string]string{}}
	go func() {
		for ctx.Err() == nil {
			files, _ := filepath.Glob(filepath.Join(labtest.ConsoleDir, "guest-"+name+"*.log"))
			for _, f := range files {
				tk.poll(f)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return tk
}

func (tk *ticker) poll(f string) {
	fh, err := os.Open(f)
	if err != nil {
		return
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	off := tk.sizes[f]
	if st.Size() < off {
		off, tk.rest[f] = 0, ""
	}
	if st.Size() == off {
		return
	}
	b := make([]byte, st.Size()-off)
	n, _ := fh.ReadAt(b, off)
	tk.sizes[f] = off + int64(n)
	now := time.Now()
	s := tk.rest[f] + string(b[:n])
	lines := strings.Split(s, "\n")
	tk.rest[f] = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		if m := counterLine.FindStringSubmatch(l); m != nil {
			v, _ := strconv.Atoi(m[1])
			tk.ticks = append(tk.ticks, tick{now, v})
		}
	}
}

func (tk *ticker) all() []tick {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return append([]tick(nil), tk.ticks...)
}

func (tk *ticker) reset() {
	tk.mu.Lock()
	tk.ticks = nil
	tk.mu.Unlock()
}

// control is one request of the source to the target.
type control struct {
	Op   string // time, ticks, reset, list, create, destroy, stats, migrate, quit
	Name string
	Path string // migrate: the path (see migrateOut)
}

// reply is the target's answer.
type reply struct {
	Now    int64 // target clock, unix ns
	Ticks  []tick
	Names  []string
	Wire   int64  // bytes the last bridge or receiver read
	Err    string // the last receiver's or bridge's error
	Out    string
	Result pairResult // migrate
}

// bridgeStats is what the target knows of the last incoming migration.
type bridgeStats struct {
	mu   sync.Mutex
	wire int64
	err  string
	out  string
}

func (b *bridgeStats) set(wire int64, err error, out string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wire, b.err, b.out = wire, "", out
	if err != nil {
		b.err = err.Error()
	}
}

// countConnReader counts what is read from a connection.
type countConnReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countConnReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func xlNames() []string {
	out, _ := labtest.RunErr("xl", "list")
	var names []string
	for i, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 0 && f[0] != "Domain-0" {
			names = append(names, f[0])
		}
	}
	return names
}

func destroyAll(prefix string) {
	for _, n := range xlNames() {
		if strings.HasPrefix(n, prefix) {
			labtest.RunErr("xl", "destroy", n)
		}
	}
}

// TestLabPairConnect is the transport `xl migrate -s` runs in the
// two-host lab: stdin to HOST:PORT and back to stdout. It exits the process
// itself so that nothing else reaches stdout.
func TestLabPairConnect(t *testing.T) {
	addr := os.Getenv(envPairConnect)
	if addr == "" {
		t.Skip("the two-host lab's connector: needs " + envPairConnect)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	done := make(chan struct{})
	go func() {
		io.CopyBuffer(os.Stdout, c, make([]byte, 1<<20))
		close(done)
	}()
	io.CopyBuffer(c, os.Stdin, make([]byte, 1<<20))
	c.(*net.TCPConn).CloseWrite()
	<-done
	os.Exit(0)
}

// TestLabPair is both halves of the two-host lab.
func TestLabPair(t *testing.T) {
	role := os.Getenv(envPairRole)
	if role == "" {
		t.Skip("needs the two-host lab: bash scripts/lab-pair.sh")
	}
	labtest.Require(t)
	switch role {
	case "target":
		pairTarget(t, os.Getenv(envPairPeer))
	case "source":
		pairSource(t, os.Getenv(envPairPeer))
	default:
		t.Fatalf("%s=%q", envPairRole, role)
	}
}

func listen(t *testing.T, port int) net.Listener {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// pairResult is one line of the results table.
type pairResult struct {
	Path, Load, From string
	OK               bool
	Total            time.Duration
	Downtime         time.Duration // Go paths: suspend to RUNNING (go->xl: to the stream's end)
	TickGap          time.Duration // last counter line at the origin to the first at the destination
	LastSrc          int
	FirstDst         int
	Wire             int64
	Err              string
}

// host is what both roles share: Xen, the receivers and the guest's ticks.
type host struct {
	t            *testing.T
	h            *migrate.Host
	tk           *ticker
	stats        bridgeStats
	major, minor uint32
	peer         string
	scripts      map[int]string
}

func newHost(t *testing.T, ctx context.Context, peerAddr string) *host {
	h, err := migrate.OpenHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	x := &host{t: t, h: h, tk: newTicker(ctx, pairGuest), peer: peerAddr, scripts: map[int]string{}}
	if x.major, x.minor, err = h.X.Version(); err != nil {
		t.Fatal(err)
	}
	// xl migrate runs "SSHCOMMAND HOST xl migrate-receive ...": the script
	// ignores the command and carries stdin/stdout to a port of HOST,
	// through this test binary (TestLabPairConnect): busybox nc moved
	// 0.5 MB/s on the lab's link where Go moved 5.7 MB/s.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{portXLRecv, portGoXL} {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("connect-%d.sh", port))
		os.WriteFile(f, []byte(fmt.Sprintf("#!/bin/sh\nexec env %s=\"$1:%d\" %s -test.run '^TestLabPairConnect$'\n", envPairConnect, port, self)), 0o755)
		x.scripts[port] = f
	}
	// Go -> Go.
	rcv := &Receiver{Target: HostTarget(h.Builder(), h.Toolstack()), Logf: t.Logf}
	go rcv.Serve(ctx, listen(t, portGo), func(r *Received, err error) {
		var wire int64
		if r != nil {
			wire = r.WireBytes
		}
		x.stats.set(wire, err, "")
		t.Logf("PAIR receiver: %+v err=%v", r, err)
	})
	// -> xl migrate-receive, and xl migrate -> migrate.Receive.
	serveRaw := func(l net.Listener, handle func(c net.Conn, cr *countConnReader) (string, error)) {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				cr := &countConnReader{r: c}
				out, err := handle(c, cr)
				c.Close()
				x.stats.set(cr.n.Load(), err, out)
				t.Logf("PAIR %v: wire %d err=%v\n%s", l.Addr(), cr.n.Load(), err, out)
			}
		}()
	}
	serveRaw(listen(t, portXLRecv), func(c net.Conn, cr *countConnReader) (string, error) {
		cmd := exec.CommandContext(ctx, "xl", "migrate-receive")
		var errb strings.Builder
		cmd.Stdin, cmd.Stdout, cmd.Stderr = cr, c, &errb
		err := cmd.Run()
		return errb.String(), err
	})
	serveRaw(listen(t, portGoXL), func(c net.Conn, cr *countConnReader) (string, error) {
		_, err := migrate.Receive(ctx, h.Builder(), h.Toolstack(), cr, c, migrate.RestoreOptions{})
		return "", err
	})
	return x
}

func (x *host) domid() (*migrate.XenDomain, error) {
	out, err := labtest.RunErr("xl", "domid", pairGuest)
	if err != nil {
		return nil, fmt.Errorf("xl domid %s: %v %s", pairGuest, err, out)
	}
	id, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return nil, fmt.Errorf("xl domid: %q", out)
	}
	return x.h.Domain(uint32(id)), nil
}

func (x *host) saveOpt(d *migrate.XenDomain) (migrate.SaveOptions, error) {
	config, err := d.Config()
	return migrate.SaveOptions{Live: true, Config: config, XenMajor: x.major, XenMinor: x.minor}, err
}

// migrateOut sends the guest from this host to the peer along path: xl->xl,
// go-ENCODING, go->xl or xl->go. Wire bytes of the xl paths are counted at
// the receiving end.
func (x *host) migrateOut(ctx context.Context, path string) (r pairResult) {
	r.Path = path
	fail := func(err error) pairResult {
		r.Err = err.Error()
		return r
	}
	d, err := x.domid()
	if err != nil {
		return fail(err)
	}
	switch {
	case path == "xl->xl" || path == "xl->go":
		port := portXLRecv
		if path == "xl->go" {
			port = portGoXL
		}
		start := time.Now()
		out, err := labtest.RunErr("xl", "migrate", "-s", "sh "+x.scripts[port], pairGuest, x.peer)
		r.Total = time.Since(start)
		x.t.Logf("xl migrate (%s): %v\n%s", path, err, out)
		if err != nil {
			return fail(fmt.Errorf("xl migrate: %v: %s", err, lastLine(out)))
		}
	case path == "go->xl":
		opt, err := x.saveOpt(d)
		if err != nil {
			return fail(err)
		}
		conn, err := net.Dial("tcp", net.JoinHostPort(x.peer, strconv.Itoa(portXLRecv)))
		if err != nil {
			return fail(err)
		}
		defer conn.Close()
		m := &migrate.Migration{Send: conn, Recv: conn, Rename: d.Rename, Name: pairGuest, Logf: x.t.Logf}
		start := time.Now()
		st, err := m.Run(ctx, migrate.NewSaver(d, opt))
		r.Total, r.Downtime, r.Wire = time.Since(start), st.Downtime, st.Bytes
		if err != nil {
			return fail(err)
		}
	case strings.HasPrefix(path, "go-"):
		opt, err := x.saveOpt(d)
		if err != nil {
			return fail(err)
		}
		conn, err := Dial(ctx, net.JoinHostPort(x.peer, strconv.Itoa(portGo)), nil)
		if err != nil {
			return fail(err)
		}
		snd := &Sender{Encodings: []string{strings.TrimPrefix(path, "go-")}, Rename: d.Rename, Logf: x.t.Logf}
		res, err := snd.Send(ctx, conn, d, pairGuest, opt)
		r.Total, r.Downtime, r.Wire = res.Total, res.Downtime, res.WireBytes
		x.t.Logf("%s rounds: %+v", path, res.Save.Rounds)
		if err != nil {
			return fail(err)
		}
	default:
		return fail(fmt.Errorf("unknown path %q", path))
	}
	r.OK = true
	return r
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

func pairTarget(t *testing.T, peerAddr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	x := newHost(t, ctx, peerAddr)
	lc := listen(t, portControl)
	t.Logf("PAIR-TARGET ready")
	// One control connection: when the source goes (quit, or its test
	// process ends), so does the target.
	lc.(*net.TCPListener).SetDeadline(time.Now().Add(15 * time.Minute))
	c, err := lc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dec, enc := json.NewDecoder(bufio.NewReader(c)), json.NewEncoder(c)
	for {
		var req control
		if err := dec.Decode(&req); err != nil {
			t.Logf("PAIR-TARGET: the source hung up: %v", err)
			return
		}
		var rep reply
		switch req.Op {
		case "time":
		case "ticks":
			rep.Ticks = x.tk.all()
		case "reset":
			x.tk.reset()
			x.stats.set(0, nil, "")
		case "list":
			rep.Names = xlNames()
		case "create":
			out, err := labtest.RunErr("xl", "create", labtest.GuestPVH)
			rep.Out = out
			if err != nil {
				rep.Err = err.Error()
			}
		case "destroy":
			destroyAll(req.Name)
		case "stats":
			x.stats.mu.Lock()
			rep.Wire, rep.Err, rep.Out = x.stats.wire, x.stats.err, x.stats.out
			x.stats.mu.Unlock()
		case "migrate":
			rep.Result = x.migrateOut(ctx, req.Path)
		case "quit":
			enc.Encode(rep)
			return
		}
		rep.Now = time.Now().UnixNano()
		enc.Encode(rep)
	}
}

// peer is the source's control connection to the target.
type peer struct {
	t      *testing.T
	c      net.Conn
	dec    *json.Decoder
	enc    *json.Encoder
	offset time.Duration // target clock - source clock
}

func (p *peer) do(req control) reply {
	p.t.Helper()
	p.c.SetDeadline(time.Now().Add(5 * time.Minute))
	var rep reply
	err := p.enc.Encode(req)
	if err == nil {
		err = p.dec.Decode(&rep)
	}
	if err != nil {
		// Errorf, not Fatalf: subtests call this too.
		p.t.Errorf("control %s: %v", req.Op, err)
		rep.Err = err.Error()
	}
	return rep
}

// syncClock measures the target's clock offset (best of five round trips).
func (p *peer) syncClock() {
	best := time.Hour
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		rep := p.do(control{Op: "time"})
		t1 := time.Now()
		if rtt := t1.Sub(t0); rtt < best {
			best = rtt
			p.offset = time.Unix(0, rep.Now).Sub(t0.Add(rtt / 2))
		}
	}
	p.t.Logf("PAIR clock offset %v (rtt %v)", p.offset, best)
}

func pairSource(t *testing.T, peerAddr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	x := newHost(t, ctx, peerAddr)
	// Wait for the target's control port (it boots at the same time).
	var c net.Conn
	var err error
	for i := 0; i < 600; i++ {
		if c, err = net.DialTimeout("tcp", net.JoinHostPort(peerAddr, strconv.Itoa(portControl)), 2*time.Second); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("target control port: %v", err)
	}
	p := &peer{t: t, c: c, dec: json.NewDecoder(bufio.NewReader(c)), enc: json.NewEncoder(c)}
	defer p.do(control{Op: "quit"})
	p.syncClock()

	load := os.Getenv(envPairLoad)
	if load == "" {
		load = "4"
	}
	cfgFor := func(dirty bool) string {
		if !dirty {
			return labtest.GuestPVH
		}
		b, err := os.ReadFile(labtest.GuestPVH)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), `extra = "`, `extra = "xenlab.dirty=`+load+` `, 1)
		f := filepath.Join(t.TempDir(), "guest3-dirty.cfg")
		os.WriteFile(f, []byte(s), 0o644)
		return f
	}
	// startGuest creates the guest at the source.
	startGuest := func(t *testing.T, cfg string) {
		destroyAll(pairGuest)
		p.do(control{Op: "destroy", Name: pairGuest})
		files, _ := filepath.Glob(filepath.Join(labtest.ConsoleDir, "guest-"+pairGuest+"*.log"))
		for _, f := range files {
			os.Remove(f)
		}
		labtest.Run(t, "xl", "create", cfg)
		labtest.WaitCounter(t, pairGuest, 2, 5*time.Minute)
	}
	// ticksOf returns a side's ticks in the source's clock.
	ticksOf := func(side string) []tick {
		if side == "source" {
			return x.tk.all()
		}
		ts := p.do(control{Op: "ticks"}).Ticks
		for i := range ts {
			ts[i].At = ts[i].At.Add(-p.offset)
		}
		return ts
	}
	namesOf := func(side string) []string {
		if side == "source" {
			return xlNames()
		}
		return p.do(control{Op: "list"}).Names
	}
	other := map[string]string{"source": "target", "target": "source"}
	// hop migrates the guest from side `from` to the other along path and
	// checks its counter goes on there and it is gone from `from`.
	hop := func(t *testing.T, from, path string, dirty bool) (r pairResult) {
		x.tk.reset()
		x.stats.set(0, nil, "")
		p.do(control{Op: "reset"})
		time.Sleep(2500 * time.Millisecond) // counter lines at the origin
		if from == "source" {
			r = x.migrateOut(ctx, path)
		} else {
			r = p.do(control{Op: "migrate", Path: path}).Result
		}
		r.From, r.Load = from, loadName(dirty, load)
		wire := func() {
			if r.Wire != 0 {
				return
			}
			if other[from] == "source" {
				x.stats.mu.Lock()
				r.Wire = x.stats.wire
				x.stats.mu.Unlock()
			} else {
				r.Wire = p.do(control{Op: "stats"}).Wire
			}
		}
		defer wire() // after the counter checks: the receiving end has finished counting
		if !r.OK {
			t.Errorf("%s from the %s: %s", path, from, r.Err)
			return r
		}
		to := other[from]
		deadline := time.Now().Add(90 * time.Second)
		var dst []tick
		for time.Now().Before(deadline) {
			if dst = ticksOf(to); len(dst) >= 3 {
				break
			}
			time.Sleep(time.Second)
		}
		src := ticksOf(from)
		if len(dst) < 3 || len(src) == 0 {
			t.Errorf("%s: counter lines: %d at the %s (destination), %d at the %s", path, len(dst), to, len(src), from)
			r.OK = false
			return r
		}
		last, first := src[len(src)-1], dst[0]
		r.LastSrc, r.FirstDst = last.N, first.N
		r.TickGap = first.At.Sub(last.At)
		if first.N < last.N || dst[len(dst)-1].N <= first.N {
			t.Errorf("%s: counter: last at the %s %d, at the %s %d..%d", path, from, last.N, to, first.N, dst[len(dst)-1].N)
			r.OK = false
		}
		for _, n := range namesOf(from) {
			if strings.HasPrefix(n, pairGuest) {
				t.Errorf("%s: %s still at the %s", path, n, from)
				r.OK = false
			}
		}
		return r
	}

	var results []pairResult
	record := func(r pairResult) {
		results = append(results, r)
		t.Logf("PAIR-RESULT path=%s from=%s load=%s ok=%v total=%v downtime=%v tickgap=%v counter=%d->%d wire=%d err=%s",
			r.Path, r.From, r.Load, r.OK, r.Total.Round(time.Millisecond), r.Downtime.Round(time.Millisecond),
			r.TickGap.Round(time.Millisecond), r.LastSrc, r.FirstDst, r.Wire, r.Err)
	}
	paths := strings.Fields(os.Getenv("XENSR_PAIR_PATHS"))
	if len(paths) == 0 {
		paths = []string{"xl->xl", "go-raw", "go-zstd", "go-pack", "go->xl", "xl->go"}
	}
	loads := strings.Fields(os.Getenv("XENSR_PAIR_LOADS"))
	if len(loads) == 0 {
		loads = []string{"idle", "dirty"}
	}
	failures := os.Getenv("XENSR_PAIR_FAILURES") != "0"
	if failures {
		t.Run("failures", func(t *testing.T) { pairFailures(t, ctx, x, p, startGuest, record) })
	}
	// The guest goes back and forth: one boot per load.
	for _, ld := range loads {
		dirty := ld == "dirty"
		t.Run(loadName(dirty, load), func(t *testing.T) {
			startGuest(t, cfgFor(dirty))
			at := "source"
			for _, path := range paths {
				r := hop(t, at, path, dirty)
				record(r)
				if !r.OK {
					break // where the guest is is unclear: next load
				}
				at = other[at]
			}
		})
	}

	destroyAll(pairGuest)
	p.do(control{Op: "destroy", Name: pairGuest})

	// The table.
	var b strings.Builder
	fmt.Fprintf(&b, "path\tfrom\tload\tok\ttotal_s\tdowntime_s\ttickgap_s\twire_bytes\terror\n")
	for _, r := range results {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%v\t%.2f\t%.3f\t%.3f\t%d\t%s\n", r.Path, r.From, r.Load, r.OK, r.Total.Seconds(),
			r.Downtime.Seconds(), r.TickGap.Seconds(), r.Wire, r.Err)
	}
	os.WriteFile(filepath.Join(labtest.OutDir(t), "pair-results.tsv"), []byte(b.String()), 0o644)
	t.Logf("PAIR-TABLE\n%s", b.String())
}

func loadName(dirty bool, load string) string {
	if dirty {
		return "dirty" + load
	}
	return "idle"
}

// suspendHook calls f once the guest has suspended.
type suspendHook struct {
	migrate.Domain
	f func()
}

func (s suspendHook) Suspend() error {
	err := s.Domain.Suspend()
	s.f()
	return err
}

// pairFailures: links cut in precopy and in stop-and-copy, and a name the
// target has; the guest must go on at the source and nothing be left at
// the target.
func pairFailures(t *testing.T, ctx context.Context, x *host, p *peer, startGuest func(*testing.T, string), record func(pairResult)) {
	peerAddr := x.peer
	sourceRuns := func(t *testing.T) {
		c0 := labtest.Counter(pairGuest)
		labtest.WaitCounter(t, pairGuest, c0, 30*time.Second)
		if names := p.do(control{Op: "list"}).Names; len(names) != 0 {
			t.Errorf("left at the target: %q", names)
		}
	}
	{
		startGuest(t, labtest.GuestPVH)
		for _, phase := range []Phase{PhasePrecopy, PhaseStopAndCopy} {
			r := pairResult{Path: "cut-" + phase.String(), From: "source", Load: "idle"}
			func() {
				d, err := x.domid()
				if err != nil {
					t.Fatal(err)
				}
				opt, err := x.saveOpt(d)
				if err != nil {
					t.Fatal(err)
				}
				x.stats.set(0, nil, "")
				p.do(control{Op: "reset"})
				raw, err := net.Dial("tcp", net.JoinHostPort(peerAddr, strconv.Itoa(portGo)))
				if err != nil {
					t.Fatal(err)
				}
				cc := &cutConn{Conn: raw}
				var dom migrate.Domain = d
				if phase == PhasePrecopy {
					cc.arm(16 << 20) // inside the first pass (128 MiB guest, raw)
				} else {
					dom = suspendHook{Domain: d, f: func() { cc.arm(4 << 10) }}
				}
				res, err := (&Sender{Encodings: []string{EncodingRaw}, Rename: d.Rename}).Send(ctx, cc, dom, pairGuest, opt)
				r.Total, r.Wire = res.Total, res.WireBytes
				if err != nil {
					r.Err = err.Error()
				}
				var e *Error
				if !errors.As(err, &e) || e.Phase != phase || !e.SourceRunning || !cc.cut.Load() {
					t.Errorf("%v: got %v, want a %v failure with the guest running at the source", phase, err, phase)
					return
				}
				time.Sleep(3 * time.Second) // the target's cleanup
				sourceRuns(t)
				st := p.do(control{Op: "stats"})
				t.Logf("target: %s", st.Err)
				if !strings.Contains(st.Err, "nothing left at the target") {
					t.Errorf("target's error: %q", st.Err)
					return
				}
				r.OK = true
			}()
			record(r)
		}
		r := pairResult{Path: "name-exists", From: "source", Load: "idle"}
		defer func() { record(r) }()
		if rep := p.do(control{Op: "create"}); rep.Err != "" {
			t.Fatalf("xl create at the target: %s %s", rep.Err, rep.Out)
		}
		d, err := x.domid()
		if err != nil {
			t.Fatal(err)
		}
		opt, err := x.saveOpt(d)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := Dial(ctx, net.JoinHostPort(peerAddr, strconv.Itoa(portGo)), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = (&Sender{}).Send(ctx, conn, d, pairGuest, opt)
		if err != nil {
			r.Err = err.Error()
		}
		var e *Error
		if !errors.As(err, &e) || e.Phase != PhaseHandshake || !errors.Is(err, migrate.ErrNameExists) {
			t.Fatalf("got %v, want a refusal of the name in the handshake", err)
		}
		c0 := labtest.Counter(pairGuest)
		labtest.WaitCounter(t, pairGuest, c0, 30*time.Second)
		names := p.do(control{Op: "list"}).Names
		if len(names) != 1 || names[0] != pairGuest {
			t.Errorf("target has %q, want only its own %s", names, pairGuest)
		}
		r.OK = !t.Failed()
	}
}
