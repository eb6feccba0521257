package stream

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Sentinel errors. A FormatError wraps one of these (or another cause), so
// callers test the kind of failure with errors.Is and its location with
// errors.As.
var (
	// ErrTruncated reports that the input ended inside a record or header.
	// errors.Is(err, io.ErrUnexpectedEOF) also holds for it.
	ErrTruncated = &truncatedError{}
	// ErrTooLarge reports a record whose declared length exceeds the
	// reader's cap (MaxRecordSize).
	ErrTooLarge = errors.New("record longer than the size cap")
	// ErrPadding reports non-zero bytes in the padding after a record body.
	ErrPadding = errors.New("non-zero record padding")
	// ErrReserved reports a non-zero reserved field.
	ErrReserved = errors.New("non-zero reserved field")
	// ErrLength reports a record body whose length does not match what its
	// type requires.
	ErrLength = errors.New("bad record length")
	// ErrValue reports a field holding a value the format does not allow.
	ErrValue = errors.New("invalid field value")
	// ErrUnknownType reports a record type the layer does not know and that
	// lacks the optional bit.
	ErrUnknownType = errors.New("unknown record type")
	// ErrOrder reports a record that may not appear where it does.
	ErrOrder = errors.New("record out of order")
	// ErrWriteAfterEnd is what every layer's Writer returns for a record
	// after END or a second header, like archive/tar's ErrWriteAfterClose.
	ErrWriteAfterEnd = errors.New("write after END")
	// ErrWriteBeforeHeader is what a Writer returns for a record before
	// its header.
	ErrWriteBeforeHeader = errors.New("record written before the header")
)

type truncatedError struct{}

func (*truncatedError) Error() string        { return "stream truncated" }
func (*truncatedError) Is(target error) bool { return target == io.ErrUnexpectedEOF }

// A FormatError reports a malformed stream and names where: the layer
// ("libxc", "libxl", "xl", "pack", "liveupdate", ...), the absolute byte
// offset of the record (or header, block, address) that is wrong, its index
// among the layer's records (-1 for a header or anything that is not a
// record), its type and the type's name, the field at fault (empty for the
// record as a whole), and, when known, what the format expects there and
// what the stream holds.
type FormatError struct {
	Layer    string // stream layer, e.g. "libxc"
	Offset   int64  // absolute byte offset of the record or header start
	Index    int    // record index within the layer; -1 for a header
	Type     uint32 // record type; 0 with Index -1
	TypeName string // the layer's name of Type, e.g. "PAGE_DATA"; empty if not known
	Field    string // offending field, if known
	Expected string // what the format requires, e.g. "8 bytes"; empty if not said
	Actual   string // what the stream holds, e.g. "12 bytes"; empty if not said
	Err      error  // the cause, usually one of the sentinels above
}

// Error describes the failure and its location, e.g.
//
//	libxc: record 3 (X86_PV_INFO) at offset 120, field body_length: bad record length: expected 8 bytes, got 12 bytes
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString(e.Layer)
	b.WriteString(": ")
	if e.Index >= 0 {
		name := e.TypeName
		if name == "" {
			name = fmt.Sprintf("type %#x", e.Type)
		}
		fmt.Fprintf(&b, "record %d (%s) at offset %d", e.Index, name, e.Offset)
	} else {
		fmt.Fprintf(&b, "at offset %d", e.Offset)
	}
	if e.Field != "" {
		b.WriteString(", field ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	switch {
	case e.Expected != "" && e.Actual != "":
		fmt.Fprintf(&b, ": expected %s, got %s", e.Expected, e.Actual)
	case e.Expected != "":
		fmt.Fprintf(&b, ": expected %s", e.Expected)
	case e.Actual != "":
		fmt.Fprintf(&b, ": got %s", e.Actual)
	}
	return b.String()
}

// Unwrap returns the cause, so errors.Is(err, ErrTruncated) and the like work.
func (e *FormatError) Unwrap() error { return e.Err }
