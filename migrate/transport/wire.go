package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/xensr/xensr/stream"
)

// Preamble opens every connection, written by the sender before its hello:
// a receiver drops a peer that does not start with it at once.
const Preamble = "XSRNET\r\n"

// Version is the protocol version this package speaks.
const Version = 1

// Layer is the stream.FormatError layer name of this protocol.
const Layer = "xsrnet"

// Encodings of the save stream on the wire.
const (
	// EncodingRaw carries the save image unchanged (what xl sends).
	EncodingRaw = "raw"
	// EncodingPack carries the image as stream/pack writes it: zero pages as
	// nothing, repeated pages as references, the rest compressed with zstd.
	EncodingPack = "pack"
	// EncodingZstd carries the image through one zstd stream, flushed
	// every FlushBytes of image: zero and repeated pages shrink within
	// zstd's window, and the receiver gets every page with little delay
	// (stream/pack holds its skeleton until a block fills, so the
	// receiver can restore little before the end).
	EncodingZstd = "zstd"
)

// FlushBytes is how much of the image the zstd encoding compresses before
// it flushes what it has to the wire.
const FlushBytes = 1 << 20

// Limits of the framing.
const (
	// MaxControl is the largest payload of a control frame.
	MaxControl = 4096
	// MaxData is the largest payload of a data frame.
	MaxData = 1 << 20
	// MaxName is the longest domain name a hello carries.
	MaxName = 255
	// MaxEncodings is the most encodings a hello offers.
	MaxEncodings = 16
)

// Kind is the type of a frame. Every frame is kind u8, payload length u32
// (little-endian), payload.
type Kind byte

// The frames, in protocol order.
const (
	KindHello   Kind = 'H' // sender: version, flags, encodings, domain name
	KindWelcome Kind = 'W' // receiver: version, chosen encoding
	KindRefuse  Kind = 'X' // receiver: refusal code and reason; connection ends
	KindData    Kind = 'D' // sender: bytes of the encoded save stream
	KindStop    Kind = 'S' // sender: the guest is suspended (stop-and-copy begins)
	KindEnd     Kind = 'E' // sender: the save stream is complete
	KindAbort   Kind = 'A' // sender: the save failed, reason; connection ends
	KindReady   Kind = 'R' // receiver: the domain is built, paused
	KindGo      Kind = 'G' // sender: the source is stopped for good, run your copy
	KindRunning Kind = 'K' // receiver: the copy runs; the source may be destroyed
	KindFailed  Kind = 'F' // receiver: starting the copy failed, it is destroyed, reason
)

var kindNames = map[Kind]string{
	KindHello: "HELLO", KindWelcome: "WELCOME", KindRefuse: "REFUSE", KindData: "DATA",
	KindStop: "STOP", KindEnd: "END", KindAbort: "ABORT", KindReady: "READY",
	KindGo: "GO", KindRunning: "RUNNING", KindFailed: "FAILED",
}

// String returns the frame's name, e.g. "HELLO".
func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "kind " + strconv.Itoa(int(k))
}

// maxPayload is the largest payload of a frame of kind k.
func (k Kind) maxPayload() int {
	switch k {
	case KindData:
		return MaxData
	case KindStop, KindEnd, KindReady, KindGo, KindRunning:
		return 0
	}
	return MaxControl
}

// Flags of a hello.
const (
	// FlagLive: the sender runs live precopy rounds.
	FlagLive   uint16 = 1 << 0
	knownFlags        = FlagLive
)

// Hello is the sender's first frame.
type Hello struct {
	Version   uint16
	Flags     uint16
	Encodings []string // in the sender's order of preference
	Name      string   // the domain's name, refused by a receiver that has one
}

// Welcome is the receiver's acceptance of a hello.
type Welcome struct {
	Version  uint16
	Encoding string // one of the hello's encodings
}

// Refusal codes.
const (
	RefuseVersion  byte = 1 // no common protocol version
	RefuseEncoding byte = 2 // no common encoding
	RefuseName     byte = 3 // a domain of that name exists (or is arriving)
	RefuseBusy     byte = 4 // the receiver cannot take the domain now
)

// frame is one frame read from the wire. The payload is valid until the next
// read.
type frame struct {
	kind    Kind
	payload []byte
	off     int64 // offset of the frame in the connection's direction
	index   int   // index of the frame
}

// frameReader reads frames from r, counting bytes and frames so that errors
// say where.
type frameReader struct {
	r     *bufio.Reader
	off   int64 // offset of the next frame
	index int   // index of the next frame
	buf   []byte
}

// errf builds a FormatError about the frame at off.
func (fr *frameReader) errf(off int64, index int, k Kind, field, expected, actual string, err error) error {
	return &stream.FormatError{Layer: Layer, Offset: off, Index: index, Type: uint32(k),
		TypeName: kindNames[k], Field: field, Expected: expected, Actual: actual, Err: err}
}

// next reads the next frame. A connection that ends exactly between frames
// returns io.EOF; one that ends inside a frame a FormatError wrapping
// stream.ErrTruncated (with the read error, if it was not an EOF).
func (fr *frameReader) next() (frame, error) {
	off, index := fr.off, fr.index
	var hdr [5]byte
	n, err := io.ReadFull(fr.r, hdr[:])
	if err != nil {
		if n == 0 && err == io.EOF {
			return frame{}, io.EOF
		}
		return frame{}, truncated(fr.errf(off, index, 0, "header", "5 bytes", fmt.Sprintf("%d bytes", n), stream.ErrTruncated), err)
	}
	k := Kind(hdr[0])
	size := binary.LittleEndian.Uint32(hdr[1:])
	if _, ok := kindNames[k]; !ok {
		return frame{}, fr.errf(off, index, k, "kind", "a known frame kind", fmt.Sprintf("%#02x", hdr[0]), stream.ErrUnknownType)
	}
	if int64(size) > int64(k.maxPayload()) {
		return frame{}, fr.errf(off, index, k, "length", fmt.Sprintf("at most %d bytes", k.maxPayload()), fmt.Sprintf("%d bytes", size), stream.ErrTooLarge)
	}
	if cap(fr.buf) < int(size) {
		fr.buf = make([]byte, size)
	}
	p := fr.buf[:size]
	if n, err := io.ReadFull(fr.r, p); err != nil {
		return frame{}, truncated(fr.errf(off, index, k, "payload", fmt.Sprintf("%d bytes", size), fmt.Sprintf("%d bytes", n), stream.ErrTruncated), err)
	}
	fr.off += 5 + int64(size)
	fr.index++
	return frame{kind: k, payload: p, off: off, index: index}, nil
}

// truncated joins a truncation with the read error behind it (a reset, a
// deadline), so errors.Is finds both.
func truncated(fe, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fe
	}
	return errors.Join(fe, err)
}

// appendFrame appends a frame header and payload to b.
func appendFrame(b []byte, k Kind, payload []byte) []byte {
	b = append(b, byte(k))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// validEncoding says whether s may name an encoding: 1 to 32 bytes of
// lower-case letters, digits and dashes.
func validEncoding(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validName says whether s may be a domain name in a hello: 1 to MaxName
// printable ASCII bytes, no slash (it becomes a xenstore value and a file
// name) and no spaces.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '/' {
			return false
		}
	}
	return true
}

// AppendBinary appends the hello's payload (without the frame header):
// version u16, flags u16, count u8 and per encoding length u8 and bytes,
// name length u8 and bytes.
func (h Hello) AppendBinary(b []byte) ([]byte, error) {
	if len(h.Encodings) == 0 || len(h.Encodings) > MaxEncodings {
		return nil, fmt.Errorf("transport: hello with %d encodings (1 to %d)", len(h.Encodings), MaxEncodings)
	}
	if !validName(h.Name) {
		return nil, fmt.Errorf("transport: invalid domain name %q", h.Name)
	}
	b = binary.LittleEndian.AppendUint16(b, h.Version)
	b = binary.LittleEndian.AppendUint16(b, h.Flags)
	b = append(b, byte(len(h.Encodings)))
	for _, e := range h.Encodings {
		if !validEncoding(e) {
			return nil, fmt.Errorf("transport: invalid encoding name %q", e)
		}
		b = append(b, byte(len(e)))
		b = append(b, e...)
	}
	b = append(b, byte(len(h.Name)))
	return append(b, h.Name...), nil
}

// payloadReader decodes a payload field by field and reports the first
// problem as a FormatError.
type payloadReader struct {
	p     []byte
	pos   int
	off   int64 // stream offset of the frame
	index int
	kind  Kind
	err   error
}

func (d *payloadReader) fail(field, expected, actual string, err error) {
	if d.err == nil {
		d.err = &stream.FormatError{Layer: Layer, Offset: d.off, Index: d.index, Type: uint32(d.kind),
			TypeName: kindNames[d.kind], Field: field, Expected: expected, Actual: actual, Err: err}
	}
}

func (d *payloadReader) bytes(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.p)-d.pos < n {
		d.fail(field, fmt.Sprintf("%d bytes", n), fmt.Sprintf("%d bytes", len(d.p)-d.pos), stream.ErrTruncated)
		return nil
	}
	b := d.p[d.pos : d.pos+n]
	d.pos += n
	return b
}

func (d *payloadReader) u8(field string) byte {
	if b := d.bytes(field, 1); b != nil {
		return b[0]
	}
	return 0
}

func (d *payloadReader) u16(field string) uint16 {
	if b := d.bytes(field, 2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

// str8 reads a string with a u8 length, str16 one with a u16 length.
func (d *payloadReader) str8(field string) string {
	return string(d.bytes(field, int(d.u8(field+" length"))))
}
func (d *payloadReader) str16(field string) string {
	return string(d.bytes(field, int(d.u16(field+" length"))))
}

func (d *payloadReader) end() error {
	if d.err == nil && d.pos != len(d.p) {
		d.fail("payload", fmt.Sprintf("%d bytes", d.pos), fmt.Sprintf("%d bytes", len(d.p)), stream.ErrLength)
	}
	return d.err
}

// DecodeHello decodes a hello payload. Every malformed payload is a
// *stream.FormatError naming the field.
func DecodeHello(p []byte) (Hello, error) {
	return decodeHello(p, 0, 0)
}

func decodeHello(p []byte, off int64, index int) (Hello, error) {
	d := &payloadReader{p: p, off: off, index: index, kind: KindHello}
	var h Hello
	h.Version = d.u16("version")
	h.Flags = d.u16("flags")
	if d.err == nil && h.Flags&^knownFlags != 0 {
		d.fail("flags", fmt.Sprintf("flags within %#x", knownFlags), fmt.Sprintf("%#x", h.Flags), stream.ErrValue)
	}
	n := int(d.u8("encodings"))
	if d.err == nil && (n == 0 || n > MaxEncodings) {
		d.fail("encodings", fmt.Sprintf("1 to %d", MaxEncodings), strconv.Itoa(n), stream.ErrValue)
	}
	for i := 0; i < n && d.err == nil; i++ {
		e := d.str8("encoding")
		if d.err == nil && !validEncoding(e) {
			d.fail("encoding", "1 to 32 of [a-z0-9-]", strconv.Quote(e), stream.ErrValue)
		}
		h.Encodings = append(h.Encodings, e)
	}
	h.Name = d.str8("name")
	if d.err == nil && !validName(h.Name) {
		d.fail("name", "1 to 255 printable bytes without '/' or spaces", strconv.Quote(h.Name), stream.ErrValue)
	}
	if err := d.end(); err != nil {
		return Hello{}, err
	}
	return h, nil
}

// AppendBinary appends the welcome's payload: version u16, encoding length
// u8 and bytes.
func (w Welcome) AppendBinary(b []byte) ([]byte, error) {
	if !validEncoding(w.Encoding) {
		return nil, fmt.Errorf("transport: invalid encoding name %q", w.Encoding)
	}
	b = binary.LittleEndian.AppendUint16(b, w.Version)
	b = append(b, byte(len(w.Encoding)))
	return append(b, w.Encoding...), nil
}

func decodeWelcome(p []byte, off int64, index int) (Welcome, error) {
	d := &payloadReader{p: p, off: off, index: index, kind: KindWelcome}
	var w Welcome
	w.Version = d.u16("version")
	w.Encoding = d.str8("encoding")
	if d.err == nil && !validEncoding(w.Encoding) {
		d.fail("encoding", "1 to 32 of [a-z0-9-]", strconv.Quote(w.Encoding), stream.ErrValue)
	}
	return w, d.end()
}

// reason payloads (REFUSE: code u8 then text; ABORT and FAILED: text) carry
// a u16 length and at most MaxControl-3 bytes of text.
func appendReason(b []byte, text string) []byte {
	if len(text) > MaxControl-3 {
		text = text[:MaxControl-3]
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(text)))
	return append(b, text...)
}

func decodeReason(p []byte, off int64, index int, k Kind) (code byte, text string, err error) {
	d := &payloadReader{p: p, off: off, index: index, kind: k}
	if k == KindRefuse {
		code = d.u8("code")
	}
	text = d.str16("reason")
	return code, text, d.end()
}
