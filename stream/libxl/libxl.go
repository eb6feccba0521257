// Package libxl reads and writes the libxl migration stream (version 2), the
// layer between the xl save-file header (package stream/xl) and the libxc
// stream (package stream/libxc).
//
// A libxl stream is a 16-byte big-endian header ("LibxlFmt", version,
// options) followed by records framed like every migration v2 record (package
// stream): END, LIBXC_CONTEXT, EMULATOR_XENSTORE_DATA, EMULATOR_CONTEXT,
// CHECKPOINT_END and CHECKPOINT_STATE. A LIBXC_CONTEXT record has no body:
// the libxc stream follows it inline in the same byte stream, and the libxl
// records resume after the libxc END record. In a checkpointed (Remus/COLO)
// stream the libxc stream instead pauses at each libxc CHECKPOINT record,
// the libxl layer sends its emulator records and a CHECKPOINT_END, and the
// libxc stream then continues with its next round.
//
// The Reader never reads ahead. After it returns a LIBXC_CONTEXT record (or
// a CHECKPOINT_END that resumes a paused libxc stream), InLibxc reports true
// and Libxc returns a *libxc.Reader on the same io.Reader at the right
// offset; once that reader has returned its END (or a CHECKPOINT), Next takes
// the stream back. Callers that read the libxc data some other way use
// Underlying and Offset, then call Resume. Package stream/image walks whole
// images this way.
//
// Memory bound: a Reader holds one record buffer (package stream: at most
// the record cap, less than twice the cap allocated while a record grows)
// and nothing per record; its checks of emulator xenstore data walk the
// body in place. The libxc.Reader it hands out has its own bound (package
// stream/libxc). TestMemoryBound checks this with runtime.MemStats.
package libxl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xensr/xensr/stream"
)

// Layer is the layer name used in errors.
const Layer = "libxl"

// Header constants.
const (
	Ident      = 0x4c6962786c466d74 // "LibxlFmt"
	Version    = 2                  // the version this package reads and writes
	HeaderSize = 16

	OptBigEndian uint32 = 1 << 0 // records are big-endian (never on x86/arm; rejected)
	OptLegacy    uint32 = 1 << 1 // converted from a legacy stream
	// OptReserved are the options bits that must be zero.
	OptReserved = ^(OptBigEndian | OptLegacy)
)

// A RecordType is a libxl record type.
type RecordType uint32

// Record types of the libxl stream.
const (
	TypeEnd                  RecordType = 0x00000000
	TypeLibxcContext         RecordType = 0x00000001
	TypeEmulatorXenstoreData RecordType = 0x00000002
	TypeEmulatorContext      RecordType = 0x00000003
	TypeCheckpointEnd        RecordType = 0x00000004
	TypeCheckpointState      RecordType = 0x00000005

	// OptionalBit marks record types a reader may skip when it does not
	// know them.
	OptionalBit RecordType = 0x80000000
)

var typeNames = map[RecordType]string{
	TypeEnd:                  "END",
	TypeLibxcContext:         "LIBXC_CONTEXT",
	TypeEmulatorXenstoreData: "EMULATOR_XENSTORE_DATA",
	TypeEmulatorContext:      "EMULATOR_CONTEXT",
	TypeCheckpointEnd:        "CHECKPOINT_END",
	TypeCheckpointState:      "CHECKPOINT_STATE",
}

// String returns the spec's name of the type, or a hex form for unknown types.
func (t RecordType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	if t&OptionalBit != 0 {
		return fmt.Sprintf("UNKNOWN_OPTIONAL(%#x)", uint32(t))
	}
	return fmt.Sprintf("UNKNOWN(%#x)", uint32(t))
}

// Known reports whether t is one of the spec's record types.
func (t RecordType) Known() bool { _, ok := typeNames[t]; return ok }

// An EmulatorID names the emulator an EMULATOR_* record belongs to.
type EmulatorID uint32

// Emulator IDs.
const (
	EmulatorUnknown         EmulatorID = 0 // legacy streams
	EmulatorQemuTraditional EmulatorID = 1
	EmulatorQemuUpstream    EmulatorID = 2
)

// String returns the emulator's name.
func (e EmulatorID) String() string {
	switch e {
	case EmulatorUnknown:
		return "unknown"
	case EmulatorQemuTraditional:
		return "qemu-traditional"
	case EmulatorQemuUpstream:
		return "qemu-upstream"
	}
	return fmt.Sprintf("emulator(%#x)", uint32(e))
}

// Checkpoint state control IDs (COLO back channel).
const (
	CheckpointNew          = 0
	CheckpointSVMSuspended = 1
	CheckpointSVMReady     = 2
	CheckpointSVMResumed   = 3
)

// A Header is the libxl stream header.
type Header struct {
	Version uint32 // Version (2)
	Options uint32 // OptBigEndian, OptLegacy
}

// AppendBinary appends the big-endian encoded header to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, Ident)
	b = binary.BigEndian.AppendUint32(b, h.Version)
	return binary.BigEndian.AppendUint32(b, h.Options), nil
}

// A Record is one libxl record. Body aliases the Reader's buffer and is valid
// until the next call to Next.
type Record struct {
	Type   RecordType
	Body   []byte
	Offset int64 // absolute offset of the record header
	Index  int   // index among the libxl records of the stream
}

// An Emulator is the decoded body of an EMULATOR_XENSTORE_DATA or
// EMULATOR_CONTEXT record.
type Emulator struct {
	ID    EmulatorID
	Index uint32 // index of this emulator for the domain
	Data  []byte // xenstore key/value data or the emulator's context blob
}

// ParseEmulator decodes the emulator sub-header of an EMULATOR_* body.
func ParseEmulator(body []byte) (Emulator, error) {
	if len(body) < 8 {
		return Emulator{}, stream.ErrLength
	}
	return Emulator{
		ID:    EmulatorID(binary.LittleEndian.Uint32(body[0:4])),
		Index: binary.LittleEndian.Uint32(body[4:8]),
		Data:  body[8:],
	}, nil
}

// AppendBinary appends the encoded record body to b.
func (e Emulator) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint32(b, uint32(e.ID))
	b = binary.LittleEndian.AppendUint32(b, e.Index)
	return append(b, e.Data...), nil
}

// A KeyValue is one xenstore entry of an EMULATOR_XENSTORE_DATA record.
type KeyValue struct{ Key, Value string }

// ParseXenstoreData splits xenstore key/value data: a packed sequence of
// NUL-terminated key and value strings.
func ParseXenstoreData(data []byte) ([]KeyValue, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if data[len(data)-1] != 0 {
		return nil, errors.New("xenstore data not NUL-terminated")
	}
	parts := bytes.Split(data[:len(data)-1], []byte{0})
	if len(parts)%2 != 0 {
		return nil, fmt.Errorf("xenstore data has %d strings, want an even number", len(parts))
	}
	kv := make([]KeyValue, 0, len(parts)/2)
	for i := 0; i < len(parts); i += 2 {
		kv = append(kv, KeyValue{string(parts[i]), string(parts[i+1])})
	}
	return kv, nil
}

// AppendXenstoreData appends the encoding of kv to b.
func AppendXenstoreData(b []byte, kv []KeyValue) []byte {
	for _, e := range kv {
		b = append(b, e.Key...)
		b = append(b, 0)
		b = append(b, e.Value...)
		b = append(b, 0)
	}
	return b
}
