//go:build linux

package xenstore_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/xenstore"
)

// labDaemon returns which xenstored the lab started ("c" or "ocaml").
func labDaemon(t *testing.T) string {
	out := strings.TrimSpace(labtest.Run(t, "xenstore-read", "/xensr-lab/xenstored"))
	if out != "c" && out != "ocaml" {
		t.Fatalf("unknown lab xenstored %q", out)
	}
	return out
}

// TestLabConformanceSocket runs the conformance suite against the real
// daemon over its unix socket.
func TestLabConformanceSocket(t *testing.T) {
	labtest.Require(t)
	d := labDaemon(t)
	conformance(t, func(ctx context.Context) (xenstore.Conn, error) { return xenstore.DialPath(ctx, xenstore.SocketPath()) }, d)
}

// TestLabConformanceXenbus runs it over /dev/xen/xenbus (the kernel relays
// to the daemon through dom0's ring).
func TestLabConformanceXenbus(t *testing.T) {
	labtest.Require(t)
	d := labDaemon(t)
	conformance(t, func(ctx context.Context) (xenstore.Conn, error) { return xenstore.DialPath(ctx, "/dev/xen/xenbus") }, d+"-xenbus")
}

// TestLabThroughput compares pipelined Go READ/WRITE throughput with a loop
// of the C tools (xenstore-write/xenstore-read, one libxenstore connection
// and one synchronous call each) and with the Go client used synchronously,
// in the same dom0: medians of five rounds, the three ways taking turns, so
// that a burst of other work in the machine does not decide it.
//
// What it holds the client to: pipelining works (the pipelined rate is at
// least 1.25 times the synchronous one; 1.45-3.2 in the lab's logs), and
// the pipelined client is not slower than the C tools against C xenstored
// (1.06-1.67 there). Against oxenstored it must reach 0.8 of the tools'
// rate, not 1: oxenstored is the bound there, whoever the client (64
// requests in flight ran no faster than 16: 626/619, 572/533, 494/570
// ops/s in one boot of 2026-12-02), and the tools already reach about
// three quarters of its rate, so the pipelined client's edge is 1.1-1.45
// and a noisy round read 0.94 and 0.97 (CI of stop 23; lab runs). The
// synchronous Go client (0.6-0.8 of the tools there) would not pass it: it
// is the control, and pipelining is held to 1.25 times it.
func TestLabThroughput(t *testing.T) {
	labtest.Require(t)
	d := labDaemon(t)
	ctx := context.Background()
	c, err := xenstore.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n, rounds = 200, 5
	base := "/xensr-bench"
	defer c.Rm(ctx, base)

	// Go, pipelined: 16 goroutines share the one connection.
	pipelined := func(round int) float64 {
		t0 := time.Now()
		errs := make(chan error, 16)
		for g := 0; g < 16; g++ {
			go func(g int) {
				for i := g; i < n; i += 16 {
					p := fmt.Sprintf("%s/go/%d/%d", base, round, i)
					if err := c.Write(ctx, p, []byte("v")); err != nil {
						errs <- err
						return
					}
					if _, err := c.Read(ctx, p); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}(g)
		}
		for g := 0; g < 16; g++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		return float64(2*n) / time.Since(t0).Seconds()
	}
	// Go, synchronous on one goroutine: what libxenstore's API gives.
	sync := func(round int) float64 {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			p := fmt.Sprintf("%s/sync/%d/%d", base, round, i)
			if err := c.Write(ctx, p, []byte("v")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Read(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		return float64(2*n) / time.Since(t0).Seconds()
	}
	// The C tools: one process does many writes (xenstore-write takes
	// path/value pairs) and one many reads, each call synchronous.
	tools := func(round int) float64 {
		const cn = 200
		wargs := make([]string, 0, 2*cn)
		rargs := make([]string, 0, cn)
		for i := 0; i < cn; i++ {
			p := fmt.Sprintf("%s/c/%d/%d", base, round, i)
			wargs = append(wargs, p, "v")
			rargs = append(rargs, p)
		}
		t0 := time.Now()
		if out, err := exec.Command("xenstore-write", wargs...).CombinedOutput(); err != nil {
			t.Fatalf("xenstore-write: %v %s", err, out)
		}
		if out, err := exec.Command("xenstore-read", rargs...).CombinedOutput(); err != nil {
			t.Fatalf("xenstore-read: %v %s", err, out)
		}
		return float64(2*cn) / time.Since(t0).Seconds()
	}
	var goRates, syncRates, cRates []float64
	for round := 0; round < rounds; round++ {
		goRates = append(goRates, pipelined(round))
		syncRates = append(syncRates, sync(round))
		cRates = append(cRates, tools(round))
	}
	goRate, syncRate, cRate := median(goRates), median(syncRates), median(cRates)
	t.Logf("XENSTORE-THROUGHPUT xenstored=%s go-pipelined=%.0f ops/s go-sync=%.0f ops/s libxenstore-tools=%.0f ops/s ratio(pipelined/libxenstore)=%.2f ratio(sync/libxenstore)=%.2f ratio(pipelined/sync)=%.2f (medians of %d rounds: pipelined %.0f, sync %.0f, tools %.0f)",
		d, goRate, syncRate, cRate, goRate/cRate, syncRate/cRate, goRate/syncRate, rounds, goRates, syncRates, cRates)
	if goRate < 1.25*syncRate {
		t.Errorf("pipelining does not pay: pipelined %.0f ops/s, synchronous %.0f ops/s (want at least 1.25 times)", goRate, syncRate)
	}
	floor := 1.0
	if d == "ocaml" {
		floor = 0.8
	}
	if goRate < floor*cRate {
		t.Errorf("pipelined Go client (%.0f ops/s) below %.2f of libxenstore's tools (%.0f ops/s) against %s xenstored", goRate, floor, cRate, d)
	}
}

// median returns the middle of three or more rates.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
