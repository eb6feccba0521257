package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/xensr/xensr/migrate"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/pack"
)

// Incoming is a domain a Target restored, paused, under a temporary name.
// *migrate.Restored is one.
type Incoming interface {
	Rename(name string) error
	Unpause() error
	Destroy() error
}

// Target is where a Receiver restores domains: this host (HostTarget) or a
// test's fake.
type Target interface {
	// DomainNames returns the name of every domain.
	DomainNames() (map[uint32]string, error)
	// Restore builds a domain from the save image r, as migrate.Restore
	// does: on failure nothing of it is left.
	Restore(ctx context.Context, r io.Reader, opt migrate.RestoreOptions) (Incoming, error)
}

// HostTarget is a Target restoring with migrate.Restore through b and ts
// (e.g. a migrate.Host's Builder and Toolstack).
func HostTarget(b migrate.Builder, ts migrate.Toolstack) Target { return hostTarget{b, ts} }

type hostTarget struct {
	b  migrate.Builder
	ts migrate.Toolstack
}

func (t hostTarget) DomainNames() (map[uint32]string, error) { return t.ts.DomainNames() }

func (t hostTarget) Restore(ctx context.Context, r io.Reader, opt migrate.RestoreOptions) (Incoming, error) {
	d, err := migrate.Restore(ctx, t.b, t.ts, r, opt)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Receiver takes domains from Senders. Set the fields before the first use;
// one Receiver may serve several connections at once.
type Receiver struct {
	Target Target
	// Encodings accepted, in order of preference; nil is DefaultEncodings.
	// The first of the sender's encodings that is accepted is chosen.
	Encodings []string
	// HandshakeTimeout bounds the preamble and hello of a connection; 0 is
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IOTimeout bounds the wait for every frame once the handshake is
	// done; 0 is DefaultIOTimeout.
	IOTimeout time.Duration
	// Restore is the template of the restore options (Log, OnProgress);
	// Name, Suffix and Paused are set per migration.
	Restore migrate.RestoreOptions
	// Logf receives progress lines; nil discards them.
	Logf func(string, ...any)

	mu       sync.Mutex
	arriving map[string]bool // names being received
}

// Received is a domain a Receiver took over; it runs.
type Received struct {
	Name        string
	Remote      string // the sender's address
	Encoding    string
	Domain      Incoming
	WireBytes   int64         // bytes read from the connection
	StreamBytes int64         // bytes of the save image after decoding
	Total       time.Duration // from the connection to RUNNING sent
}

func (r *Receiver) logf(format string, a ...any) {
	if r.Logf != nil {
		r.Logf(format, a...)
	}
}

// countReader counts bytes read.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// dataReader reads the save stream out of DATA frames, noting STOP, ending
// at END and failing on ABORT or anything out of order.
type dataReader struct {
	fr      *frameReader
	conn    net.Conn
	timeout time.Duration
	cur     []byte
	stopped bool
	ended   bool
	err     error // sticky
}

func (d *dataReader) Read(p []byte) (int, error) {
	for len(d.cur) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.conn.SetReadDeadline(time.Now().Add(d.timeout))
		f, err := d.fr.next()
		switch {
		case err == io.EOF:
			d.err = fmt.Errorf("connection closed before END: %w", &stream.FormatError{Layer: Layer,
				Offset: d.fr.off, Index: d.fr.index, Field: "kind", Expected: "END", Actual: "end of connection", Err: stream.ErrTruncated})
		case err != nil:
			d.err = ctxErr(context.Background(), err)
		case f.kind == KindData:
			d.cur = f.payload
		case f.kind == KindStop && !d.stopped:
			d.stopped = true
		case f.kind == KindEnd:
			d.ended = true
			d.err = io.EOF
		case f.kind == KindAbort:
			d.err = frameError(&f)
		default:
			d.err = unexpected(f, 0)
		}
	}
	n := copy(p, d.cur)
	d.cur = d.cur[n:]
	return n, nil
}

func (d *dataReader) phase() Phase {
	if d.stopped {
		return PhaseStopAndCopy
	}
	return PhasePrecopy
}

// reserve marks name as arriving unless a domain or another migration has
// it.
func (r *Receiver) reserve(name string) (byte, string) {
	names, err := r.Target.DomainNames()
	if err != nil {
		return RefuseBusy, fmt.Sprintf("listing domains: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range names {
		if n == name || n == name+migrate.IncomingSuffix {
			return RefuseName, fmt.Sprintf("%v: %q is domain %d", migrate.ErrNameExists, n, id)
		}
	}
	if r.arriving[name] {
		return RefuseName, fmt.Sprintf("%v: %q is arriving on another connection", migrate.ErrNameExists, name)
	}
	if r.arriving == nil {
		r.arriving = map[string]bool{}
	}
	r.arriving[name] = true
	return 0, ""
}

func (r *Receiver) release(name string) {
	r.mu.Lock()
	delete(r.arriving, name)
	r.mu.Unlock()
}

// ServeConn receives one domain over conn and closes it. It returns the
// domain running here, or an *Error naming the phase; then nothing of the
// domain is left here (Cleaned), or the error says what is. When the
// domain runs here but RUNNING could not be sent, both the Received and an
// *Error are returned.
func (r *Receiver) ServeConn(ctx context.Context, conn net.Conn) (*Received, error) {
	defer conn.Close()
	start := time.Now()
	stopCtx := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopCtx()
	res := &Received{Remote: conn.RemoteAddr().String()}
	cr := &countReader{r: conn}
	fail := func(p Phase, cleaned bool, err error) (*Received, error) {
		return nil, &Error{Side: "receiver", Phase: p, Cleaned: cleaned, Err: err}
	}
	timeout := r.IOTimeout
	if timeout <= 0 {
		timeout = DefaultIOTimeout
	}
	hs := r.HandshakeTimeout
	if hs <= 0 {
		hs = DefaultHandshakeTimeout
	}
	encs := r.Encodings
	if encs == nil {
		encs = DefaultEncodings
	}

	// Handshake: the whole of it under one deadline.
	conn.SetDeadline(time.Now().Add(hs))
	br := bufio.NewReaderSize(cr, 1<<20)
	pre := make([]byte, len(Preamble))
	if n, err := io.ReadFull(br, pre); err != nil {
		return fail(PhaseHandshake, true, truncated(&stream.FormatError{Layer: Layer, Index: -1, Field: "preamble",
			Expected: fmt.Sprintf("%d bytes", len(Preamble)), Actual: fmt.Sprintf("%d bytes", n), Err: stream.ErrTruncated}, ctxErr(ctx, err)))
	}
	if !bytes.Equal(pre, []byte(Preamble)) {
		return fail(PhaseHandshake, true, &stream.FormatError{Layer: Layer, Index: -1, Field: "preamble",
			Expected: fmt.Sprintf("%q", Preamble), Actual: fmt.Sprintf("%q", pre), Err: stream.ErrValue})
	}
	fr := &frameReader{r: br, off: int64(len(Preamble))}
	f, err := fr.next()
	if err == io.EOF {
		err = fmt.Errorf("connection closed before HELLO: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fail(PhaseHandshake, true, ctxErr(ctx, err))
	}
	if f.kind != KindHello {
		return fail(PhaseHandshake, true, unexpected(f, KindHello))
	}
	h, err := decodeHello(f.payload, f.off, f.index)
	if err != nil {
		return fail(PhaseHandshake, true, err)
	}
	refuse := func(code byte, text string) (*Received, error) {
		p := appendReason([]byte{code}, text)
		conn.Write(appendFrame(nil, KindRefuse, p))
		return fail(PhaseHandshake, true, fmt.Errorf("refused %s from %s: %w", h.Name, res.Remote, &RefusedError{Code: code, Reason: text}))
	}
	if h.Version < Version {
		return refuse(RefuseVersion, fmt.Sprintf("protocol version %d; this receiver speaks %d", h.Version, Version))
	}
	for _, e := range h.Encodings {
		if contains(encs, e) {
			res.Encoding = e
			break
		}
	}
	if res.Encoding == "" {
		return refuse(RefuseEncoding, fmt.Sprintf("no common encoding: offered %q, accepted %q", h.Encodings, encs))
	}
	if code, text := r.reserve(h.Name); code != 0 {
		return refuse(code, text)
	}
	defer r.release(h.Name)
	res.Name = h.Name
	wp, _ := Welcome{Version: Version, Encoding: res.Encoding}.AppendBinary(nil)
	if _, err := conn.Write(appendFrame(nil, KindWelcome, wp)); err != nil {
		return fail(PhaseHandshake, true, ctxErr(ctx, err))
	}
	conn.SetDeadline(time.Time{})
	r.logf("transport: receiving %s from %s, encoding %s", h.Name, res.Remote, res.Encoding)

	// Stream: restore as NAME--incoming, paused.
	dr := &dataReader{fr: fr, conn: conn, timeout: timeout}
	var src io.Reader = dr
	raw := &countReader{r: dr}
	src = raw
	var unpackErr chan error
	var pr *io.PipeReader
	if res.Encoding == EncodingPack {
		var pw *io.PipeWriter
		pr, pw = io.Pipe()
		unpackErr = make(chan error, 1)
		go func() {
			err := pack.Unpack(pw, dr)
			pw.CloseWithError(errOr(err, io.EOF))
			unpackErr <- err
		}()
		raw = &countReader{r: pr}
		src = raw
	}
	var zr *zstd.Decoder
	if res.Encoding == EncodingZstd {
		zr, err = zstd.NewReader(dr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return fail(PhasePrecopy, true, err)
		}
		defer zr.Close()
		raw = &countReader{r: zr}
		src = raw
	}
	ropt := r.Restore
	ropt.Name = h.Name
	ropt.Suffix = migrate.IncomingSuffix
	ropt.Paused = true
	d, rerr := r.Target.Restore(ctx, src, ropt)
	var serr error // what the stream or its decoder said
	if pr != nil {
		if rerr != nil {
			pr.CloseWithError(rerr)
		} else {
			_, serr = io.Copy(io.Discard, raw) // the rest, up to the pack's end
		}
		if uerr := <-unpackErr; uerr != nil && rerr == nil {
			serr = uerr
		}
	} else if rerr == nil {
		var n int64
		n, serr = io.Copy(io.Discard, raw)
		if serr == nil && n > 0 {
			serr = &stream.FormatError{Layer: Layer, Offset: fr.off, Index: fr.index, Field: "payload",
				Expected: "END after the save image", Actual: fmt.Sprintf("%d more bytes", n), Err: stream.ErrLength}
		}
	}
	if serr == nil && rerr == nil && !dr.ended {
		// The decoder stopped at the image's end: the next frame must be END.
		var n int64
		n, serr = io.Copy(io.Discard, dr)
		if serr == nil && n > 0 {
			serr = &stream.FormatError{Layer: Layer, Offset: fr.off, Index: fr.index, Field: "payload",
				Expected: "END after the save image", Actual: fmt.Sprintf("%d more bytes", n), Err: stream.ErrLength}
		}
	}
	if dr.err != nil && dr.err != io.EOF {
		serr = dr.err // the connection's failure explains the rest
	}
	res.StreamBytes = raw.n
	if rerr != nil || serr != nil || !dr.ended {
		if serr == nil && !dr.ended {
			serr = fmt.Errorf("save image complete but no END frame")
		}
		cleaned := true
		if d != nil {
			if derr := d.Destroy(); derr != nil {
				cleaned = false
				serr = errors.Join(serr, derr)
			}
		} else {
			var re *migrate.RestoreError
			if errors.As(rerr, &re) && !re.Cleaned {
				cleaned = false
			}
		}
		err := rerr
		if serr != nil && !errors.Is(rerr, serr) {
			err = errors.Join(ctxErr(ctx, serr), rerr)
		}
		return fail(dr.phase(), cleaned, err)
	}

	// Commit.
	destroy := func(err error) (*Received, error) {
		derr := d.Destroy()
		return fail(PhaseCommit, derr == nil, errors.Join(err, derr))
	}
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(appendFrame(nil, KindReady, nil)); err != nil {
		return destroy(fmt.Errorf("sending READY: %w", ctxErr(ctx, err)))
	}
	f, err = fr.next()
	if err == io.EOF {
		err = fmt.Errorf("connection closed before GO: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return destroy(fmt.Errorf("waiting for GO: %w", ctxErr(ctx, err)))
	}
	if f.kind != KindGo {
		if f.kind == KindAbort {
			return destroy(frameError(&f))
		}
		return destroy(unexpected(f, KindGo))
	}
	err = d.Rename(h.Name)
	if err == nil {
		err = d.Unpause()
	}
	if err != nil {
		// Hand the guest back: the sender resumes its copy on FAILED.
		derr := d.Destroy()
		if derr == nil {
			conn.Write(appendFrame(nil, KindFailed, appendReason(nil, err.Error())))
		}
		return fail(PhaseCommit, derr == nil, errors.Join(fmt.Errorf("starting the domain: %w", err), derr))
	}
	// The guest runs here now, whether or not the sender hears of it.
	res.Domain = d
	res.WireBytes = cr.n
	res.Total = time.Since(start)
	if _, err := conn.Write(appendFrame(nil, KindRunning, nil)); err != nil {
		r.logf("transport: %s runs here, but RUNNING did not reach the sender: %v", h.Name, err)
		return res, &Error{Side: "receiver", Phase: PhaseCommit, Err: fmt.Errorf("sending RUNNING (the domain runs here): %w", err)}
	}
	r.logf("transport: %s runs here (%d bytes on the wire, %d of image)", h.Name, res.WireBytes, res.StreamBytes)
	return res, nil
}

// Serve accepts connections on l and receives a domain over each, one
// goroutine per connection, calling done (if set) with each outcome. A
// peer that fails its handshake costs only its own connection. Serve
// returns when l fails (closed) or ctx ends, after the connections in
// progress finish.
func (r *Receiver) Serve(ctx context.Context, l net.Listener, done func(*Received, error)) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.ServeConn(ctx, c)
			if err != nil {
				r.logf("transport: %s: %v", c.RemoteAddr(), err)
			}
			if done != nil {
				done(res, err)
			}
		}()
	}
}
