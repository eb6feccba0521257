package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/pack"
)

// Default timeouts.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIOTimeout        = 60 * time.Second
)

// DefaultEncodings are the encodings offered (sender) or accepted
// (receiver) when none are configured, in order of preference.
var DefaultEncodings = []string{EncodingZstd, EncodingPack, EncodingRaw}

// flusher calls flush after every `every` bytes written through it.
type flusher struct {
	w       io.Writer
	every   int
	pending int
	flush   func() error
}

func (f *flusher) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.pending += n
	if err == nil && f.pending >= f.every {
		f.pending = 0
		err = f.flush()
	}
	return n, err
}

// Sender sends one domain to a Receiver over a connection. Set the fields
// before the first use.
type Sender struct {
	// Encodings offered, in order of preference; nil is DefaultEncodings.
	Encodings []string
	// Pack tunes the pack encoding.
	Pack pack.Options
	// RateLimit caps the bytes a second written on the connection; 0 is
	// no limit.
	RateLimit float64
	// HandshakeTimeout bounds the handshake; 0 is DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IOTimeout bounds every write of a frame and every wait for the
	// receiver's answer; 0 is DefaultIOTimeout.
	IOTimeout time.Duration
	// Rename, if set, renames the source domain before GO (to
	// NAME--migratedaway, as xl does, so that a receiver on the same host
	// can take the name) and back when the receiver fails.
	Rename func(to string) error
	// Logf receives progress lines; nil discards them.
	Logf func(string, ...any)
}

// Result describes a migration that succeeded (or how far one got).
type Result struct {
	Encoding    string
	Save        migrate.Stats
	WireBytes   int64         // bytes written on the connection, all frames
	StreamBytes int64         // bytes of the save image before encoding
	Total       time.Duration // from the connection's first byte to RUNNING
	// Downtime runs from the suspend request at the source to the
	// receiver's RUNNING: the guest ran nowhere in between.
	Downtime time.Duration
}

// phaseDomain notes when the save suspends the guest.
type phaseDomain struct {
	migrate.Domain
	phase     *atomic.Int32
	suspended *atomic.Int64 // unix nanoseconds of the suspend request
}

func (d phaseDomain) Suspend() error {
	d.suspended.Store(time.Now().UnixNano())
	d.phase.Store(int32(PhaseStopAndCopy))
	return d.Domain.Suspend()
}

// countWriter counts bytes written.
type countWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// frameWriter cuts what it is given into DATA frames, sends STOP when the
// phase moves to stop-and-copy, and sets a write deadline for each frame.
type frameWriter struct {
	conn    net.Conn
	w       io.Writer // conn, possibly rate-limited and counted
	timeout time.Duration
	phase   *atomic.Int32
	stopped bool
	hdr     []byte
	err     error // sticky
}

func (f *frameWriter) send(k Kind, payload []byte) error {
	if f.err != nil {
		return f.err
	}
	f.conn.SetWriteDeadline(time.Now().Add(f.timeout))
	f.hdr = append(f.hdr[:0], byte(k))
	f.hdr = binary.LittleEndian.AppendUint32(f.hdr, uint32(len(payload)))
	if _, err := f.w.Write(f.hdr); err != nil {
		f.err = err
		return err
	}
	if len(payload) > 0 {
		if _, err := f.w.Write(payload); err != nil {
			f.err = err
			return err
		}
	}
	return nil
}

// markStop sends STOP once the save has suspended the guest.
func (f *frameWriter) markStop() error {
	if !f.stopped && Phase(f.phase.Load()) == PhaseStopAndCopy {
		f.stopped = true
		return f.send(KindStop, nil)
	}
	return nil
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if err := f.markStop(); err != nil {
		return 0, err
	}
	done := 0
	for len(p) > 0 {
		n := min(len(p), MaxData)
		if err := f.send(KindData, p[:n]); err != nil {
			return done, err
		}
		done += n
		p = p[n:]
	}
	return done, nil
}

// frames reads the peer's frames in the background, so that a refusal
// sent while we stream is seen, and waits for them with a timeout.
type frames struct {
	c    chan frame
	err  error // set before c is closed
	conn net.Conn
}

func readFrames(conn net.Conn, r *bufio.Reader) *frames {
	fs := &frames{c: make(chan frame, 4), conn: conn}
	go func() {
		fr := &frameReader{r: r}
		for {
			f, err := fr.next()
			if err != nil {
				fs.err = err
				close(fs.c)
				return
			}
			// Copy the payload: the reader's buffer is reused.
			f.payload = append([]byte(nil), f.payload...)
			fs.c <- f
		}
	}()
	return fs
}

// wait returns the next frame, or an error if none comes within d or the
// context ends.
func (fs *frames) wait(ctx context.Context, d time.Duration) (frame, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case f, ok := <-fs.c:
		if !ok {
			if fs.err == io.EOF {
				return frame{}, fmt.Errorf("connection closed by the peer: %w", io.ErrUnexpectedEOF)
			}
			return frame{}, fs.err
		}
		return f, nil
	case <-t.C:
		return frame{}, fmt.Errorf("%w (%v)", ErrTimeout, d)
	case <-ctx.Done():
		return frame{}, ctx.Err()
	}
}

func (s *Sender) logf(format string, a ...any) {
	if s.Logf != nil {
		s.Logf(format, a...)
	}
}

// Send migrates domain d, named name, over conn: handshake, save (with
// opt; a stream encoder between the save and the wire), then the commit
// exchange. It closes conn when done.
//
// On success the receiver's copy runs and the source has been destroyed
// (Saver.Commit). Every failure is an *Error naming the phase; the guest
// runs at the source (SourceRunning) unless the receiver's answer to GO
// was lost, when the source is left suspended as xl leaves it. Nothing is
// saved or suspended before the receiver has accepted the name.
func (s *Sender) Send(ctx context.Context, conn net.Conn, d migrate.Domain, name string, opt migrate.SaveOptions) (Result, error) {
	defer conn.Close()
	start := time.Now()
	var res Result
	fail := func(p Phase, running bool, err error) (Result, error) {
		res.Total = time.Since(start)
		return res, &Error{Side: "sender", Phase: p, SourceRunning: running, Err: err}
	}
	// Close the connection when ctx ends: every blocked read and write returns.
	stopCtx := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopCtx()

	timeout := s.IOTimeout
	if timeout <= 0 {
		timeout = DefaultIOTimeout
	}
	hs := s.HandshakeTimeout
	if hs <= 0 {
		hs = DefaultHandshakeTimeout
	}
	encs := s.Encodings
	if encs == nil {
		encs = DefaultEncodings
	}

	// Handshake.
	wire := &countWriter{w: conn}
	var out io.Writer = wire
	if s.RateLimit > 0 {
		out = &countWriter{w: NewRateLimiter(conn, s.RateLimit)}
		wire = out.(*countWriter)
	}
	h := Hello{Version: Version, Encodings: encs, Name: name}
	if opt.Live {
		h.Flags |= FlagLive
	}
	payload, err := h.AppendBinary(nil)
	if err != nil {
		return fail(PhaseHandshake, true, err)
	}
	msg := appendFrame([]byte(Preamble), KindHello, payload)
	conn.SetWriteDeadline(time.Now().Add(hs))
	if _, err := out.Write(msg); err != nil {
		return fail(PhaseHandshake, true, fmt.Errorf("sending hello: %w", ctxErr(ctx, err)))
	}
	fs := readFrames(conn, bufio.NewReader(conn))
	f, err := fs.wait(ctx, hs)
	if err != nil {
		return fail(PhaseHandshake, true, fmt.Errorf("waiting for welcome: %w", ctxErr(ctx, err)))
	}
	switch f.kind {
	case KindWelcome:
	case KindRefuse:
		code, text, err := decodeReason(f.payload, f.off, f.index, f.kind)
		if err != nil {
			return fail(PhaseHandshake, true, err)
		}
		return fail(PhaseHandshake, true, &RefusedError{Code: code, Reason: text})
	default:
		return fail(PhaseHandshake, true, unexpected(f, KindWelcome))
	}
	w, err := decodeWelcome(f.payload, f.off, f.index)
	if err != nil {
		return fail(PhaseHandshake, true, err)
	}
	if w.Version != Version {
		return fail(PhaseHandshake, true, fmt.Errorf("receiver answered protocol version %d, we speak %d", w.Version, Version))
	}
	if !contains(encs, w.Encoding) {
		return fail(PhaseHandshake, true, fmt.Errorf("receiver chose encoding %q, not offered", w.Encoding))
	}
	res.Encoding = w.Encoding
	s.logf("transport: %s accepted %s, encoding %s", conn.RemoteAddr(), name, w.Encoding)

	// Stream.
	var phase atomic.Int32
	phase.Store(int32(PhasePrecopy))
	var suspended atomic.Int64
	fw := &frameWriter{conn: conn, w: out, timeout: timeout, phase: &phase}
	bw := bufio.NewWriterSize(fw, 256<<10)
	raw := &countWriter{w: bw}
	var saveTo io.Writer = raw
	var packErr chan error
	var pw *io.PipeWriter
	if w.Encoding == EncodingPack {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		packErr = make(chan error, 1)
		go func() {
			_, err := pack.Pack(bw, pr, s.Pack)
			pr.CloseWithError(errOr(err, io.ErrClosedPipe))
			packErr <- err
		}()
		saveTo = &countWriter{w: pw}
		raw = saveTo.(*countWriter)
	}
	var zw *zstd.Encoder
	if w.Encoding == EncodingZstd {
		zw, err = zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return fail(PhasePrecopy, true, err)
		}
		saveTo = &countWriter{w: &flusher{w: zw, every: FlushBytes, flush: func() error {
			if err := zw.Flush(); err != nil {
				return err
			}
			return bw.Flush()
		}}}
		raw = saveTo.(*countWriter)
	}
	// A receiver that fails while we stream says why; stop at once.
	var early atomic.Pointer[frame]
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case f, ok := <-fs.c:
			if ok {
				early.Store(&f)
				if f.kind != KindReady {
					conn.Close() // the receiver gave up: stop streaming
				}
			}
		case <-stopWatch:
		}
	}()
	saver := migrate.NewSaver(phaseDomain{Domain: d, phase: &phase, suspended: &suspended}, opt)
	st, saveErr := saver.Save(ctx, saveTo)
	res.Save = st
	var endErr error
	if saveErr == nil {
		if pw != nil {
			pw.Close()
			endErr = <-packErr
		}
		if zw != nil {
			endErr = zw.Close()
		}
		if endErr == nil {
			endErr = bw.Flush()
		}
		if endErr == nil {
			endErr = fw.markStop() // a save so small the STOP was not sent yet
		}
		if endErr == nil {
			endErr = fw.send(KindEnd, nil)
		}
	} else if pw != nil {
		pw.CloseWithError(saveErr)
		<-packErr
	}
	close(stopWatch)
	<-watchDone
	res.StreamBytes = raw.n.Load()
	res.WireBytes = wire.n.Load()
	p := Phase(phase.Load())
	peer := func(err error) error {
		if f := early.Load(); f != nil && f.kind != KindReady {
			return errors.Join(frameError(f), err)
		}
		return ctxErr(ctx, err)
	}
	if saveErr != nil {
		var se *migrate.SaveError
		running := errors.As(saveErr, &se) && se.Resumed
		if early.Load() == nil && fw.err == nil {
			fw.send(KindAbort, appendReason(nil, saveErr.Error()))
		}
		return fail(p, running, peer(saveErr))
	}
	if endErr != nil {
		aerr := saver.Abort()
		return fail(p, aerr == nil, errors.Join(peer(fmt.Errorf("finishing the stream: %w", endErr)), aerr))
	}
	conn.SetWriteDeadline(time.Time{})
	s.logf("transport: stream sent: %d bytes of image, %d on the wire", res.StreamBytes, res.WireBytes)

	// Commit.
	abort := func(err error) (Result, error) {
		aerr := saver.Abort()
		return fail(PhaseCommit, aerr == nil, errors.Join(err, aerr))
	}
	if e := early.Load(); e != nil {
		f = *e
	} else if f, err = fs.wait(ctx, timeout); err != nil {
		return abort(fmt.Errorf("waiting for READY: %w", ctxErr(ctx, err)))
	}
	if f.kind != KindReady {
		return abort(frameError(&f))
	}
	away := name + "--migratedaway"
	if s.Rename != nil {
		if err := s.Rename(away); err != nil {
			return abort(fmt.Errorf("renaming the source to %s: %w", away, err))
		}
	}
	// Point of no return: after GO the receiver may run its copy.
	conn.SetWriteDeadline(time.Now().Add(timeout))
	if err := fw.send(KindGo, nil); err != nil {
		return fail(PhaseCommit, false, fmt.Errorf("sending GO: %w", ctxErr(ctx, err)))
	}
	f, err = fs.wait(ctx, timeout)
	if err != nil {
		return fail(PhaseCommit, false, fmt.Errorf("waiting for RUNNING after GO: %w", ctxErr(ctx, err)))
	}
	res.WireBytes = wire.n.Load()
	switch f.kind {
	case KindRunning:
		res.Total = time.Since(start)
		if t := suspended.Load(); t != 0 {
			res.Downtime = time.Since(time.Unix(0, t))
		}
		s.logf("transport: %s runs at the receiver; destroying the source", name)
		if err := saver.Commit(); err != nil {
			return res, fmt.Errorf("migration sender: destroying the source after the receiver took over: %w", err)
		}
		return res, nil
	case KindFailed:
		if s.Rename != nil {
			s.Rename(name)
		}
		return abort(frameError(&f))
	}
	return fail(PhaseCommit, false, frameError(&f))
}

// frameError describes an unexpected frame: the reason of an ABORT, FAILED
// or REFUSE, or a protocol error for anything else.
func frameError(f *frame) error {
	switch f.kind {
	case KindAbort, KindFailed, KindRefuse:
		code, text, err := decodeReason(f.payload, f.off, f.index, f.kind)
		if err != nil {
			return err
		}
		if f.kind == KindRefuse {
			return &RefusedError{Code: code, Reason: text}
		}
		return &PeerError{Kind: f.kind, Reason: text}
	}
	return unexpected(*f, 0)
}

// unexpected is a frame out of protocol order.
func unexpected(f frame, want Kind) error {
	exp := "a frame in protocol order"
	if want != 0 {
		exp = want.String()
	}
	return &stream.FormatError{Layer: Layer, Offset: f.off, Index: f.index, Type: uint32(f.kind),
		TypeName: kindNames[f.kind], Field: "kind", Expected: exp, Actual: f.kind.String(), Err: stream.ErrOrder}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// ctxErr prefers the context's error over the connection error that its
// cancellation caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)) {
		return ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// Dial connects to a receiver at addr (host:port), over TLS when cfg is
// not nil.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
	var d net.Dialer
	if cfg == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	td := tls.Dialer{NetDialer: &d, Config: cfg}
	return td.DialContext(ctx, "tcp", addr)
}
