// Package hvm decodes and encodes the HVM context of an x86 HVM or PVH
// guest: the body of a libxc HVM_CONTEXT record, as Xen's
// XEN_DOMCTL_gethvmcontext returns it and XEN_DOMCTL_sethvmcontext loads it.
//
// The context is a series of entries, each a descriptor (typecode, instance,
// body length; struct hvm_save_descriptor in Xen's public/hvm/save.h) and a
// body, ending with an END entry. Decode walks the descriptors and decodes
// each body into a typed record (HEADER, CPU, LAPIC, LAPIC_REGS, MTRR,
// CPU_XSAVE, PIC, IOAPIC, PIT, RTC, HPET, PMTIMER, VIRIDIAN_*, VMCE_VCPU,
// TSC_ADJUST, CPU_MSR, END; other typecodes come back as *Raw). The layouts
// are those of Xen's public/arch-x86/hvm/save.h; the package tests compare
// every field offset with the C headers of libxen-dev.
//
// Record types that Xen loads zero-extended also decode from the shorter
// bodies older Xen versions wrote: a LAPIC entry of 24 bytes (Xen up to
// 4.20, without pending_esr) or 32 bytes (4.21 and later), a CPU entry in
// the compat layout. Entry.Length keeps the body length as found, so Encode
// writes the same layout back and a decoded context re-encodes byte for byte.
// (An empty body of such a type, which Xen loads as all zeroes, decodes as
// *Raw.)
//
// Malformed input fails with a *stream.FormatError of layer "hvm" naming
// the byte offset of the entry's descriptor, the entry index, its typecode
// and the field, wrapping stream.ErrTruncated, stream.ErrLength or
// stream.ErrValue.
package hvm

import (
	"errors"
	"fmt"

	"github.com/xensr/xensr/stream"
)

// Layer is the layer name in errors from this package.
const Layer = "hvm"

var errLength = stream.ErrLength

// ErrTrailing reports bytes after the END entry. Xen's loader ignores them;
// Decode rejects them unless Options.Relaxed is set.
var ErrTrailing = errors.New("data after the END entry")

// ErrNoEnd reports a context whose entries run out before an END entry.
var ErrNoEnd = errors.New("context did not end with an END entry")

// A Descriptor is struct hvm_save_descriptor, the 8 bytes before each body.
type Descriptor struct {
	Typecode Typecode
	Instance uint16 // which one of its type: a vCPU id, a PIC, ...
	Length   uint32 // body length in bytes, without the descriptor
}

// An Entry is one decoded entry.
type Entry struct {
	Typecode Typecode
	Instance uint16 // the vCPU id for per-vCPU records
	// Length is the body length as found by Decode. Encode writes this
	// length; 0 (or the current layout's size) means the current layout.
	// For zero-extended types a shorter length is an older layout: see
	// Short.
	Length uint32
	Offset int64  // offset of the descriptor (Options.Offset added)
	Record Record // the typed body
}

// Short reports whether the entry's body is shorter than its type's current
// layout, an older layout Xen loads zero-extended: a LAPIC entry of
// LAPICSizeLegacy bytes (Xen up to 4.20, no pending_esr), a CPU entry of
// CPUCompatSize bytes, ...
func (e *Entry) Short() bool {
	info, ok := types[e.Typecode]
	return ok && info.size > 0 && e.Length != 0 && int(e.Length) < info.size
}

// A Context is a decoded HVM context: its entries in order, END last.
type Context struct {
	Entries []Entry
	// Trailing holds bytes after END, kept only by a relaxed Decode.
	Trailing []byte
}

// Options tune Decode.
type Options struct {
	// Relaxed keeps going where strict decoding fails: a malformed body
	// of a known type becomes a *Raw with Err set, the HEADER checks are
	// skipped and bytes after END are kept in Context.Trailing. Framing
	// errors (a truncated descriptor or body, no END) still fail.
	Relaxed bool
	// Offset is added to every offset in entries and errors: the absolute
	// offset of the context's first byte in a file (the HVM_CONTEXT
	// record's body).
	Offset int64
}

// A bodyError names the field of a body that is wrong, and what Xen's
// layout expects there against what the body holds.
type bodyError struct {
	field            string
	err              error
	expected, actual string
}

func (e *bodyError) Error() string { return e.field + ": " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// Decode decodes a whole HVM context strictly. The result does not alias b.
func Decode(b []byte) (*Context, error) { return DecodeOptions(b, Options{}) }

// DecodeOptions decodes a whole HVM context.
func DecodeOptions(b []byte, opt Options) (*Context, error) {
	c := &Context{}
	off := 0
	for i := 0; ; i++ {
		fail := func(tc Typecode, field string, err error, expected, actual string) *stream.FormatError {
			return &stream.FormatError{Layer: Layer, Offset: opt.Offset + int64(off), Index: i, Type: uint32(tc), TypeName: tc.String(),
				Field: field, Err: err, Expected: expected, Actual: actual}
		}
		if len(b)-off < DescriptorSize {
			if len(b) == off {
				return nil, fail(0, "typecode", ErrNoEnd, "an END entry", "end of data")
			}
			return nil, fail(0, "descriptor", stream.ErrTruncated, stream.Bytes(DescriptorSize), stream.Bytes(len(b)-off))
		}
		d := Descriptor{Typecode(le.Uint16(b[off:])), le.Uint16(b[off+2:]), le.Uint32(b[off+4:])}
		if uint64(d.Length) > uint64(len(b)-off-DescriptorSize) {
			return nil, fail(d.Typecode, "length", stream.ErrTruncated, stream.Bytes(int(d.Length)), stream.Bytes(len(b)-off-DescriptorSize))
		}
		body := b[off+DescriptorSize : off+DescriptorSize+int(d.Length)]
		rec, err := decodeBody(d.Typecode, body)
		if err == nil && !opt.Relaxed {
			err = check(i, d, rec)
		}
		if err != nil {
			fe := fail(d.Typecode, "", err, "", "")
			var be *bodyError
			if errors.As(err, &be) {
				fe.Field, fe.Err, fe.Expected, fe.Actual = be.field, be.err, be.expected, be.actual
			}
			if !opt.Relaxed {
				return nil, fe
			}
			rec = &Raw{Code: d.Typecode, Data: append([]byte(nil), body...), Err: fe}
		}
		c.Entries = append(c.Entries, Entry{Typecode: d.Typecode, Instance: d.Instance, Length: d.Length, Offset: opt.Offset + int64(off), Record: rec})
		off += DescriptorSize + int(d.Length)
		if d.Typecode == TypeEnd {
			break
		}
	}
	if off < len(b) {
		if !opt.Relaxed {
			return nil, &stream.FormatError{Layer: Layer, Offset: opt.Offset + int64(off), Index: -1, Field: "trailing", Err: ErrTrailing,
				Expected: "no data", Actual: stream.Bytes(len(b) - off)}
		}
		c.Trailing = append([]byte(nil), b[off:]...)
	}
	return c, nil
}

// decodeBody decodes one body by its typecode, zero-extending short bodies
// of the types Xen loads that way.
func decodeBody(tc Typecode, body []byte) (Record, error) {
	info, ok := types[tc]
	if !ok {
		r := &Raw{Code: tc}
		r.decode(body)
		return r, nil
	}
	rec := info.new()
	switch {
	case info.size == 0 && tc == TypeEnd:
		if len(body) != 0 {
			return nil, &bodyError{"length", errLength, stream.Bytes(0), stream.Bytes(len(body))}
		}
	case info.size == 0: // variable length
		if err := rec.decode(body); err != nil {
			return nil, err
		}
	case len(body) == info.size:
		if err := rec.decode(body); err != nil {
			return nil, &bodyError{"length", err, "", ""}
		}
	case tc == TypeCPU && len(body) == CPUCompatSize:
		var cc cpuCompat
		if err := decodeFixed(body, &cc); err != nil {
			return nil, &bodyError{"length", err, "", ""}
		}
		full := make([]byte, CPUSize)
		copy(full, cc.Head[:])
		le.PutUint64(full[1008:], cc.TSC)
		le.PutUint32(full[1016:], cc.PendingEvent)
		le.PutUint32(full[1020:], cc.ErrorCode)
		rec.decode(full)
	case info.zeroExtend && len(body) == 0:
		// Xen loads it as all zeroes; kept raw, as Entry.Length 0 means
		// the current layout to Encode.
		return &Raw{Code: tc, Data: []byte{}}, nil
	case info.zeroExtend && len(body) < info.size:
		full := make([]byte, info.size)
		copy(full, body)
		rec.decode(full)
	default:
		want := stream.Bytes(info.size)
		if info.zeroExtend {
			want = "at most " + want
		}
		if tc == TypeCPU {
			want += " or " + stream.Bytes(CPUCompatSize)
		}
		return nil, &bodyError{"length", errLength, want, stream.Bytes(len(body))}
	}
	return rec, nil
}

// check applies the rules Xen's loader enforces on the first entry.
func check(i int, d Descriptor, rec Record) error {
	h, isHeader := rec.(*Header)
	switch {
	case i == 0 && !isHeader:
		return &bodyError{"typecode", stream.ErrOrder, "HEADER first", d.Typecode.String()}
	case i > 0 && isHeader:
		return &bodyError{"typecode", stream.ErrOrder, "HEADER only first", "HEADER again"}
	case isHeader && h.Magic != FileMagic:
		return &bodyError{"magic", stream.ErrValue, fmt.Sprintf("%#x", FileMagic), fmt.Sprintf("%#x", h.Magic)}
	case isHeader && h.Version != FileVersion:
		return &bodyError{"version", stream.ErrValue, fmt.Sprint(FileVersion), fmt.Sprint(h.Version)}
	}
	return nil
}

// Encode encodes the context: each entry's descriptor and body, and any
// Trailing bytes. An entry whose Length is an older, shorter layout (see
// Entry.Short) is written in that layout, which fails if the record holds
// a non-zero value the layout has no room for. A Context from Decode
// encodes to the bytes it was decoded from.
func Encode(c *Context) ([]byte, error) { return c.AppendBinary(nil) }

// AppendBinary appends the encoded context to b (see Encode).
func (c *Context) AppendBinary(b []byte) ([]byte, error) {
	ended := false
	for i := range c.Entries {
		e := &c.Entries[i]
		if ended {
			return nil, fmt.Errorf("hvm: entry %d (%s) after END", i, e.Typecode)
		}
		if e.Record == nil {
			return nil, fmt.Errorf("hvm: entry %d (%s) has no record", i, e.Typecode)
		}
		if rt := e.Record.Typecode(); rt != e.Typecode {
			return nil, fmt.Errorf("hvm: entry %d has typecode %s but a %s record", i, e.Typecode, rt)
		}
		start := len(b)
		b = le.AppendUint16(b, uint16(e.Typecode))
		b = le.AppendUint16(b, e.Instance)
		b = le.AppendUint32(b, 0)
		body, err := e.Record.AppendBinary(b)
		if err != nil {
			return nil, fmt.Errorf("hvm: entry %d (%s): %w", i, e.Typecode, err)
		}
		b, err = e.shorten(body, start+DescriptorSize)
		if err != nil {
			return nil, fmt.Errorf("hvm: entry %d (%s instance %d): %w", i, e.Typecode, e.Instance, err)
		}
		le.PutUint32(b[start+4:], uint32(len(b)-start-DescriptorSize))
		ended = e.Typecode == TypeEnd
	}
	if !ended {
		return nil, fmt.Errorf("hvm: %w", ErrNoEnd)
	}
	return append(b, c.Trailing...), nil
}

// shorten cuts the body starting at b[start:] to the entry's older layout,
// if its Length names one.
func (e *Entry) shorten(b []byte, start int) ([]byte, error) {
	n := len(b) - start
	if e.Length == 0 || int(e.Length) == n {
		return b, nil
	}
	info, known := types[e.Typecode]
	switch {
	case !known || info.size == 0:
		return nil, fmt.Errorf("%w: Length %d but the record encodes to %d bytes", errLength, e.Length, n)
	case e.Typecode == TypeCPU && e.Length == CPUCompatSize:
		full := b[start:]
		if le.Uint64(full[1000:]) != 0 || le.Uint32(full[1024:]) != 0 || le.Uint32(full[1028:]) != 0 {
			return nil, fmt.Errorf("%w: the compat CPU layout has no msr_tsc_aux, flags or pad0", stream.ErrValue)
		}
		tsc, pend, ec := le.Uint64(full[1008:]), le.Uint32(full[1016:]), le.Uint32(full[1020:])
		b = b[:start+1000]
		b = le.AppendUint64(b, tsc)
		b = le.AppendUint32(b, pend)
		return le.AppendUint32(b, ec), nil
	case info.zeroExtend && int(e.Length) < n:
		for _, x := range b[start+int(e.Length):] {
			if x != 0 {
				return nil, fmt.Errorf("%w: a %d-byte %s has no room for the non-zero bytes after offset %d", stream.ErrValue, e.Length, e.Typecode, e.Length)
			}
		}
		return b[:start+int(e.Length)], nil
	}
	return nil, fmt.Errorf("%w: Length %d, the layout has %d bytes", errLength, e.Length, n)
}

// Find returns the first entry of the typecode and instance, or nil.
func (c *Context) Find(tc Typecode, instance uint16) *Entry {
	for i := range c.Entries {
		if e := &c.Entries[i]; e.Typecode == tc && e.Instance == instance {
			return e
		}
	}
	return nil
}

// Header returns the HEADER record, or nil.
func (c *Context) Header() *Header {
	if e := c.Find(TypeHeader, 0); e != nil {
		h, _ := e.Record.(*Header)
		return h
	}
	return nil
}

// CPU returns the CPU record of a vCPU, or nil.
func (c *Context) CPU(vcpu uint16) *CPU {
	if e := c.Find(TypeCPU, vcpu); e != nil {
		r, _ := e.Record.(*CPU)
		return r
	}
	return nil
}

// LAPIC returns the LAPIC record of a vCPU, or nil.
func (c *Context) LAPIC(vcpu uint16) *LAPIC {
	if e := c.Find(TypeLAPIC, vcpu); e != nil {
		r, _ := e.Record.(*LAPIC)
		return r
	}
	return nil
}

// VCPUs returns the instances of the CPU entries: the vCPU ids, in order.
func (c *Context) VCPUs() []uint16 {
	var ids []uint16
	for _, e := range c.Entries {
		if e.Typecode == TypeCPU {
			ids = append(ids, e.Instance)
		}
	}
	return ids
}
