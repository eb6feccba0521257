package pv

import (
	"encoding/binary"
	"fmt"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/libxc"
)

// ExtendedSize is sizeof(struct xen_domctl_ext_vcpucontext) in Xen 4.17.
const ExtendedSize = 64

// Extended is the body of an X86_PV_VCPU_EXTENDED record: struct
// xen_domctl_ext_vcpucontext as XEN_DOMCTL_get_ext_vcpucontext returns it,
// the 32-bit SYSCALL and SYSENTER callbacks and the machine-check state.
// Older Xen versions write a shorter struct (Size says how long; Xen
// zero-extends it); Length keeps the record's length so Encode writes the
// same bytes.
type Extended struct {
	VCPU                    uint32       `c:"vcpu"`
	Size                    uint32       `c:"size"` // the struct's size as Xen wrote it
	Syscall32CallbackEIP    uint64       `c:"syscall32_callback_eip"`
	SysenterCallbackEIP     uint64       `c:"sysenter_callback_eip"`
	Syscall32CallbackCS     uint16       `c:"syscall32_callback_cs"`
	SysenterCallbackCS      uint16       `c:"sysenter_callback_cs"`
	Syscall32DisablesEvents uint8        `c:"syscall32_disables_events"`
	SysenterDisablesEvents  uint8        `c:"sysenter_disables_events"`
	Pad                     [2]uint8     // implicit C padding
	VMCE                    hvm.VMCEVCPU `c:"vmce"` // the same state as the HVM VMCE_VCPU record
	// Length is the encoded length (0 means ExtendedSize); Tail holds bytes
	// past ExtendedSize that a newer Xen may write. Neither is part of
	// the C struct.
	Length int
	Tail   []byte
}

// extendedFixed mirrors Extended without the Go-only fields, for encoding/binary.
type extendedFixed struct {
	VCPU                    uint32
	Size                    uint32
	Syscall32CallbackEIP    uint64
	SysenterCallbackEIP     uint64
	Syscall32CallbackCS     uint16
	SysenterCallbackCS      uint16
	Syscall32DisablesEvents uint8
	SysenterDisablesEvents  uint8
	Pad                     [2]uint8
	VMCE                    hvm.VMCEVCPU
}

// DecodeExtended decodes the context of an X86_PV_VCPU_EXTENDED record
// (libxc.VCPUContext.Context): at most libxc.VCPUExtendedMax bytes, zero-
// extended to the 4.17 layout when shorter.
func DecodeExtended(b []byte) (*Extended, error) {
	if len(b) > libxc.VCPUExtendedMax {
		return nil, &stream.FormatError{Layer: Layer, Index: -1, Type: uint32(libxc.TypeX86PVVCPUExtended), TypeName: libxc.TypeX86PVVCPUExtended.String(),
			Field: "length", Err: stream.ErrLength, Expected: "at most " + stream.Bytes(libxc.VCPUExtendedMax), Actual: stream.Bytes(len(b))}
	}
	full := make([]byte, max(len(b), ExtendedSize))
	copy(full, b)
	var f extendedFixed
	if _, err := binary.Decode(full, binary.LittleEndian, &f); err != nil {
		return nil, err
	}
	e := &Extended{VCPU: f.VCPU, Size: f.Size, Syscall32CallbackEIP: f.Syscall32CallbackEIP, SysenterCallbackEIP: f.SysenterCallbackEIP,
		Syscall32CallbackCS: f.Syscall32CallbackCS, SysenterCallbackCS: f.SysenterCallbackCS, Syscall32DisablesEvents: f.Syscall32DisablesEvents,
		SysenterDisablesEvents: f.SysenterDisablesEvents, Pad: f.Pad, VMCE: f.VMCE, Length: len(b)}
	if len(b) > ExtendedSize {
		e.Tail = append([]byte(nil), b[ExtendedSize:]...)
	}
	return e, nil
}

// AppendBinary appends the encoded context: Length bytes (ExtendedSize
// when 0), failing if a shorter Length would drop non-zero state.
func (e *Extended) AppendBinary(b []byte) ([]byte, error) {
	f := extendedFixed{e.VCPU, e.Size, e.Syscall32CallbackEIP, e.SysenterCallbackEIP, e.Syscall32CallbackCS, e.SysenterCallbackCS,
		e.Syscall32DisablesEvents, e.SysenterDisablesEvents, e.Pad, e.VMCE}
	full, err := binary.Append(nil, binary.LittleEndian, &f)
	if err != nil {
		return nil, err
	}
	full = append(full, e.Tail...)
	n := e.Length
	if n == 0 {
		n = len(full)
	}
	if n > len(full) {
		return nil, fmt.Errorf("pv: Length %d but the context encodes to %d bytes", n, len(full))
	}
	for _, x := range full[n:] {
		if x != 0 {
			return nil, fmt.Errorf("pv: a %d-byte extended context has no room for the non-zero state after it: %w", n, stream.ErrValue)
		}
	}
	return append(b, full[:n]...), nil
}
