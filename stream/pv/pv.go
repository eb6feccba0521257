// Package pv gives a typed view of the vCPU state of an x86 PV guest: the
// body of a libxc X86_PV_VCPU_BASIC record, a vcpu_guest_context as
// XEN_DOMCTL_getvcpucontext returns it, in the layout of the guest's width:
// struct vcpu_guest_context_x86_64 (5168 bytes) for 64-bit guests and
// struct vcpu_guest_context_x86_32 (2800 bytes) for 32-bit ones (Xen's
// public/arch-x86/xen.h, xen-x86_64.h and xen-x86_32.h, as laid out in
// libxen-dev's xen/foreign/x86_64.h and x86_32.h; the package tests compare
// every field offset with them).
//
// DecodeExtended gives the same for X86_PV_VCPU_EXTENDED (struct
// xen_domctl_ext_vcpucontext: 32-bit SYSCALL/SYSENTER callbacks and the
// machine-check state).
//
// The guest width comes from the stream's X86_PV_INFO record, whose typed
// view is libxc.X86PVInfo. In a saved stream, the control registers that
// name page tables (CR3, and CR1 for a 64-bit guest's user page table) hold
// PFNs, not MFNs: libxc's save rewrites them.
//
// Decode copies; Encode returns the exact bytes a decoded context came
// from. Malformed input fails with a *stream.FormatError of layer "pv".
package pv

import (
	"encoding/binary"
	"fmt"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// Layer is the layer name in errors from this package.
const Layer = "pv"

// Guest widths, as X86_PV_INFO's guest_width gives them (bytes).
const (
	Width32 = 4
	Width64 = 8
)

// The VGCF_* bits of a context's Flags.
const (
	FlagI387Valid              = 1 << 0 // VGCF_i387_valid: the FPU state is valid
	FlagInKernel               = 1 << 2 // VGCF_in_kernel: the vCPU runs in kernel mode
	FlagFailsafeDisablesEvents = 1 << 3 // VGCF_failsafe_disables_events
	FlagSyscallDisablesEvents  = 1 << 4 // VGCF_syscall_disables_events
	FlagOnline                 = 1 << 5 // VGCF_online: the vCPU is up
)

// TrapEntries is the size of a PV guest's virtual IDT.
const TrapEntries = 256

// GDTFrames is the number of GDT frames a context names.
const GDTFrames = 16

// UserRegs64 is struct cpu_user_regs of a 64-bit guest.
type UserRegs64 struct {
	R15             uint64    `c:"r15"`
	R14             uint64    `c:"r14"`
	R13             uint64    `c:"r13"`
	R12             uint64    `c:"r12"`
	RBP             uint64    `c:"rbp"`
	RBX             uint64    `c:"rbx"`
	R11             uint64    `c:"r11"`
	R10             uint64    `c:"r10"`
	R9              uint64    `c:"r9"`
	R8              uint64    `c:"r8"`
	RAX             uint64    `c:"rax"`
	RCX             uint64    `c:"rcx"`
	RDX             uint64    `c:"rdx"`
	RSI             uint64    `c:"rsi"`
	RDI             uint64    `c:"rdi"`
	ErrorCode       uint32    `c:"error_code"`   // private to Xen
	EntryVector     uint32    `c:"entry_vector"` // private to Xen
	RIP             uint64    `c:"rip"`
	CS              uint16    `c:"cs"`
	Pad0            uint16    `c:"_pad0"`
	SavedUpcallMask uint8     `c:"saved_upcall_mask"`
	Pad1            [3]uint8  `c:"_pad1"`
	RFLAGS          uint64    `c:"rflags"` // IF == !SavedUpcallMask
	RSP             uint64    `c:"rsp"`
	SS              uint16    `c:"ss"`
	Pad2            [3]uint16 `c:"_pad2"`
	ES              uint16    `c:"es"`
	Pad3            [3]uint16 `c:"_pad3"`
	DS              uint16    `c:"ds"`
	Pad4            [3]uint16 `c:"_pad4"`
	FS              uint16    `c:"fs"`
	Pad5            [3]uint16 `c:"_pad5"`
	GS              uint16    `c:"gs"`
	Pad6            [3]uint16 `c:"_pad6"`
}

// TrapInfo64 is struct trap_info of a 64-bit guest: one virtual IDT entry.
type TrapInfo64 struct {
	Vector  uint8  `c:"vector"`
	Flags   uint8  `c:"flags"` // bits 0-3: privilege level; bit 4: clear event enable
	CS      uint16 `c:"cs"`
	Pad     uint32
	Address uint64 `c:"address"`
}

// Context64 is struct vcpu_guest_context_x86_64.
type Context64 struct {
	FPU                 [512]byte               `c:"fpu_ctxt"` // FXSAVE image
	Flags               uint64                  `c:"flags"`    // Flag* (VGCF_*)
	UserRegs            UserRegs64              `c:"user_regs"`
	TrapCtxt            [TrapEntries]TrapInfo64 `c:"trap_ctxt"`
	LDTBase             uint64                  `c:"ldt_base"`
	LDTEnts             uint64                  `c:"ldt_ents"`
	GDTFrames           [GDTFrames]uint64       `c:"gdt_frames"`
	GDTEnts             uint64                  `c:"gdt_ents"`
	KernelSS            uint64                  `c:"kernel_ss"`
	KernelSP            uint64                  `c:"kernel_sp"`
	CtrlReg             [8]uint64               `c:"ctrlreg"` // CR0-CR7; CR1 is the user page table
	DebugReg            [8]uint64               `c:"debugreg"`
	EventCallbackEIP    uint64                  `c:"event_callback_eip"`
	FailsafeCallbackEIP uint64                  `c:"failsafe_callback_eip"`
	SyscallCallbackEIP  uint64                  `c:"syscall_callback_eip"`
	VMAssist            uint64                  `c:"vm_assist"` // VMASST_TYPE_* bitmap
	FSBase              uint64                  `c:"fs_base"`
	GSBaseKernel        uint64                  `c:"gs_base_kernel"`
	GSBaseUser          uint64                  `c:"gs_base_user"`
}

// UserRegs32 is struct cpu_user_regs of a 32-bit guest.
type UserRegs32 struct {
	EBX             uint32 `c:"ebx"`
	ECX             uint32 `c:"ecx"`
	EDX             uint32 `c:"edx"`
	ESI             uint32 `c:"esi"`
	EDI             uint32 `c:"edi"`
	EBP             uint32 `c:"ebp"`
	EAX             uint32 `c:"eax"`
	ErrorCode       uint16 `c:"error_code"`   // private to Xen
	EntryVector     uint16 `c:"entry_vector"` // private to Xen
	EIP             uint32 `c:"eip"`
	CS              uint16 `c:"cs"`
	SavedUpcallMask uint8  `c:"saved_upcall_mask"`
	Pad0            uint8  `c:"_pad0"`
	EFLAGS          uint32 `c:"eflags"`
	ESP             uint32 `c:"esp"`
	SS              uint16 `c:"ss"`
	Pad1            uint16 `c:"_pad1"`
	ES              uint16 `c:"es"`
	Pad2            uint16 `c:"_pad2"`
	DS              uint16 `c:"ds"`
	Pad3            uint16 `c:"_pad3"`
	FS              uint16 `c:"fs"`
	Pad4            uint16 `c:"_pad4"`
	GS              uint16 `c:"gs"`
	Pad5            uint16 `c:"_pad5"`
}

// TrapInfo32 is struct trap_info of a 32-bit guest.
type TrapInfo32 struct {
	Vector  uint8  `c:"vector"`
	Flags   uint8  `c:"flags"`
	CS      uint16 `c:"cs"`
	Address uint32 `c:"address"`
}

// Context32 is struct vcpu_guest_context_x86_32.
type Context32 struct {
	FPU                 [512]byte               `c:"fpu_ctxt"`
	Flags               uint32                  `c:"flags"`
	UserRegs            UserRegs32              `c:"user_regs"`
	TrapCtxt            [TrapEntries]TrapInfo32 `c:"trap_ctxt"`
	LDTBase             uint32                  `c:"ldt_base"`
	LDTEnts             uint32                  `c:"ldt_ents"`
	GDTFrames           [GDTFrames]uint32       `c:"gdt_frames"`
	GDTEnts             uint32                  `c:"gdt_ents"`
	KernelSS            uint32                  `c:"kernel_ss"`
	KernelSP            uint32                  `c:"kernel_sp"`
	CtrlReg             [8]uint32               `c:"ctrlreg"`
	DebugReg            [8]uint32               `c:"debugreg"`
	EventCallbackCS     uint32                  `c:"event_callback_cs"` // CS:EIP of the event callback
	EventCallbackEIP    uint32                  `c:"event_callback_eip"`
	FailsafeCallbackCS  uint32                  `c:"failsafe_callback_cs"` // CS:EIP of the failsafe callback
	FailsafeCallbackEIP uint32                  `c:"failsafe_callback_eip"`
	VMAssist            uint32                  `c:"vm_assist"`
}

// A Context is a decoded vcpu_guest_context: *Context64 or *Context32.
// The methods give the registers a tool usually wants without a type
// switch on the width.
type Context interface {
	// Width returns the guest width in bytes (Width32 or Width64).
	Width() int
	// IP returns the instruction pointer.
	IP() uint64
	// SP returns the stack pointer.
	SP() uint64
	// CR3PFN returns the PFN of the top-level page table (from CR3, which
	// a saved stream holds in PFN form).
	CR3PFN() uint64
	// Online reports whether the vCPU is up (VGCF_online).
	Online() bool
	// AppendBinary appends the encoded context.
	AppendBinary(b []byte) ([]byte, error)
}

// Width returns Width64.
func (c *Context64) Width() int { return Width64 }

// IP returns RIP.
func (c *Context64) IP() uint64 { return c.UserRegs.RIP }

// SP returns RSP.
func (c *Context64) SP() uint64 { return c.UserRegs.RSP }

// CR3PFN returns CR3's frame number: a 64-bit guest's CR3 is the frame
// shifted by 12 (xen_cr3_to_pfn).
func (c *Context64) CR3PFN() uint64 { return c.CtrlReg[3] >> 12 }

// UserCR3PFN returns the frame of the user page table in CR1 (0 for none).
func (c *Context64) UserCR3PFN() uint64 { return c.CtrlReg[1] >> 12 }

// Online reports VGCF_online.
func (c *Context64) Online() bool { return c.Flags&FlagOnline != 0 }

// AppendBinary appends the 5168-byte context.
func (c *Context64) AppendBinary(b []byte) ([]byte, error) {
	return binary.Append(b, binary.LittleEndian, c)
}

// Width returns Width32.
func (c *Context32) Width() int { return Width32 }

// IP returns EIP.
func (c *Context32) IP() uint64 { return uint64(c.UserRegs.EIP) }

// SP returns ESP.
func (c *Context32) SP() uint64 { return uint64(c.UserRegs.ESP) }

// CR3PFN returns CR3's frame number: a 32-bit (PAE) guest's CR3 is the
// frame folded into 32 bits, rotated left by 12 (xen_cr3_to_pfn).
func (c *Context32) CR3PFN() uint64 {
	cr3 := c.CtrlReg[3]
	return uint64(cr3>>12 | cr3<<20)
}

// Online reports VGCF_online.
func (c *Context32) Online() bool { return c.Flags&FlagOnline != 0 }

// AppendBinary appends the 2800-byte context.
func (c *Context32) AppendBinary(b []byte) ([]byte, error) {
	return binary.Append(b, binary.LittleEndian, c)
}

// Decode decodes a vcpu_guest_context of a guest of the given width (4 or
// 8, X86_PV_INFO's guest_width). The length must be exactly the layout's:
// libxc.VCPUBasicSize32 or libxc.VCPUBasicSize64. Offsets in errors count
// from b's first byte.
func Decode(b []byte, width int) (Context, error) {
	var c Context
	var want int
	switch width {
	case Width64:
		c, want = new(Context64), libxc.VCPUBasicSize64
	case Width32:
		c, want = new(Context32), libxc.VCPUBasicSize32
	default:
		return nil, &stream.FormatError{Layer: Layer, Index: -1, Field: "guest_width", Err: stream.ErrValue,
			Expected: fmt.Sprintf("%d or %d", Width32, Width64), Actual: fmt.Sprint(width)}
	}
	if len(b) != want {
		return nil, &stream.FormatError{Layer: Layer, Index: -1, Field: "length", Err: stream.ErrLength,
			Expected: fmt.Sprintf("%s (%d-bit guest)", stream.Bytes(want), width*8), Actual: stream.Bytes(len(b))}
	}
	if _, err := binary.Decode(b, binary.LittleEndian, c); err != nil {
		return nil, &stream.FormatError{Layer: Layer, Index: -1, Field: "length", Err: err}
	}
	return c, nil
}

// Encode returns the encoded context.
func Encode(c Context) ([]byte, error) { return c.AppendBinary(nil) }

// DecodeRecord decodes an X86_PV_VCPU_BASIC record of a stream whose
// X86_PV_INFO is info. Errors carry the record type and, with off the
// absolute offset of the record, the offset of the context in the file.
func DecodeRecord(info *libxc.X86PVInfo, rec *libxc.VCPUContext, off int64) (Context, error) {
	if rec.Kind != libxc.TypeX86PVVCPUBasic {
		return nil, &stream.FormatError{Layer: Layer, Offset: off, Index: -1, Type: uint32(rec.Kind), TypeName: rec.Kind.String(), Field: "type",
			Err: stream.ErrValue, Expected: libxc.TypeX86PVVCPUBasic.String(), Actual: rec.Kind.String()}
	}
	c, err := Decode(rec.Context, int(info.GuestWidth))
	if fe, ok := err.(*stream.FormatError); ok {
		fe.Offset += off + ctxOffset
		fe.Type, fe.TypeName = uint32(rec.Kind), rec.Kind.String()
	}
	return c, err
}

// ctxOffset is where the context starts in an X86_PV_VCPU_* record: after
// the record header, the vCPU id and the reserved word.
const ctxOffset = stream.HeaderSize + 8
