package libxl

import (
	"encoding/binary"
	"errors"
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

func (r *Reader) errRec(rec Record, field string, err error) error {
	return &stream.FormatError{Layer: Layer, Offset: rec.Offset, Index: rec.Index, Type: uint32(rec.Type), Field: field, Err: err}
}

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
		return Record{}, &stream.FormatError{Layer: Layer, Offset: r.fr.Offset(), Index: r.index, Field: "END", Err: stream.ErrTruncated}
	}
	if err != nil {
		var fe *stream.FormatError
		if errors.As(err, &fe) {
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

// check validates rec's length, fields and position.
func (r *Reader) check(rec Record) error {
	n := len(rec.Body)
	switch rec.Type {
	case TypeEnd, TypeLibxcContext, TypeCheckpointEnd:
		if n != 0 {
			return r.errRec(rec, "length", stream.ErrLength)
		}
	case TypeEmulatorXenstoreData, TypeEmulatorContext:
		em, err := ParseEmulator(rec.Body)
		if err != nil {
			return r.errRec(rec, "length", stream.ErrLength)
		}
		if !r.opt.Relaxed && em.ID > EmulatorQemuUpstream {
			return r.errRec(rec, "emulator_id", stream.ErrValue)
		}
		if rec.Type == TypeEmulatorXenstoreData && !r.opt.Relaxed {
			if _, err := ParseXenstoreData(em.Data); err != nil {
				return r.errRec(rec, "xenstore_data", errors.Join(stream.ErrValue, err))
			}
		}
	case TypeCheckpointState:
		if n == 0 || (!r.opt.Relaxed && n != 4) {
			return r.errRec(rec, "length", stream.ErrLength)
		}
	default:
		if rec.Type&OptionalBit == 0 && !r.opt.Relaxed {
			return r.errRec(rec, "type", stream.ErrUnknownType)
		}
	}
	if r.opt.Relaxed {
		return nil
	}
	ok := true
	switch rec.Type {
	case TypeEnd:
		ok = r.phase == phaseAfterXC || (r.phase == phaseBeforeXC && r.states > 0) // back channel
	case TypeLibxcContext:
		ok = r.phase == phaseBeforeXC && r.libxcs == 0
	case TypeEmulatorXenstoreData, TypeEmulatorContext:
		ok = r.phase == phaseAfterXC || r.phase == phaseCheckpoint
	case TypeCheckpointEnd:
		ok = r.phase == phaseCheckpoint
	case TypeCheckpointState:
		ok = r.phase == phaseBeforeXC && r.libxcs == 0 // COLO back channel
	}
	if !ok {
		return r.errRec(rec, "", stream.ErrOrder)
	}
	return nil
}
