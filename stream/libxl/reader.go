package libxl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// Errors specific to the libxl layer, wrapped in *stream.FormatError.
var (
	// ErrIdent reports a header that does not start with "LibxlFmt".
	ErrIdent = errors.New("not a libxl stream (bad ident)")
	// ErrLibxcPending reports a call to Next while the inline libxc stream
	// has not been consumed (see InLibxc, Libxc and Resume).
	ErrLibxcPending = errors.New("libxc stream pending: read it and call Resume")
)

// Options tune a Reader.
type Options struct {
	// Relaxed skips the checks that a valid stream never fails but a
	// damaged one might (record order, emulator ids, xenstore data shape,
	// unknown mandatory record types, a missing END), for forensic reading.
	// Framing and length errors that make the stream unreadable remain.
	Relaxed bool
	// MaxRecordSize caps a record body; zero means stream.DefaultMaxRecordSize.
	MaxRecordSize int
	// Checkpointed declares a checkpointed (Remus/COLO) stream to the
	// libxc.Reader that Libxc returns.
	Checkpointed bool
	// BackChannel declares COLO's back channel, the stream the secondary
	// sends the primary: CHECKPOINT_STATE records and END, no domain. A
	// restore stream (the default) refuses both CHECKPOINT_STATE and an
	// END before LIBXC_CONTEXT, as libxl does.
	BackChannel bool
	// Guest is the domain's type from its configuration (c_info.type);
	// GuestUnknown if not known. libxl refuses EMULATOR_* records unless
	// the domain is HVM; without Guest, the Reader refuses them after a
	// PV libxc stream it read through Libxc.
	Guest GuestType
	// VCPUs is the domain's vCPU count (b_info.max_vcpus), passed on to
	// the libxc.Reader (see libxc.Reader.VCPUs); zero if not known.
	VCPUs int
}

// A GuestType is libxl's domain type (libxl_domain_type), as the xl
// configuration's c_info.type names it.
type GuestType int

// Guest types.
const (
	GuestUnknown GuestType = iota
	GuestHVM
	GuestPV
	GuestPVH
)

// ParseGuestType parses c_info.type: "hvm", "pv" or "pvh"; anything else is
// GuestUnknown.
func ParseGuestType(s string) GuestType {
	switch s {
	case "hvm":
		return GuestHVM
	case "pv":
		return GuestPV
	case "pvh":
		return GuestPVH
	}
	return GuestUnknown
}

// String returns the type as c_info.type spells it.
func (g GuestType) String() string {
	switch g {
	case GuestHVM:
		return "hvm"
	case GuestPV:
		return "pv"
	case GuestPVH:
		return "pvh"
	}
	return "unknown"
}

// phase of the reader's state machine.
type phase int

const (
	phaseHeader     phase = iota // header not read yet
	phaseBeforeXC                // header read, no LIBXC_CONTEXT yet
	phaseInXC                    // libxc stream pending
	phaseAfterXC                 // libxc END read
	phaseCheckpoint              // libxc paused at a CHECKPOINT; libxl records until CHECKPOINT_END
	phaseDone                    // END read
)

// A Reader reads a libxl stream record by record without reading ahead.
type Reader struct {
	opt    Options
	r      io.Reader
	fr     *stream.Reader
	hdr    Header
	phase  phase
	index  int
	start  int64
	libxcs int // LIBXC_CONTEXT records seen
	rounds int // libxc CHECKPOINTs seen
	states int // CHECKPOINT_STATE records seen

	xc      *libxc.Reader // from Libxc
	xcFresh bool          // a LIBXC_CONTEXT was read: a new libxc stream starts
	xcOut   bool          // the current libxc segment was handed out by Libxc
	xcStart int64         // where the current libxc segment starts
}

// NewReader returns a Reader of the libxl stream at the start of r.
func NewReader(r io.Reader) *Reader { return NewReaderOptions(r, 0, Options{}) }

// NewReaderOptions returns a Reader of the libxl stream in r, whose first
// byte is at absolute offset off (used in records and errors).
func NewReaderOptions(r io.Reader, off int64, opt Options) *Reader {
	rd := &Reader{opt: opt, r: r, start: off}
	rd.fr = rd.framer(off)
	return rd
}

func (r *Reader) framer(off int64) *stream.Reader {
	fr := stream.NewReader(r.r, Layer, off)
	fr.TypeName = typeName
	fr.MaxRecordSize = r.opt.MaxRecordSize
	fr.AllowNonZeroPadding = r.opt.Relaxed
	return fr
}

// Offset returns the absolute offset of the next byte the Reader reads; while
// InLibxc is true it is where the libxc data starts or resumes.
func (r *Reader) Offset() int64 { return r.fr.Offset() }

// Underlying returns the io.Reader the stream is read from.
func (r *Reader) Underlying() io.Reader { return r.r }

// InLibxc reports whether the next bytes belong to the libxc stream.
func (r *Reader) InLibxc() bool { r.takeBack(); return r.phase == phaseInXC }

// Checkpoints returns how many times the libxc stream paused at a CHECKPOINT.
func (r *Reader) Checkpoints() int { return r.rounds }

// Libxc returns the libxc.Reader of the inline libxc stream while InLibxc is
// true, and nil otherwise. It is the same Reader for every round of a
// checkpointed stream. Read records from it until it returns *libxc.End or
// *libxc.Checkpoint; the next call to Next then takes the stream back by
// itself (Resume is only for callers that read the libxc data some other way).
func (r *Reader) Libxc() *libxc.Reader {
	r.takeBack()
	if r.phase != phaseInXC {
		return nil
	}
	if r.xcOut {
		return r.xc
	}
	off := r.fr.Offset()
	if r.xc == nil || r.xcFresh {
		r.xc = libxc.NewReaderAt(r.r, off)
		r.xc.Relaxed = r.opt.Relaxed
		r.xc.Checkpointed = r.opt.Checkpointed
		r.xc.VCPUs = r.opt.VCPUs
		if r.opt.MaxRecordSize > 0 {
			r.xc.SetMaxRecordSize(r.opt.MaxRecordSize)
		}
	} else {
		r.xc.SetOffset(off)
	}
	r.xcFresh, r.xcOut, r.xcStart = false, true, off
	return r.xc
}

// takeBack resumes after a libxc segment read through Libxc, if it ended.
func (r *Reader) takeBack() {
	if r.phase != phaseInXC || !r.xcOut {
		return
	}
	if r.xc.Ended() {
		r.Resume(r.xc.Offset(), false)
		return
	}
	cur := r.xc.Current()
	if cur.Offset >= r.xcStart && cur.Type == uint32(libxc.TypeCheckpoint) && cur.Offset+int64(cur.PaddedSize()) == r.xc.Offset() {
		r.Resume(r.xc.Offset(), true)
	}
}

// Resume hands the stream back to the Reader after the caller read libxc data
// from Underlying: off is the absolute offset just after the last libxc
// record, and checkpoint tells whether that record was a libxc CHECKPOINT
// (libxl records up to CHECKPOINT_END follow, then more libxc data) rather
// than the libxc END.
func (r *Reader) Resume(off int64, checkpoint bool) error {
	if r.phase != phaseInXC {
		return errors.New("libxl: Resume without a pending libxc stream")
	}
	if off < r.fr.Offset() {
		return errors.New("libxl: Resume offset before the libxc stream")
	}
	r.fr = r.framer(off)
	r.xcOut = false
	if checkpoint {
		r.phase = phaseCheckpoint
		r.rounds++
	} else {
		r.phase = phaseAfterXC
	}
	return nil
}

func (r *Reader) errHdr(off int64, field string, err error) error {
	return &stream.FormatError{Layer: Layer, Offset: off, Index: -1, Field: field, Err: err}
}

func (r *Reader) errRec(rec Record, field string, err error) *stream.FormatError {
	return &stream.FormatError{Layer: Layer, Offset: rec.Offset, Index: rec.Index, Type: uint32(rec.Type), TypeName: rec.Type.String(), Field: field, Err: err}
}

// errWant is errRec with expected versus actual.
func (r *Reader) errWant(rec Record, field string, err error, want, got string) error {
	e := r.errRec(rec, field, err)
	e.Expected, e.Actual = want, got
	return e
}

func typeName(t uint32) string { return RecordType(t).String() }

// Header reads the stream header if it was not read yet and returns it.
func (r *Reader) Header() (Header, error) {
	if r.phase != phaseHeader {
		return r.hdr, nil
	}
	var b [HeaderSize]byte
	n, err := io.ReadFull(r.r, b[:])
	if err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			return Header{}, err
		}
		var want [8]byte
		binary.BigEndian.PutUint64(want[:], Ident)
		if m := min(n, 8); n == 0 || string(b[:m]) != string(want[:m]) {
			return Header{}, r.errHdr(r.start, "ident", ErrIdent)
		}
		return Header{}, r.errHdr(r.start, "header", stream.ErrTruncated)
	}
	h, err := parseHeader(b[:], r.start)
	if err != nil {
		return Header{}, err
	}
	r.hdr = h
	r.fr = r.framer(r.start + HeaderSize)
	r.phase = phaseBeforeXC
	return h, nil
}

func parseHeader(b []byte, off int64) (Header, error) {
	e := func(o int64, f string, err error) error {
		return &stream.FormatError{Layer: Layer, Offset: off + o, Index: -1, Field: f, Err: err}
	}
	if binary.BigEndian.Uint64(b[0:8]) != Ident {
		return Header{}, e(0, "ident", ErrIdent)
	}
	h := Header{Version: binary.BigEndian.Uint32(b[8:12]), Options: binary.BigEndian.Uint32(b[12:16])}
	if h.Version != Version {
		return h, e(8, "version", stream.ErrValue)
	}
	if h.Options&OptReserved != 0 {
		return h, e(12, "options", stream.ErrReserved)
	}
	if h.Options&OptBigEndian != 0 {
		return h, e(12, "options", errors.New("big-endian stream not supported"))
	}
	return h, nil
}

// Next returns the next libxl record. After END it returns io.EOF without
// reading further, so whatever follows the stream stays in the underlying
// reader. While InLibxc is true it returns an error wrapping ErrLibxcPending.
func (r *Reader) Next() (Record, error) {
	if r.phase == phaseHeader {
		if _, err := r.Header(); err != nil {
			return Record{}, err
		}
	}
	r.takeBack()
	switch r.phase {
	case phaseDone:
		return Record{}, io.EOF
	case phaseInXC:
		return Record{}, &stream.FormatError{Layer: Layer, Offset: r.fr.Offset(), Index: r.index, Err: ErrLibxcPending}
	}
	fr, err := r.fr.Next()
	if err == io.EOF {
		if r.opt.Relaxed {
			return Record{}, io.EOF
		}
		// No record is there to name: the error is at the end of input.
		return Record{}, &stream.FormatError{Layer: Layer, Offset: r.fr.Offset(), Index: -1, Field: "END", Err: stream.ErrTruncated,
			Expected: "an END record", Actual: "end of input"}
	}
	if err != nil {
		var fe *stream.FormatError
		if errors.As(err, &fe) && fe.Index >= 0 {
			fe.Index = r.index
		}
		return Record{}, err
	}
	rec := Record{Type: RecordType(fr.Type), Body: fr.Body, Offset: fr.Offset, Index: r.index}
	r.index++
	if err := r.check(rec); err != nil {
		return rec, err
	}
	r.advance(rec)
	return rec, nil
}

// advance moves the state machine past rec.
func (r *Reader) advance(rec Record) {
	switch rec.Type {
	case TypeEnd:
		r.phase = phaseDone
	case TypeLibxcContext:
		r.libxcs++
		r.phase = phaseInXC
		r.xcFresh = true
	case TypeCheckpointEnd:
		if r.phase == phaseCheckpoint {
			r.phase = phaseInXC
		}
	case TypeCheckpointState:
		r.states++
	}
}

// check validates rec's length, fields and position: the checks of
// libxl_stream_read.c's process_record and of
// libxl__restore_emulator_xenstore_data.
func (r *Reader) check(rec Record) error {
	n := len(rec.Body)
	switch rec.Type {
	case TypeEnd, TypeLibxcContext, TypeCheckpointEnd:
		if n != 0 {
			return r.errWant(rec, "length", stream.ErrLength, "0 bytes", stream.Bytes(n))
		}
	case TypeEmulatorXenstoreData, TypeEmulatorContext:
		em, err := ParseEmulator(rec.Body)
		if err != nil {
			return r.errWant(rec, "length", stream.ErrLength, "at least 8 bytes", stream.Bytes(n))
		}
		if r.opt.Relaxed {
			break
		}
		if g := r.guest(); g != GuestHVM && g != GuestUnknown {
			return r.errWant(rec, "type", fmt.Errorf("%w: emulator record for a %v domain", stream.ErrOrder, g), "an HVM domain", g.String())
		}
		if em.ID > EmulatorQemuUpstream {
			return r.errWant(rec, "emulator_id", stream.ErrValue, "0, 1 or 2", fmt.Sprintf("%d", em.ID))
		}
		if rec.Type == TypeEmulatorXenstoreData {
			// Walk the strings in place: ParseXenstoreData would
			// allocate a slice header per string, 12 times the body
			// for a body of empty strings.
			if err := checkXenstoreData(em.Data); err != nil {
				var ke *keyError
				if errors.As(err, &ke) {
					return r.errWant(rec, fmt.Sprintf("xenstore_data[%d].key", ke.i), fmt.Errorf("%w: xenstore key not relative", stream.ErrValue),
						"a non-empty relative path", fmt.Sprintf("%q", ke.key))
				}
				return r.errRec(rec, "xenstore_data", errors.Join(stream.ErrValue, err))
			}
		}
	case TypeCheckpointState:
		if n == 0 || (!r.opt.Relaxed && n != 4) {
			return r.errWant(rec, "length", stream.ErrLength, "4 bytes", stream.Bytes(n))
		}
	default:
		// libxl has no optional records: "Unrecognised record" for any
		// type it does not know, optional bit or not.
		if !r.opt.Relaxed {
			return r.errRec(rec, "type", stream.ErrUnknownType)
		}
	}
	if r.opt.Relaxed {
		return nil
	}
	ok := true
	want := ""
	switch rec.Type {
	case TypeEnd:
		if r.opt.BackChannel {
			ok, want = r.phase == phaseBeforeXC, "END of the back channel"
		} else {
			ok, want = r.phase == phaseAfterXC, "END after the libxc stream"
		}
	case TypeLibxcContext:
		ok, want = r.phase == phaseBeforeXC && r.libxcs == 0 && !r.opt.BackChannel, "one LIBXC_CONTEXT, first, in a restore stream"
	case TypeEmulatorXenstoreData, TypeEmulatorContext:
		ok, want = r.phase == phaseAfterXC || r.phase == phaseCheckpoint, "after the libxc stream or checkpoint"
	case TypeCheckpointEnd:
		ok, want = r.phase == phaseCheckpoint, "after a libxc CHECKPOINT"
	case TypeCheckpointState:
		ok, want = r.opt.BackChannel && r.phase == phaseBeforeXC, "only in COLO's back channel (Options.BackChannel)"
	}
	if !ok {
		return r.errWant(rec, "", stream.ErrOrder, want, rec.Type.String()+" "+r.phase.String())
	}
	return nil
}

// guest returns the domain type: Options.Guest, or PV when the libxc
// stream read through Libxc was PV, or GuestUnknown.
func (r *Reader) guest() GuestType {
	if r.opt.Guest != GuestUnknown {
		return r.opt.Guest
	}
	if r.xc != nil {
		if _, dom, err := r.xc.Header(); err == nil && dom.Type == libxc.DomainX86PV {
			return GuestPV
		}
	}
	return GuestUnknown
}

// String describes the phase for errors.
func (p phase) String() string {
	switch p {
	case phaseHeader:
		return "before the header"
	case phaseBeforeXC:
		return "before LIBXC_CONTEXT"
	case phaseInXC:
		return "inside the libxc stream"
	case phaseAfterXC:
		return "after the libxc stream"
	case phaseCheckpoint:
		return "inside a checkpoint"
	}
	return "after END"
}

// A keyError names a xenstore key libxl refuses (empty or absolute).
type keyError struct {
	i   int
	key string
}

func (e *keyError) Error() string {
	return fmt.Sprintf("xenstore key %d (%q) not relative", e.i, e.key)
}

// checkXenstoreData checks xenstore key/value data as
// libxl__restore_emulator_xenstore_data does, without allocating: NUL-
// terminated strings in pairs, every key non-empty and relative.
func checkXenstoreData(data []byte) error {
	for i := 0; len(data) > 0; i++ {
		k := bytes.IndexByte(data, 0)
		if k < 0 {
			return errors.New("xenstore key not NUL-terminated")
		}
		if k == 0 || data[0] == '/' {
			return &keyError{i, string(data[:min(k, 64)])}
		}
		data = data[k+1:]
		v := bytes.IndexByte(data, 0)
		if v < 0 {
			return errors.New("xenstore value not NUL-terminated")
		}
		data = data[v+1:]
	}
	return nil
}
