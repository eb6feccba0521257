package libxc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream"
)

// Layer is the layer name in errors from this package.
const Layer = "libxc"

// Image header constants.
const (
	ImageMarker      = 0xffffffffffffffff
	ImageID          = 0x58454e46 // "XENF"
	ImageHeaderSize  = 24
	DomainHeaderSize = 16
	OptionBigEndian  = 1 << 0
	HeaderVersion2   = 2
	HeaderVersion3   = 3
)

// ImageHeader is the big-endian header at the start of a libxc stream.
type ImageHeader struct {
	Marker    uint64 // ImageMarker
	ID        uint32 // ImageID
	Version   uint32 // 2 or 3
	Options   uint16 // bit 0: big-endian; others reserved
	Reserved1 uint16
	Reserved2 uint32
}

// NewImageHeader returns a valid little-endian image header of the version.
func NewImageHeader(version uint32) ImageHeader {
	return ImageHeader{Marker: ImageMarker, ID: ImageID, Version: version}
}

// A DomainType is the guest type of the domain header.
type DomainType uint32

// The domain types.
const (
	DomainX86PV  DomainType = 1
	DomainX86HVM DomainType = 2
)

// String names the domain type.
func (t DomainType) String() string {
	switch t {
	case DomainX86PV:
		return "x86 PV"
	case DomainX86HVM:
		return "x86 HVM"
	}
	return fmt.Sprintf("type %#x", uint32(t))
}

// DomainHeader follows the image header and describes the domain.
type DomainHeader struct {
	Type      DomainType
	PageShift uint16
	Reserved  uint16
	XenMajor  uint32
	XenMinor  uint32
}

// A Reader decodes a libxc stream one record at a time. It never reads past
// the record it returns, so the libxl layer can share its io.Reader.
//
// Records returned by Next, and every slice in them, belong to the Reader
// and are valid only until the next call to Next; copy what you keep.
type Reader struct {
	// Relaxed turns off the semantic checks (record order, reserved
	// fields, values, cross-record consistency) for forensic reading; a
	// record whose body cannot be decoded comes back as *Raw with Err set.
	// Framing errors (truncation, size cap, padding) still fail.
	Relaxed bool
	// Checkpointed declares a checkpointed stream (Remus/COLO): CHECKPOINT
	// and CHECKPOINT_DIRTY_PFN_LIST records are then allowed.
	Checkpointed bool
	// VCPUs is the restoring domain's vCPU count (the configuration's
	// max_vcpus, as Xen's restore takes it from the domain): PV vCPU
	// records with an id at or beyond it are refused. Zero means
	// MaxPVVCPUs, the most any PV domain has. Set it before the first
	// Next; stream/image sets it from the xl configuration.
	VCPUs int

	fr      *stream.Reader
	hdrDone bool
	hdrErr  error
	img     ImageHeader
	dom     DomainHeader
	cur     stream.Record
	ended   bool
	check   checker

	end   End
	page  PageData
	pv    X86PVInfo
	p2m   X86PVP2MFrames
	vcpu  VCPUContext
	shi   SharedInfo
	tsc   X86TSCInfo
	hctx  HVMContext
	hprm  HVMParams
	tool  Toolstack
	ver   Verify
	ckpt  Checkpoint
	dirty CheckpointDirtyPFNList
	sde   StaticDataEnd
	cpuid X86CPUIDPolicy
	msr   X86MSRPolicy
	raw   Raw
}

// NewReader returns a Reader of the libxc stream at the start of r.
func NewReader(r io.Reader) *Reader { return NewReaderAt(r, 0) }

// NewReaderAt returns a Reader of a libxc stream that starts at absolute
// offset off of the enclosing file (used in errors).
func NewReaderAt(r io.Reader, off int64) *Reader {
	fr := stream.NewReader(r, Layer, off)
	fr.TypeName = typeName
	return &Reader{fr: fr}
}

// SetMaxRecordSize caps record bodies (default stream.DefaultMaxRecordSize).
func (r *Reader) SetMaxRecordSize(n int) { r.fr.MaxRecordSize = n }

// SetOffset tells the Reader the absolute offset of its io.Reader's next
// byte, after another layer read from it (between checkpoint rounds).
func (r *Reader) SetOffset(off int64) { r.fr.SetOffset(off) }

// Offset returns the absolute offset of the next byte the Reader reads.
func (r *Reader) Offset() int64 { return r.fr.Offset() }

// Current returns the framing of the record last returned by Next: type,
// body (aliasing the Reader's buffer), absolute offset and index.
func (r *Reader) Current() stream.Record { return r.cur }

// Ended reports whether the END record has been read.
func (r *Reader) Ended() bool { return r.ended }

// Header reads (once) and returns the image and domain headers.
func (r *Reader) Header() (ImageHeader, DomainHeader, error) {
	if !r.hdrDone {
		r.hdrDone = true
		r.hdrErr = r.readHeaders()
	}
	return r.img, r.dom, r.hdrErr
}

func (r *Reader) readHeaders() error {
	var b [ImageHeaderSize + DomainHeaderSize]byte
	off, err := r.fr.ReadFull(b[:ImageHeaderSize], "image header")
	if err != nil {
		return err
	}
	be := binary.BigEndian
	r.img = ImageHeader{be.Uint64(b[:]), be.Uint32(b[8:]), be.Uint32(b[12:]), be.Uint16(b[16:]), be.Uint16(b[18:]), be.Uint32(b[20:])}
	herr := func(off int64, field string, err error) error {
		return &stream.FormatError{Layer: Layer, Offset: off, Index: -1, Field: field, Err: err}
	}
	// These checks hold in relaxed mode too: without them nothing after
	// can be decoded.
	switch {
	case r.img.Marker != ImageMarker:
		return herr(off, "marker", stream.ErrValue)
	case r.img.ID != ImageID:
		return herr(off, "id", stream.ErrValue)
	case r.img.Version != HeaderVersion2 && r.img.Version != HeaderVersion3:
		return herr(off, "version", stream.ErrValue)
	case r.img.Options&OptionBigEndian != 0:
		return herr(off, "options", ErrBigEndian)
	}
	if !r.Relaxed && (r.img.Options != 0 || r.img.Reserved1 != 0 || r.img.Reserved2 != 0) {
		return herr(off, "options", stream.ErrReserved)
	}
	off, err = r.fr.ReadFull(b[ImageHeaderSize:], "domain header")
	if err != nil {
		return err
	}
	d := b[ImageHeaderSize:]
	r.dom = DomainHeader{DomainType(le.Uint32(d)), le.Uint16(d[4:]), le.Uint16(d[6:]), le.Uint32(d[8:]), le.Uint32(d[12:])}
	if !r.Relaxed {
		switch {
		case r.dom.Type != DomainX86PV && r.dom.Type != DomainX86HVM:
			return herr(off, "type", stream.ErrValue)
		case r.dom.PageShift != PageShift:
			return herr(off, "page_shift", stream.ErrValue)
		case r.dom.Reserved != 0:
			return herr(off, "reserved", stream.ErrReserved)
		}
	}
	r.check = checker{version: r.img.Version, dom: r.dom.Type, maxPFN: -1, vcpus: r.VCPUs}
	if r.VCPUs <= 0 {
		r.check.vcpus = MaxPVVCPUs
	}
	return nil
}

// ErrBigEndian reports a big-endian stream, which no x86 Xen writes and this
// package does not decode.
var ErrBigEndian = errors.New("big-endian streams are not supported")

// ErrNoEnd reports a stream that ended cleanly between records but before END.
var ErrNoEnd = errors.New("stream ended before the END record")

// Next returns the next record. After END it returns io.EOF without reading.
// After a CHECKPOINT record the caller may read other data from the shared
// io.Reader, call SetOffset, and call Next again for the next round.
func (r *Reader) Next() (Record, error) {
	if _, _, err := r.Header(); err != nil {
		return nil, err
	}
	if r.ended {
		return nil, io.EOF
	}
	cur, err := r.fr.Next()
	if err != nil {
		if err == io.EOF {
			// No record is there to name: the error is at the end of input.
			return nil, &stream.FormatError{Layer: Layer, Offset: r.fr.Offset(), Index: -1, Field: "END", Err: ErrNoEnd,
				Expected: "an END record", Actual: "end of input"}
		}
		return nil, err
	}
	r.cur = cur
	rec := r.holder(RecordType(cur.Type))
	if err := rec.decode(cur.Body); err != nil {
		if !r.Relaxed {
			return nil, r.fail(err)
		}
		r.raw = Raw{RecType: RecordType(cur.Type), Body: cur.Body, Err: r.fail(err)}
		rec = &r.raw
	}
	if RecordType(cur.Type) == TypeEnd {
		r.ended = true
	}
	if !r.Relaxed {
		if err := r.check.record(r, rec); err != nil {
			return nil, r.fail(err)
		}
	}
	return rec, nil
}

func (r *Reader) fail(err error) error {
	fe := &stream.FormatError{Layer: Layer, Offset: r.cur.Offset, Index: r.cur.Index, Type: r.cur.Type, TypeName: typeName(r.cur.Type), Err: err}
	var be *bodyError
	if errors.As(err, &be) {
		fe.Field, fe.Err, fe.Expected, fe.Actual = be.field, be.err, be.want, be.got
	}
	return fe
}

// typeName names a record type in errors.
func typeName(t uint32) string { return RecordType(t).String() }

// holder returns the Reader-owned record value for a type.
func (r *Reader) holder(t RecordType) Record {
	switch t {
	case TypeEnd:
		return &r.end
	case TypePageData:
		return &r.page
	case TypeX86PVInfo:
		return &r.pv
	case TypeX86PVP2MFrames:
		return &r.p2m
	case TypeX86PVVCPUBasic, TypeX86PVVCPUExtended, TypeX86PVVCPUXSave, TypeX86PVVCPUMSRs:
		r.vcpu.Kind = t
		return &r.vcpu
	case TypeSharedInfo:
		return &r.shi
	case TypeX86TSCInfo:
		return &r.tsc
	case TypeHVMContext:
		return &r.hctx
	case TypeHVMParams:
		return &r.hprm
	case TypeToolstack:
		return &r.tool
	case TypeVerify:
		return &r.ver
	case TypeCheckpoint:
		return &r.ckpt
	case TypeCheckpointDirtyPFNList:
		return &r.dirty
	case TypeStaticDataEnd:
		return &r.sde
	case TypeX86CPUIDPolicy:
		return &r.cpuid
	case TypeX86MSRPolicy:
		return &r.msr
	}
	r.raw = Raw{RecType: t}
	return &r.raw
}
