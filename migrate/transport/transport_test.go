package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/stream"
)

type outcome struct {
	res *Received
	err error
}

// serve starts a Receiver on a loopback listener (TLS when cfg is set).
func serve(t *testing.T, r *Receiver, cfg *tls.Config) (addr string, results chan outcome) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	results = make(chan outcome, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Serve(ctx, l, func(res *Received, err error) { results <- outcome{res, err} })
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String(), results
}

func result(t *testing.T, c chan outcome) outcome {
	t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(20 * time.Second):
		t.Fatal("no result from the receiver")
	}
	return outcome{}
}

// expectedImage is the save image of a fresh domain like d (non-live).
func expectedImage(t *testing.T, pages int) []byte {
	t.Helper()
	var buf bytes.Buffer
	s, _, err := migrate.Save(context.Background(), newTestDomain(pages), &buf, migrate.SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Commit()
	return buf.Bytes()
}

func dial(t *testing.T, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	c, err := Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMigrate sends a domain in each encoding, over TCP and TLS, and checks
// the image arrives bit for bit, the copy runs under the domain's name at
// the target and the source is destroyed; pack puts fewer bytes on the wire.
func TestMigrate(t *testing.T) {
	const pages = 600
	want := expectedImage(t, pages)
	srvTLS, cliTLS := testTLS(t)
	wire := map[string]int64{}
	for _, tc := range []struct {
		enc string
		tls bool
	}{{EncodingRaw, false}, {EncodingPack, false}, {EncodingZstd, false}, {EncodingPack, true}} {
		name := tc.enc
		if tc.tls {
			name += "-tls"
		}
		t.Run(name, func(t *testing.T) {
			tgt := &testTarget{}
			var scfg, ccfg *tls.Config
			if tc.tls {
				scfg, ccfg = srvTLS, cliTLS
			}
			addr, results := serve(t, &Receiver{Target: tgt}, scfg)
			d := newTestDomain(pages)
			snd := &Sender{Encodings: []string{tc.enc}}
			res, err := snd.Send(context.Background(), dial(t, addr, ccfg), d, "guest", migrate.SaveOptions{})
			if err != nil {
				t.Fatal(err)
			}
			o := result(t, results)
			if o.err != nil {
				t.Fatal(o.err)
			}
			if len(tgt.images) != 1 || !bytes.Equal(tgt.images[0], want) {
				t.Fatalf("image at the target differs from the save image (%d images)", len(tgt.images))
			}
			if !d.destroyed || d.resumes != 0 {
				t.Fatalf("source: destroyed %v, resumed %d times", d.destroyed, d.resumes)
			}
			in := o.res.Domain.(*testIncoming)
			if in.name != "guest" || in.paused || len(tgt.running) != 1 {
				t.Fatalf("target copy: name %q paused %v running %q", in.name, in.paused, tgt.running)
			}
			if res.Encoding != tc.enc || o.res.Encoding != tc.enc {
				t.Fatalf("encoding %q / %q, want %q", res.Encoding, o.res.Encoding, tc.enc)
			}
			if res.StreamBytes != int64(len(want)) || o.res.StreamBytes != int64(len(want)) {
				t.Fatalf("stream bytes %d sent, %d received, image %d", res.StreamBytes, o.res.StreamBytes, len(want))
			}
			if res.Downtime <= 0 || res.Downtime > res.Total {
				t.Fatalf("downtime %v of total %v", res.Downtime, res.Total)
			}
			if !tc.tls && o.res.WireBytes != res.WireBytes {
				t.Fatalf("wire bytes: %d sent, %d received", res.WireBytes, o.res.WireBytes)
			}
			wire[name] = res.WireBytes
		})
	}
	for _, enc := range []string{EncodingPack, EncodingZstd} {
		if wire[enc] == 0 || wire["raw"] == 0 || wire[enc]*2 > wire["raw"] {
			t.Fatalf("%s put %d bytes on the wire, raw %d: expected less than half", enc, wire[enc], wire["raw"])
		}
	}
	t.Logf("bytes on the wire: %v", wire)
}

// TestLive runs live rounds with a guest that dirties pages, in each
// encoding, and checks the image the target got replays to the memory the
// source had when it stopped.
func TestLive(t *testing.T) {
	for _, enc := range []string{EncodingRaw, EncodingPack, EncodingZstd} {
		t.Run(enc, func(t *testing.T) {
			tgt := &testTarget{}
			addr, results := serve(t, &Receiver{Target: tgt}, nil)
			d := newTestDomain(800)
			d.onClean = func(d *testDomain, call int) {
				for p := uint64(0); p < 40; p++ {
					d.write(p*3, uint32(100+call))
				}
			}
			var rounds []migrate.RoundStats
			opt := migrate.SaveOptions{Live: true, Policy: func(last migrate.RoundStats, all []migrate.RoundStats) bool {
				rounds = all
				return last.Round < 3
			}}
			res, err := (&Sender{Encodings: []string{enc}}).Send(context.Background(), dial(t, addr, nil), d, "live", opt)
			if err != nil {
				t.Fatal(err)
			}
			if o := result(t, results); o.err != nil {
				t.Fatal(o.err)
			}
			if len(res.Save.Rounds) != 5 || len(rounds) != 4 {
				t.Fatalf("%d rounds (policy saw %d), want 4 live and a final", len(res.Save.Rounds), len(rounds))
			}
			if int64(len(tgt.images[0])) != res.StreamBytes {
				t.Fatalf("target got %d bytes, sender wrote %d", len(tgt.images[0]), res.StreamBytes)
			}
		})
	}
}

// TestRefuseName: a receiver that has a domain of the name refuses it in
// the handshake; the sender's domain was never touched.
func TestRefuseName(t *testing.T) {
	for _, existing := range []string{"guest", "guest" + migrate.IncomingSuffix} {
		tgt := &testTarget{names: map[uint32]string{4: existing}}
		addr, results := serve(t, &Receiver{Target: tgt}, nil)
		d := newTestDomain(64)
		_, err := (&Sender{}).Send(context.Background(), dial(t, addr, nil), d, "guest", migrate.SaveOptions{Live: true})
		var e *Error
		if !errors.As(err, &e) || e.Phase != PhaseHandshake || !e.SourceRunning || !errors.Is(err, migrate.ErrNameExists) {
			t.Fatalf("sender: %v", err)
		}
		if d.calls != 0 {
			t.Fatalf("refused migration made %d calls on the domain", d.calls)
		}
		o := result(t, results)
		if !errors.As(o.err, &e) || e.Phase != PhaseHandshake || !e.Cleaned || tgt.created != 0 {
			t.Fatalf("receiver: %v (created %d)", o.err, tgt.created)
		}
	}
}

// TestGarbagePeers: peers that send garbage, a wrong frame, a bad hello or
// nothing at all are dropped with an error naming the handshake, and the
// listener then serves a real migration.
func TestGarbagePeers(t *testing.T) {
	tgt := &testTarget{}
	addr, results := serve(t, &Receiver{Target: tgt, HandshakeTimeout: 300 * time.Millisecond}, nil)
	hello, _ := Hello{Version: Version, Encodings: []string{"raw"}, Name: "g"}.AppendBinary(nil)
	badHello := append([]byte(nil), hello...)
	badHello[len(badHello)-1] = '/'
	peers := map[string][]byte{
		"garbage":     []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"silent":      nil,
		"short":       []byte("XSR"),
		"wrong frame": appendFrame([]byte(Preamble), KindData, []byte("abc")),
		"huge frame":  append([]byte(Preamble), 'H', 0xff, 0xff, 0xff, 0x7f),
		"bad hello":   appendFrame([]byte(Preamble), KindHello, badHello),
		"cut hello":   appendFrame([]byte(Preamble), KindHello, hello)[:len(Preamble)+7],
	}
	for name, b := range peers {
		c := dial(t, addr, nil)
		c.Write(b)
		start := time.Now()
		o := result(t, results)
		var e *Error
		if !errors.As(o.err, &e) || e.Phase != PhaseHandshake {
			t.Fatalf("%s: %v", name, o.err)
		}
		if name == "silent" || name == "short" || name == "cut hello" {
			if !errors.Is(o.err, ErrTimeout) {
				t.Fatalf("%s: %v, want a timeout", name, o.err)
			}
		} else {
			var fe *stream.FormatError
			if !errors.As(o.err, &fe) || fe.Layer != Layer {
				t.Fatalf("%s: %v, want a FormatError", name, o.err)
			}
			if time.Since(start) > 250*time.Millisecond {
				t.Fatalf("%s: dropped only after %v", name, time.Since(start))
			}
		}
		t.Logf("%s: %v", name, o.err)
		c.Close()
	}
	d := newTestDomain(64)
	if _, err := (&Sender{}).Send(context.Background(), dial(t, addr, nil), d, "after", migrate.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if o := result(t, results); o.err != nil || tgt.created != 1 {
		t.Fatalf("%v, created %d", o.err, tgt.created)
	}
}

// TestCut cuts the link in precopy and in stop-and-copy: the guest runs
// at the source, nothing is left at the target and both sides name the
// phase.
func TestCut(t *testing.T) {
	for _, enc := range []string{EncodingRaw, EncodingPack, EncodingZstd} {
		for _, phase := range []Phase{PhasePrecopy, PhaseStopAndCopy} {
			t.Run(enc+"/"+phase.String(), func(t *testing.T) {
				tgt := &testTarget{}
				addr, results := serve(t, &Receiver{Target: tgt}, nil)
				c := &cutConn{Conn: dial(t, addr, nil)}
				d := newTestDomain(2000)
				d.onClean = func(d *testDomain, call int) {
					for p := uint64(0); p < 1000; p++ {
						d.scribble(p)
					}
					if phase == PhasePrecopy && call == 1 {
						c.arm(600 << 10)
					}
				}
				if phase == PhaseStopAndCopy {
					d.onSuspend = func() {
						// The guest's last writes before it stopped.
						for p := uint64(0); p < 1000; p++ {
							d.scribble(p)
						}
						c.arm(300 << 10)
					}
				}
				snd := &Sender{Encodings: []string{enc}}
				// The pack encoder lags the save by a few blocks: enough
				// rounds that the cut lands in precopy on the wire too.
				rounds := 3
				if phase == PhasePrecopy {
					rounds = 10
				}
				opt := migrate.SaveOptions{Live: true, Policy: func(last migrate.RoundStats, _ []migrate.RoundStats) bool { return last.Round < rounds }}
				_, err := snd.Send(context.Background(), c, d, "cut", opt)
				var e *Error
				if !errors.As(err, &e) || e.Side != "sender" || !e.SourceRunning {
					t.Fatalf("sender: %v", err)
				}
				if !c.cut.Load() {
					t.Fatalf("the link was not cut: %v", err)
				}
				if e.Phase != phase {
					t.Fatalf("sender names phase %v, want %v: %v", e.Phase, phase, err)
				}
				if d.suspended() || d.destroyed {
					t.Fatalf("source: suspended %v destroyed %v", d.suspended(), d.destroyed)
				}
				o := result(t, results)
				if !errors.As(o.err, &e) || e.Side != "receiver" || !e.Cleaned {
					t.Fatalf("receiver: %v", o.err)
				}
				if phase == PhasePrecopy && e.Phase != PhasePrecopy {
					t.Fatalf("receiver names %v: %v", e.Phase, o.err)
				}
				if tgt.created != tgt.destroyed || len(tgt.running) != 0 {
					t.Fatalf("target: created %d destroyed %d running %q", tgt.created, tgt.destroyed, tgt.running)
				}
				t.Logf("sender: %v", err)
				t.Logf("receiver: %v", o.err)
			})
		}
	}
}

// TestCommitFailures: a sender that gives up before GO (here its rename
// fails) leaves the target nothing; a target that cannot start the copy
// says FAILED and the source resumes.
func TestCommitFailures(t *testing.T) {
	t.Run("sender gives up before GO", func(t *testing.T) {
		tgt := &testTarget{}
		addr, results := serve(t, &Receiver{Target: tgt}, nil)
		d := newTestDomain(64)
		snd := &Sender{Rename: func(string) error { return errors.New("rename refused") }}
		_, err := snd.Send(context.Background(), dial(t, addr, nil), d, "g", migrate.SaveOptions{})
		var e *Error
		if !errors.As(err, &e) || e.Phase != PhaseCommit || !e.SourceRunning || d.resumes != 1 {
			t.Fatalf("sender: %v (resumes %d)", err, d.resumes)
		}
		o := result(t, results)
		if !errors.As(o.err, &e) || e.Phase != PhaseCommit || !e.Cleaned || tgt.destroyed != 1 {
			t.Fatalf("receiver: %v (destroyed %d)", o.err, tgt.destroyed)
		}
	})
	t.Run("target cannot start the copy", func(t *testing.T) {
		tgt := &testTarget{unpauseErr: errors.New("unpause: EINVAL")}
		addr, results := serve(t, &Receiver{Target: tgt}, nil)
		d := newTestDomain(64)
		var renames []string
		snd := &Sender{Rename: func(to string) error { renames = append(renames, to); return nil }}
		_, err := snd.Send(context.Background(), dial(t, addr, nil), d, "g", migrate.SaveOptions{})
		var e *Error
		var pe *PeerError
		if !errors.As(err, &e) || e.Phase != PhaseCommit || !e.SourceRunning || !errors.As(err, &pe) || !strings.Contains(pe.Reason, "EINVAL") {
			t.Fatalf("sender: %v", err)
		}
		if d.resumes != 1 || d.destroyed || strings.Join(renames, ",") != "g--migratedaway,g" {
			t.Fatalf("source: resumes %d destroyed %v renames %q", d.resumes, d.destroyed, renames)
		}
		o := result(t, results)
		if !errors.As(o.err, &e) || e.Phase != PhaseCommit || !e.Cleaned || tgt.destroyed != 1 {
			t.Fatalf("receiver: %v", o.err)
		}
	})
	t.Run("target restore fails", func(t *testing.T) {
		tgt := &testTarget{restoreErr: errors.New("populate_physmap: ENOMEM")}
		addr, results := serve(t, &Receiver{Target: tgt}, nil)
		d := newTestDomain(64)
		_, err := (&Sender{}).Send(context.Background(), dial(t, addr, nil), d, "g", migrate.SaveOptions{})
		var e *Error
		if !errors.As(err, &e) || !e.SourceRunning || d.destroyed {
			t.Fatalf("sender: %v", err)
		}
		o := result(t, results)
		if !errors.As(o.err, &e) || !e.Cleaned || tgt.created != tgt.destroyed {
			t.Fatalf("receiver: %v", o.err)
		}
	})
}

// TestSaveFails: a guest that does not suspend makes the sender ABORT; the
// receiver reports the sender's reason and keeps nothing.
func TestSaveFails(t *testing.T) {
	tgt := &testTarget{}
	addr, results := serve(t, &Receiver{Target: tgt}, nil)
	d := newTestDomain(300)
	d.suspendErr = errors.New("guest ignored the suspend request")
	_, err := (&Sender{}).Send(context.Background(), dial(t, addr, nil), d, "g", migrate.SaveOptions{Live: true})
	var e *Error
	if !errors.As(err, &e) || !e.SourceRunning {
		t.Fatalf("sender: %v", err)
	}
	o := result(t, results)
	var pe *PeerError
	if !errors.As(o.err, &pe) || pe.Kind != KindAbort || !strings.Contains(pe.Reason, "ignored the suspend") {
		t.Fatalf("receiver: %v", o.err)
	}
	if tgt.created != tgt.destroyed {
		t.Fatalf("target: created %d destroyed %d", tgt.created, tgt.destroyed)
	}
}

// TestCancel: cancelling the sender's context mid-stream resumes the guest.
func TestCancel(t *testing.T) {
	tgt := &testTarget{}
	addr, results := serve(t, &Receiver{Target: tgt}, nil)
	d := newTestDomain(500)
	ctx, cancel := context.WithCancel(context.Background())
	d.onClean = func(d *testDomain, call int) {
		d.write(1, uint32(call+5))
		if call == 2 {
			cancel()
		}
	}
	_, err := (&Sender{}).Send(ctx, dial(t, addr, nil), d, "g", migrate.SaveOptions{Live: true, Policy: migrate.RoundsPolicy(10, 0)})
	var e *Error
	if !errors.As(err, &e) || !e.SourceRunning || !errors.Is(err, context.Canceled) {
		t.Fatalf("sender: %v", err)
	}
	if o := result(t, results); o.err == nil || tgt.created != tgt.destroyed {
		t.Fatalf("receiver: %v", o.err)
	}
}

// TestRateLimit: the sender's bandwidth limit holds on a real connection.
func TestRateLimit(t *testing.T) {
	tgt := &testTarget{}
	addr, results := serve(t, &Receiver{Target: tgt}, nil)
	d := newTestDomain(256)
	const rate = 2 << 20
	start := time.Now()
	res, err := (&Sender{Encodings: []string{EncodingRaw}, RateLimit: rate}).Send(context.Background(), dial(t, addr, nil), d, "g", migrate.SaveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	result(t, results)
	el := time.Since(start)
	min := time.Duration(float64(res.WireBytes-rate/20) / rate * float64(time.Second))
	if el < min {
		t.Fatalf("%d bytes in %v at %d B/s: faster than the limit allows (%v)", res.WireBytes, el, rate, min)
	}
}

// TestRateLimiterClock checks the bucket's arithmetic on a fake clock.
func TestRateLimiterClock(t *testing.T) {
	now := time.Unix(0, 0)
	var slept time.Duration
	l := &RateLimiter{W: io.Discard, Rate: 1 << 20, Burst: 64 << 10,
		now: func() time.Time { return now }, sleep: func(d time.Duration) { slept += d; now = now.Add(d) }}
	l.Write(make([]byte, 64<<10)) // the full bucket
	if slept != 0 {
		t.Fatalf("slept %v for the first burst", slept)
	}
	l.Write(make([]byte, 4<<20))
	if want := 4 * time.Second; slept < want-time.Millisecond || slept > want+time.Millisecond {
		t.Fatalf("slept %v for 4 MiB at 1 MiB/s, want %v", slept, want)
	}
	slept = 0
	now = now.Add(10 * time.Second) // idle: the bucket refills, but only to Burst
	l.Write(make([]byte, 128<<10))
	if want := time.Second / 16; slept < want-time.Millisecond || slept > want+time.Millisecond {
		t.Fatalf("slept %v after idling, want %v", slept, want)
	}
}

// testCADER is the DER of the CA testTLS made last.
var testCADER []byte

// testTLS makes a CA, a server certificate for 127.0.0.1 and the two
// configurations (the client verifies the server; the server asks for a
// client certificate from the same CA).
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xensr test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	testCADER = caDER
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "host"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	server = &tls.Config{Certificates: []tls.Certificate{leaf(2, x509.ExtKeyUsageServerAuth)},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	client = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{leaf(3, x509.ExtKeyUsageClientAuth)}}
	return server, client
}

// TestTLSRefusesUnknownClient: a client without a certificate from the CA
// does not get past the TLS handshake, and nothing is created.
func TestTLSRefusesUnknownClient(t *testing.T) {
	srv, cli := testTLS(t)
	tgt := &testTarget{}
	addr, results := serve(t, &Receiver{Target: tgt}, srv)
	bare := cli.Clone()
	bare.Certificates = nil
	d := newTestDomain(64)
	_, err := (&Sender{}).Send(context.Background(), dial(t, addr, bare), d, "g", migrate.SaveOptions{})
	var e *Error
	if !errors.As(err, &e) || e.Phase != PhaseHandshake || d.calls != 0 {
		t.Fatalf("sender: %v (calls %d)", err, d.calls)
	}
	if o := result(t, results); o.err == nil || tgt.created != 0 {
		t.Fatalf("receiver: %v", o.err)
	}
}

// TestEncodingLatency: with the raw and zstd encodings the target has
// read what the precopy sent by the time the guest is suspended, so it
// restores while the source still runs. stream/pack holds its skeleton
// until a block fills; its lag is logged, not required.
func TestEncodingLatency(t *testing.T) {
	for _, enc := range []string{EncodingRaw, EncodingZstd, EncodingPack} {
		t.Run(enc, func(t *testing.T) {
			tgt := &testTarget{}
			addr, results := serve(t, &Receiver{Target: tgt}, nil)
			d := newTestDomain(3000)
			for p := uint64(0); p < 3000; p += 2 {
				d.scribble(p) // half the memory incompressible
			}
			var sent atomic.Int64
			var behind int64
			d.onSuspend = func() {
				want := sent.Load() - 2<<20
				deadline := time.Now().Add(3 * time.Second)
				for tgt.read.Load() < want && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				behind = sent.Load() - tgt.read.Load()
			}
			opt := migrate.SaveOptions{Live: true, Policy: func(last migrate.RoundStats, _ []migrate.RoundStats) bool { return last.Round < 1 },
				OnProgress: func(p migrate.Progress) {
					if !p.Final {
						sent.Store(p.Bytes)
					}
				}}
			if _, err := (&Sender{Encodings: []string{enc}}).Send(context.Background(), dial(t, addr, nil), d, "g", opt); err != nil {
				t.Fatal(err)
			}
			if o := result(t, results); o.err != nil {
				t.Fatal(o.err)
			}
			t.Logf("%s: at the suspension the target had read all but %d of %d bytes of image", enc, behind, sent.Load())
			if enc != EncodingPack && behind > 2<<20 {
				t.Fatalf("%s: the target lagged %d bytes behind the precopy", enc, behind)
			}
		})
	}
}
