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
	Op   string // time, ticks, reset, list, create, destroy, stats, quit
	Name string
}

// reply is the target's answer.
type reply struct {
	Now   int64 // target clock, unix ns
	Ticks []tick
	Names []string
	Wire  int64  // bytes the last bridge or receiver read
	Err   string // the last receiver's or bridge's error
	Out   string
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

// TestLabPair is both halves of the two-host lab.
func TestLabPair(t *testing.T) {
	role := os.Getenv(envPairRole)
	if role == "" {
		t.Skip("needs the two-host lab: bash scripts/lab-pair.sh")
	}
	labtest.Require(t)
	switch role {
	case "target":
		pairTarget(t)
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
	return l
}

func pairTarget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	h, err := migrate.OpenHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tk := newTicker(ctx, pairGuest)
	var stats bridgeStats

	// Go -> Go.
	lgo := listen(t, portGo)
	rcv := &Receiver{Target: HostTarget(h.Builder(), h.Toolstack()), Logf: t.Logf}
	go rcv.Serve(ctx, lgo, func(r *Received, err error) {
		var wire int64
		if r != nil {
			wire = r.WireBytes
		}
		stats.set(wire, err, "")
		t.Logf("PAIR-TARGET receiver: %+v err=%v", r, err)
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
				stats.set(cr.n.Load(), err, out)
				t.Logf("PAIR-TARGET %v: wire %d err=%v\n%s", l.Addr(), cr.n.Load(), err, out)
			}
		}()
	}
	lxl := listen(t, portXLRecv)
	serveRaw(lxl, func(c net.Conn, cr *countConnReader) (string, error) {
		cmd := exec.CommandContext(ctx, "xl", "migrate-receive")
		var errb strings.Builder
		cmd.Stdin, cmd.Stdout, cmd.Stderr = cr, c, &errb
		err := cmd.Run()
		return errb.String(), err
	})
	lgx := listen(t, portGoXL)
	serveRaw(lgx, func(c net.Conn, cr *countConnReader) (string, error) {
		_, err := migrate.Receive(ctx, h.Builder(), h.Toolstack(), cr, c, migrate.RestoreOptions{})
		return "", err
	})
	defer lgo.Close()
	defer lxl.Close()
	defer lgx.Close()

	lc := listen(t, portControl)
	defer lc.Close()
	t.Logf("PAIR-TARGET ready")
	// One control connection: when the source goes (quit, or its test
	// process ends), so does the target.
	lc.(*net.TCPListener).SetDeadline(time.Now().Add(15 * time.Minute))
	{
		c, err := lc.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dec, enc := json.NewDecoder(bufio.NewReader(c)), json.NewEncoder(c)
		for {
			var req control
			if err := dec.Decode(&req); err != nil {
				break
			}
			var rep reply
			switch req.Op {
			case "time":
			case "ticks":
				rep.Ticks = tk.all()
			case "reset":
				tk.reset()
				stats.set(0, nil, "")
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
				files, _ := filepath.Glob(filepath.Join(labtest.ConsoleDir, "guest-"+req.Name+"*.log"))
				for _, f := range files {
					os.Remove(f)
				}
			case "stats":
				stats.mu.Lock()
				rep.Wire, rep.Err, rep.Out = stats.wire, stats.err, stats.out
				stats.mu.Unlock()
			case "quit":
				enc.Encode(rep)
				return
			}
			rep.Now = time.Now().UnixNano()
			enc.Encode(rep)
		}
		t.Logf("PAIR-TARGET: the source hung up")
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
	p.c.SetDeadline(time.Now().Add(2 * time.Minute))
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
			mid := t0.Add(rtt / 2)
			p.offset = time.Unix(0, rep.Now).Sub(mid)
		}
	}
	p.t.Logf("PAIR clock offset %v (rtt %v)", p.offset, best)
}

// pairResult is one line of the results table.
type pairResult struct {
	Path, Load string
	OK         bool
	Total      time.Duration
	Downtime   time.Duration // Go paths: suspend to RUNNING
	TickGap    time.Duration // last counter line at the source to first at the target
	LastSrc    int
	FirstDst   int
	Wire       int64
	Err        string
}

func pairSource(t *testing.T, peerAddr string) {
	ctx := context.Background()
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

	h, err := migrate.OpenHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	major, minor, err := h.X.Version()
	if err != nil {
		t.Fatal(err)
	}
	tctx, stopTicks := context.WithCancel(ctx)
	defer stopTicks()
	tk := newTicker(tctx, pairGuest)

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
	connect := func(port int) string {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("connect-%d.sh", port))
		// xl migrate runs "SSHCOMMAND HOST xl migrate-receive ...": ignore
		// the command, carry stdin/stdout to the port.
		os.WriteFile(f, []byte(fmt.Sprintf("#!/bin/sh\nexec nc \"$1\" %d\n", port)), 0o755)
		return f
	}
	connXL, connGo := connect(portXLRecv), connect(portGoXL)

	// startGuest creates the guest at the source and returns its domid.
	startGuest := func(t *testing.T, cfg string) uint32 {
		destroyAll(pairGuest)
		files, _ := filepath.Glob(filepath.Join(labtest.ConsoleDir, "guest-"+pairGuest+"*.log"))
		for _, f := range files {
			os.Remove(f)
		}
		tk.reset()
		p.do(control{Op: "destroy", Name: pairGuest})
		p.do(control{Op: "reset"})
		labtest.Run(t, "xl", "create", cfg)
		labtest.WaitCounter(t, pairGuest, 2, 5*time.Minute)
		out := labtest.Run(t, "xl", "domid", pairGuest)
		id, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("xl domid: %q", out)
		}
		return uint32(id)
	}
	saveOpt := func(d *migrate.XenDomain) migrate.SaveOptions {
		config, err := d.Config()
		if err != nil {
			t.Fatal(err)
		}
		return migrate.SaveOptions{Live: true, Config: config, XenMajor: major, XenMinor: minor}
	}
	// runsAt checks the guest's counter goes on at the target and not at
	// the source; it fills the tick figures of r.
	checkTarget := func(t *testing.T, r *pairResult) {
		deadline := time.Now().Add(90 * time.Second)
		var dst []tick
		for time.Now().Before(deadline) {
			dst = p.do(control{Op: "ticks"}).Ticks
			if len(dst) >= 3 {
				break
			}
			time.Sleep(time.Second)
		}
		src := tk.all()
		if len(dst) < 3 || len(src) == 0 {
			t.Errorf("%s: counter at the target: %d lines (source %d)", r.Path, len(dst), len(src))
			return
		}
		last, first := src[len(src)-1], dst[0]
		r.LastSrc, r.FirstDst = last.N, first.N
		r.TickGap = first.At.Add(-p.offset).Sub(last.At)
		if first.N < last.N || dst[len(dst)-1].N <= first.N {
			t.Errorf("%s: counter: last at the source %d, at the target %d..%d", r.Path, last.N, first.N, dst[len(dst)-1].N)
		}
		for _, n := range xlNames() {
			if strings.HasPrefix(n, pairGuest) {
				t.Errorf("%s: %s still at the source", r.Path, n)
			}
		}
	}
	var results []pairResult
	record := func(r pairResult) {
		results = append(results, r)
		t.Logf("PAIR-RESULT path=%s load=%s ok=%v total=%v downtime=%v tickgap=%v counter=%d->%d wire=%d err=%s",
			r.Path, r.Load, r.OK, r.Total.Round(time.Millisecond), r.Downtime.Round(time.Millisecond),
			r.TickGap.Round(time.Millisecond), r.LastSrc, r.FirstDst, r.Wire, r.Err)
	}

	goPath := func(enc string, dirty bool) func(t *testing.T) {
		return func(t *testing.T) {
			r := pairResult{Path: "go-" + enc, Load: loadName(dirty, load)}
			defer func() { record(r) }()
			id := startGuest(t, cfgFor(dirty))
			d := h.Domain(id)
			conn, err := Dial(ctx, net.JoinHostPort(peerAddr, strconv.Itoa(portGo)), nil)
			if err != nil {
				t.Fatal(err)
			}
			snd := &Sender{Encodings: []string{enc}, Rename: d.Rename, Logf: t.Logf}
			res, err := snd.Send(ctx, conn, d, pairGuest, saveOpt(d))
			r.Total, r.Downtime, r.Wire = res.Total, res.Downtime, res.WireBytes
			if err != nil {
				r.Err = err.Error()
				t.Fatal(err)
			}
			t.Logf("rounds: %+v", res.Save.Rounds)
			checkTarget(t, &r)
			r.OK = !t.Failed()
		}
	}
	goToXL := func(dirty bool) func(t *testing.T) {
		return func(t *testing.T) {
			r := pairResult{Path: "go->xl", Load: loadName(dirty, load)}
			defer func() { record(r) }()
			id := startGuest(t, cfgFor(dirty))
			d := h.Domain(id)
			conn, err := net.Dial("tcp", net.JoinHostPort(peerAddr, strconv.Itoa(portXLRecv)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			opt := saveOpt(d)
			m := &migrate.Migration{Send: conn, Recv: conn, Rename: d.Rename, Name: pairGuest, Logf: t.Logf}
			start := time.Now()
			st, err := m.Run(ctx, migrate.NewSaver(d, opt))
			r.Total = time.Since(start)
			r.Downtime = st.Downtime // to the END of the stream only
			r.Wire = st.Bytes
			if err != nil {
				r.Err = err.Error()
				t.Fatal(err)
			}
			checkTarget(t, &r)
			r.OK = !t.Failed()
		}
	}
	xlPath := func(name, script string, dirty bool) func(t *testing.T) {
		return func(t *testing.T) {
			r := pairResult{Path: name, Load: loadName(dirty, load)}
			defer func() { record(r) }()
			startGuest(t, cfgFor(dirty))
			start := time.Now()
			out, err := labtest.RunErr("xl", "migrate", "-s", "sh "+script, pairGuest, peerAddr)
			r.Total = time.Since(start)
			t.Logf("xl migrate: %v\n%s", err, out)
			st := p.do(control{Op: "stats"})
			r.Wire = st.Wire
			if err != nil {
				r.Err = fmt.Sprintf("%v (target: %s)", err, st.Err)
				t.Fatal(r.Err)
			}
			checkTarget(t, &r)
			r.OK = !t.Failed()
		}
	}
	for _, dirty := range []bool{false, true} {
		sfx := "/" + loadName(dirty, load)
		t.Run("xl->xl"+sfx, xlPath("xl->xl", connXL, dirty))
		t.Run("go-raw"+sfx, goPath(EncodingRaw, dirty))
		t.Run("go-zstd"+sfx, goPath(EncodingZstd, dirty))
		t.Run("go-pack"+sfx, goPath(EncodingPack, dirty))
		t.Run("go->xl"+sfx, goToXL(dirty))
		t.Run("xl->go"+sfx, xlPath("xl->go", connGo, dirty))
	}

	// Failures: the guest must go on at the source and nothing be left at
	// the target.
	sourceRuns := func(t *testing.T) {
		c0 := labtest.Counter(pairGuest)
		labtest.WaitCounter(t, pairGuest, c0, 30*time.Second)
		if names := p.do(control{Op: "list"}).Names; len(names) != 0 {
			t.Errorf("left at the target: %q", names)
		}
	}
	cut := func(phase Phase) func(t *testing.T) {
		return func(t *testing.T) {
			r := pairResult{Path: "cut-" + phase.String(), Load: "idle"}
			defer func() { record(r) }()
			id := startGuest(t, labtest.GuestPVH)
			d := h.Domain(id)
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
			res, err := (&Sender{Encodings: []string{EncodingRaw}, Rename: d.Rename}).Send(ctx, cc, dom, pairGuest, saveOpt(d))
			r.Total, r.Wire = res.Total, res.WireBytes
			var e *Error
			if err != nil {
				r.Err = err.Error()
			}
			if !errors.As(err, &e) || e.Phase != phase || !e.SourceRunning || !cc.cut.Load() {
				t.Fatalf("got %v, want a %v failure with the guest running at the source", err, phase)
			}
			time.Sleep(2 * time.Second) // the target's cleanup
			sourceRuns(t)
			st := p.do(control{Op: "stats"})
			t.Logf("target: %s", st.Err)
			if !strings.Contains(st.Err, "nothing left at the target") {
				t.Errorf("target's error: %q", st.Err)
			}
			r.OK = !t.Failed()
		}
	}
	t.Run("cut-precopy", cut(PhasePrecopy))
	t.Run("cut-stop-and-copy", cut(PhaseStopAndCopy))
	t.Run("name-exists", func(t *testing.T) {
		r := pairResult{Path: "name-exists", Load: "idle"}
		defer func() { record(r) }()
		id := startGuest(t, labtest.GuestPVH)
		if rep := p.do(control{Op: "create"}); rep.Err != "" {
			t.Fatalf("xl create at the target: %s %s", rep.Err, rep.Out)
		}
		d := h.Domain(id)
		conn, err := Dial(ctx, net.JoinHostPort(peerAddr, strconv.Itoa(portGo)), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = (&Sender{}).Send(ctx, conn, d, pairGuest, saveOpt(d))
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
		p.do(control{Op: "destroy", Name: pairGuest})
		r.OK = !t.Failed()
	})
	destroyAll(pairGuest)

	// The table.
	var b strings.Builder
	fmt.Fprintf(&b, "path\tload\tok\ttotal_s\tdowntime_s\ttickgap_s\twire_bytes\terror\n")
	for _, r := range results {
		fmt.Fprintf(&b, "%s\t%s\t%v\t%.2f\t%.3f\t%.3f\t%d\t%s\n", r.Path, r.Load, r.OK, r.Total.Seconds(),
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
