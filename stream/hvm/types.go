package hvm

import (
	"encoding/binary"
	"fmt"

	"github.com/xensr/xensr/stream"
)

// A Typecode names the kind of an HVM save entry (HVM_SAVE_CODE in Xen's
// public/arch-x86/hvm/save.h).
type Typecode uint16

// The x86 typecodes.
const (
	TypeEnd            Typecode = 0
	TypeHeader         Typecode = 1
	TypeCPU            Typecode = 2
	TypePIC            Typecode = 3
	TypeIOAPIC         Typecode = 4
	TypeLAPIC          Typecode = 5
	TypeLAPICRegs      Typecode = 6
	TypePCIIRQ         Typecode = 7
	TypeISAIRQ         Typecode = 8
	TypePCILink        Typecode = 9
	TypePIT            Typecode = 10
	TypeRTC            Typecode = 11
	TypeHPET           Typecode = 12
	TypePMTimer        Typecode = 13
	TypeMTRR           Typecode = 14
	TypeViridianDomain Typecode = 15
	TypeCPUXSave       Typecode = 16
	TypeViridianVCPU   Typecode = 17
	TypeVMCEVCPU       Typecode = 18
	TypeTSCAdjust      Typecode = 19
	TypeCPUMSR         Typecode = 20
)

// String returns Xen's name of the typecode (HEADER, CPU, LAPIC, ...), or
// UNKNOWN(n).
func (t Typecode) String() string {
	if info, ok := types[t]; ok {
		return info.name
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint16(t))
}

// Known reports whether the package decodes entries of this typecode into a
// typed record (every x86 typecode up to Xen 4.21's HVM_SAVE_CODE_MAX).
func (t Typecode) Known() bool { _, ok := types[t]; return ok }

// Sizes of the fixed-size records in their current layout (HVM_SAVE_LENGTH),
// and the older layouts Xen's loader still accepts.
const (
	DescriptorSize = 8 // struct hvm_save_descriptor

	HeaderSize         = 24
	CPUSize            = 1032
	CPUCompatSize      = 1016 // struct hvm_hw_cpu_compat: before Xen 3.4, no msr_tsc_aux, flags
	PICSize            = 8
	IOAPICSize         = 16 + IOAPICPins*8
	LAPICSize          = 32 // Xen 4.21 and later: with pending_esr
	LAPICSizeLegacy    = 24 // up to Xen 4.20: no pending_esr
	LAPICRegsSize      = 1024
	PCIIRQSize         = 16
	ISAIRQSize         = 8
	PCILinkSize        = 8
	PITSize            = 56
	RTCSize            = 24
	HPETSize           = 1048
	PMTimerSize        = 8
	MTRRSize           = 240
	ViridianDomainSize = 32
	ViridianVCPUSize   = 216
	VMCEVCPUSize       = 32
	TSCAdjustSize      = 8

	// CPUXSaveHeaderSize is the fixed part of a CPU_XSAVE entry, before
	// the XSAVE area.
	CPUXSaveHeaderSize = 24
	// XSaveAreaMin is the smallest XSAVE area: the legacy FXSAVE region
	// (512 bytes) and the XSAVE header (64 bytes).
	XSaveAreaMin = 576
	// CPUMSRHeaderSize is the fixed part of a CPU_MSR entry (count and
	// padding), before the MSR array.
	CPUMSRHeaderSize = 8
	// CPUMSREntrySize is sizeof(struct hvm_one_msr).
	CPUMSREntrySize = 16
)

// HVM_FILE_MAGIC and HVM_FILE_VERSION, the values Xen requires in HEADER.
const (
	FileMagic   = 0x54381286
	FileVersion = 1
)

// typeInfo describes how one typecode is decoded.
type typeInfo struct {
	name string
	// size is the body size of the current layout; 0 for variable-length
	// records (and for END).
	size int
	// zeroExtend: Xen loads the record zero-extended from a shorter body
	// (hvm_load_entry_zeroextend), so shorter bodies are valid.
	zeroExtend bool
	new        func() Record
}

var types = map[Typecode]typeInfo{
	TypeEnd:            {"END", 0, false, func() Record { return new(End) }},
	TypeHeader:         {"HEADER", HeaderSize, false, func() Record { return new(Header) }},
	TypeCPU:            {"CPU", CPUSize, true, func() Record { return new(CPU) }},
	TypePIC:            {"PIC", PICSize, false, func() Record { return new(PIC) }},
	TypeIOAPIC:         {"IOAPIC", IOAPICSize, false, func() Record { return new(IOAPIC) }},
	TypeLAPIC:          {"LAPIC", LAPICSize, true, func() Record { return new(LAPIC) }},
	TypeLAPICRegs:      {"LAPIC_REGS", LAPICRegsSize, false, func() Record { return new(LAPICRegs) }},
	TypePCIIRQ:         {"PCI_IRQ", PCIIRQSize, false, func() Record { return new(PCIIRQ) }},
	TypeISAIRQ:         {"ISA_IRQ", ISAIRQSize, false, func() Record { return new(ISAIRQ) }},
	TypePCILink:        {"PCI_LINK", PCILinkSize, false, func() Record { return new(PCILink) }},
	TypePIT:            {"PIT", PITSize, false, func() Record { return new(PIT) }},
	TypeRTC:            {"RTC", RTCSize, true, func() Record { return new(RTC) }},
	TypeHPET:           {"HPET", HPETSize, false, func() Record { return new(HPET) }},
	TypePMTimer:        {"PMTIMER", PMTimerSize, false, func() Record { return new(PMTimer) }},
	TypeMTRR:           {"MTRR", MTRRSize, false, func() Record { return new(MTRR) }},
	TypeViridianDomain: {"VIRIDIAN_DOMAIN", ViridianDomainSize, true, func() Record { return new(ViridianDomain) }},
	TypeCPUXSave:       {"CPU_XSAVE", 0, false, func() Record { return new(CPUXSave) }},
	TypeViridianVCPU:   {"VIRIDIAN_VCPU", ViridianVCPUSize, true, func() Record { return new(ViridianVCPU) }},
	TypeVMCEVCPU:       {"VMCE_VCPU", VMCEVCPUSize, true, func() Record { return new(VMCEVCPU) }},
	TypeTSCAdjust:      {"TSC_ADJUST", TSCAdjustSize, false, func() Record { return new(TSCAdjust) }},
	TypeCPUMSR:         {"CPU_MSR", 0, false, func() Record { return new(CPUMSR) }},
}

// A Record is the typed body of one entry. The concrete types are *End,
// *Header, *CPU, *PIC, *IOAPIC, *LAPIC, *LAPICRegs, *PCIIRQ, *ISAIRQ,
// *PCILink, *PIT, *RTC, *HPET, *PMTimer, *MTRR, *ViridianDomain, *CPUXSave,
// *ViridianVCPU, *VMCEVCPU, *TSCAdjust, *CPUMSR and *Raw.
type Record interface {
	// Typecode returns the entry type the record is the body of.
	Typecode() Typecode
	// AppendBinary appends the record's body in its current layout.
	AppendBinary(b []byte) ([]byte, error)
	// decode parses a body of the current layout's size (or any size
	// for variable-length records).
	decode(b []byte) error
}

var le = binary.LittleEndian

// fixed is embedded-free plumbing for the records that are plain C structs:
// encoding/binary reads and writes them field by field in declaration order,
// which is the C layout because every padding byte is a named field.
func decodeFixed(b []byte, v any) error {
	_, err := binary.Decode(b, le, v)
	return err
}

func appendFixed(b []byte, v any) ([]byte, error) { return binary.Append(b, le, v) }

// End terminates the entries (typecode 0, length 0).
type End struct{}

// Header is HVM_SAVE_TYPE(HEADER), struct hvm_save_header: the first entry.
type Header struct {
	Magic     uint32 `c:"magic"`     // FileMagic
	Version   uint32 `c:"version"`   // FileVersion
	Changeset uint64 `c:"changeset"` // the saving Xen's changeset, as a number
	CPUID     uint32 `c:"cpuid"`     // CPUID leaf 1 EAX of the saving host
	GTSCKHz   uint32 `c:"gtsc_khz"`  // guest TSC frequency in kHz
}

// CPU is HVM_SAVE_TYPE(CPU), struct hvm_hw_cpu: one vCPU's registers.
// Entries whose body has the compat size (CPUCompatSize) are decoded from
// struct hvm_hw_cpu_compat, leaving MSRTSCAux and Flags zero.
type CPU struct {
	FPURegs [512]byte `c:"fpu_regs"` // FXSAVE image

	RAX uint64 `c:"rax"`
	RBX uint64 `c:"rbx"`
	RCX uint64 `c:"rcx"`
	RDX uint64 `c:"rdx"`
	RBP uint64 `c:"rbp"`
	RSI uint64 `c:"rsi"`
	RDI uint64 `c:"rdi"`
	RSP uint64 `c:"rsp"`
	R8  uint64 `c:"r8"`
	R9  uint64 `c:"r9"`
	R10 uint64 `c:"r10"`
	R11 uint64 `c:"r11"`
	R12 uint64 `c:"r12"`
	R13 uint64 `c:"r13"`
	R14 uint64 `c:"r14"`
	R15 uint64 `c:"r15"`

	RIP    uint64 `c:"rip"`
	RFLAGS uint64 `c:"rflags"`

	CR0 uint64 `c:"cr0"`
	CR2 uint64 `c:"cr2"`
	CR3 uint64 `c:"cr3"`
	CR4 uint64 `c:"cr4"`

	DR0 uint64 `c:"dr0"`
	DR1 uint64 `c:"dr1"`
	DR2 uint64 `c:"dr2"`
	DR3 uint64 `c:"dr3"`
	DR6 uint64 `c:"dr6"`
	DR7 uint64 `c:"dr7"`

	CSSel   uint32 `c:"cs_sel"`
	DSSel   uint32 `c:"ds_sel"`
	ESSel   uint32 `c:"es_sel"`
	FSSel   uint32 `c:"fs_sel"`
	GSSel   uint32 `c:"gs_sel"`
	SSSel   uint32 `c:"ss_sel"`
	TRSel   uint32 `c:"tr_sel"`
	LDTRSel uint32 `c:"ldtr_sel"`

	CSLimit   uint32 `c:"cs_limit"`
	DSLimit   uint32 `c:"ds_limit"`
	ESLimit   uint32 `c:"es_limit"`
	FSLimit   uint32 `c:"fs_limit"`
	GSLimit   uint32 `c:"gs_limit"`
	SSLimit   uint32 `c:"ss_limit"`
	TRLimit   uint32 `c:"tr_limit"`
	LDTRLimit uint32 `c:"ldtr_limit"`
	IDTRLimit uint32 `c:"idtr_limit"`
	GDTRLimit uint32 `c:"gdtr_limit"`

	CSBase   uint64 `c:"cs_base"`
	DSBase   uint64 `c:"ds_base"`
	ESBase   uint64 `c:"es_base"`
	FSBase   uint64 `c:"fs_base"`
	GSBase   uint64 `c:"gs_base"`
	SSBase   uint64 `c:"ss_base"`
	TRBase   uint64 `c:"tr_base"`
	LDTRBase uint64 `c:"ldtr_base"`
	IDTRBase uint64 `c:"idtr_base"`
	GDTRBase uint64 `c:"gdtr_base"`

	CSArbytes   uint32 `c:"cs_arbytes"`
	DSArbytes   uint32 `c:"ds_arbytes"`
	ESArbytes   uint32 `c:"es_arbytes"`
	FSArbytes   uint32 `c:"fs_arbytes"`
	GSArbytes   uint32 `c:"gs_arbytes"`
	SSArbytes   uint32 `c:"ss_arbytes"`
	TRArbytes   uint32 `c:"tr_arbytes"`
	LDTRArbytes uint32 `c:"ldtr_arbytes"`

	SysenterCS  uint64 `c:"sysenter_cs"`
	SysenterESP uint64 `c:"sysenter_esp"`
	SysenterEIP uint64 `c:"sysenter_eip"`

	ShadowGS uint64 `c:"shadow_gs"`

	MSRFlags       uint64 `c:"msr_flags"` // obsolete, ignored by Xen
	MSRLSTAR       uint64 `c:"msr_lstar"`
	MSRSTAR        uint64 `c:"msr_star"`
	MSRCSTAR       uint64 `c:"msr_cstar"`
	MSRSyscallMask uint64 `c:"msr_syscall_mask"`
	MSREFER        uint64 `c:"msr_efer"`
	MSRTSCAux      uint64 `c:"msr_tsc_aux"`

	TSC uint64 `c:"tsc"` // the guest's idea of what RDTSC returns

	PendingEvent uint32 `c:"pending_event"` // see PendingVector and friends
	ErrorCode    uint32 `c:"error_code"`    // error code of the pending event
	Flags        uint32 `c:"flags"`         // CPUFPUInitialised
	Pad0         uint32 `c:"pad0"`
}

// CPUFPUInitialised is XEN_X86_FPU_INITIALISED, the bit of CPU.Flags saying
// the FPU state in FPURegs is valid.
const CPUFPUInitialised = 1 << 0

// PendingVector returns the vector of the pending event (bits 0-7).
func (c *CPU) PendingVector() uint8 { return uint8(c.PendingEvent) }

// PendingType returns the type of the pending event (bits 8-10).
func (c *CPU) PendingType() uint8 { return uint8(c.PendingEvent>>8) & 7 }

// PendingErrorValid reports whether ErrorCode belongs to the pending event (bit 11).
func (c *CPU) PendingErrorValid() bool { return c.PendingEvent&(1<<11) != 0 }

// PendingValid reports whether an event is pending (bit 31).
func (c *CPU) PendingValid() bool { return c.PendingEvent&(1<<31) != 0 }

// cpuCompat is struct hvm_hw_cpu_compat: struct hvm_hw_cpu before Xen 3.4
// and 4.7, without msr_tsc_aux, flags and pad0.
type cpuCompat struct {
	Head         [1000]byte // fpu_regs .. msr_efer, identical to CPU
	TSC          uint64
	PendingEvent uint32
	ErrorCode    uint32
}

// PIC is HVM_SAVE_TYPE(PIC), struct hvm_hw_vpic: one 8259 (instance 0 the
// master, 1 the slave). Bytes 4 and 5 hold C bit-fields; use the methods.
type PIC struct {
	IRR       uint8 `c:"irr"`
	IMR       uint8 `c:"imr"`
	ISR       uint8 `c:"isr"`
	IRQBase   uint8 `c:"irq_base"`
	InitBits  uint8 // init_state:4, priority_add:4
	ModeBits  uint8 // readsel_isr, poll, auto_eoi, rotate_on_auto_eoi, special_fully_nested_mode, special_mask_mode, is_master
	ELCR      uint8 `c:"elcr"`
	IntOutput uint8 `c:"int_output"`
}

// InitState returns where the PIC is in its ICW2-4 initialisation.
func (p *PIC) InitState() uint8 { return p.InitBits & 0xf }

// PriorityAdd returns the IR line with the highest priority.
func (p *PIC) PriorityAdd() uint8 { return p.InitBits >> 4 }

// ReadselISR reports whether reads at A=0 return the ISR (else the IRR).
func (p *PIC) ReadselISR() bool { return p.ModeBits&(1<<0) != 0 }

// Poll reports whether reads perform a polling read.
func (p *PIC) Poll() bool { return p.ModeBits&(1<<1) != 0 }

// AutoEOI reports automatic EOI mode.
func (p *PIC) AutoEOI() bool { return p.ModeBits&(1<<2) != 0 }

// RotateOnAutoEOI reports whether priorities rotate on automatic EOI.
func (p *PIC) RotateOnAutoEOI() bool { return p.ModeBits&(1<<3) != 0 }

// SpecialFullyNested reports special fully nested mode.
func (p *PIC) SpecialFullyNested() bool { return p.ModeBits&(1<<4) != 0 }

// SpecialMask reports special mask mode.
func (p *PIC) SpecialMask() bool { return p.ModeBits&(1<<5) != 0 }

// IsMaster reports whether this is the master PIC.
func (p *PIC) IsMaster() bool { return p.ModeBits&(1<<6) != 0 }

// IOAPICPins is VIOAPIC_NUM_PINS: 16 ISA and 32 PCI IRQs.
const IOAPICPins = 48

// IOAPIC is HVM_SAVE_TYPE(IOAPIC), struct hvm_hw_vioapic.
type IOAPIC struct {
	BaseAddress uint64             `c:"base_address"`
	IORegSel    uint32             `c:"ioregsel"`
	ID          uint32             `c:"id"`
	RedirTbl    [IOAPICPins]uint64 `c:"redirtbl"` // union vioapic_redir_entry bits
}

// LAPIC is HVM_SAVE_TYPE(LAPIC), struct hvm_hw_lapic: one vCPU's local
// APIC state outside its registers. Xen before 4.21 writes 24 bytes
// (LAPICSizeLegacy, no PendingESR); Entry.Length tells which.
type LAPIC struct {
	APICBaseMSR  uint64 `c:"apic_base_msr"`
	Disabled     uint32 `c:"disabled"` // VLAPIC_xx_DISABLED
	TimerDivisor uint32 `c:"timer_divisor"`
	TDTMSR       uint64 `c:"tdt_msr"`
	PendingESR   uint32 // Xen 4.21: errors logged since the last ESR write
	Pad          uint32 // tail padding of the 4.21 layout
}

// LAPICRegs is HVM_SAVE_TYPE(LAPIC_REGS): the local APIC's register page
// (the first 1 KiB of its MMIO page).
type LAPICRegs struct {
	Data [LAPICRegsSize]byte `c:"data"`
}

// Reg returns the 32-bit register at byte offset off of the APIC page
// (e.g. 0x20 ID, 0x80 TPR, 0x380 timer initial count).
func (r *LAPICRegs) Reg(off int) uint32 { return le.Uint32(r.Data[off:]) }

// PCIIRQ is HVM_SAVE_TYPE(PCI_IRQ), struct hvm_hw_pci_irqs: the virtual
// INTx wires of one PCI bus, a bitmap indexed by device*4 + INTx.
type PCIIRQ struct {
	Wires [2]uint64 `c:"pad"`
}

// ISAIRQ is HVM_SAVE_TYPE(ISA_IRQ), struct hvm_hw_isa_irqs: the ISA IRQ
// wires, a bitmap indexed by IRQ.
type ISAIRQ struct {
	Wires uint64 `c:"pad"`
}

// PCILink is HVM_SAVE_TYPE(PCI_LINK), struct hvm_hw_pci_link: the GSI each
// of the four PCI-ISA links routes to.
type PCILink struct {
	Route [4]uint8 `c:"route"`
	Pad0  [4]uint8 `c:"pad0"`
}

// PITChannel is struct hvm_hw_pit_channel.
type PITChannel struct {
	Count         uint32 `c:"count"`
	LatchedCount  uint16 `c:"latched_count"`
	CountLatched  uint8  `c:"count_latched"`
	StatusLatched uint8  `c:"status_latched"`
	Status        uint8  `c:"status"`
	ReadState     uint8  `c:"read_state"`
	WriteState    uint8  `c:"write_state"`
	WriteLatch    uint8  `c:"write_latch"`
	RWMode        uint8  `c:"rw_mode"`
	Mode          uint8  `c:"mode"`
	BCD           uint8  `c:"bcd"`
	Gate          uint8  `c:"gate"`
}

// PIT is HVM_SAVE_TYPE(PIT), struct hvm_hw_pit: the 8254 timer.
type PIT struct {
	Channels      [3]PITChannel `c:"channels"`
	SpeakerDataOn uint32        `c:"speaker_data_on"`
	Pad0          uint32        `c:"pad0"`
}

// RTC is HVM_SAVE_TYPE(RTC), struct hvm_hw_rtc: the CMOS clock.
type RTC struct {
	CMOSData  [14]uint8 `c:"cmos_data"`
	CMOSIndex uint8     `c:"cmos_index"`
	Pad0      uint8     `c:"pad0"`
	RTCOffset int64     `c:"rtc_offset"` // offset from host time
}

// HPETTimer is one timer of struct hvm_hw_hpet.
type HPETTimer struct {
	Config uint64 `c:"config"`
	Cmp    uint64 `c:"cmp"`
	FSB    uint64 `c:"fsb"`
	Res4   uint64 `c:"res4"`
}

// HPET is HVM_SAVE_TYPE(HPET), struct hvm_hw_hpet.
type HPET struct {
	Capability uint64       `c:"capability"`
	Res0       uint64       `c:"res0"`
	Config     uint64       `c:"config"`
	Res1       uint64       `c:"res1"`
	ISR        uint64       `c:"isr"`
	Res2       [25]uint64   `c:"res2"`
	MC64       uint64       `c:"mc64"`
	Res3       uint64       `c:"res3"`
	Timers     [3]HPETTimer `c:"timers"`
	Res5       [84]uint64   `c:"res5"`
	Period     [3]uint64    `c:"period"`
}

// PMTimer is HVM_SAVE_TYPE(PMTIMER), struct hvm_hw_pmtimer.
type PMTimer struct {
	TmrVal  uint32 `c:"tmr_val"`
	PM1aSts uint16 `c:"pm1a_sts"`
	PM1aEn  uint16 `c:"pm1a_en"`
}

// MTRR is HVM_SAVE_TYPE(MTRR), struct hvm_hw_mtrr: one vCPU's PAT and MTRR MSRs.
type MTRR struct {
	PAT     uint64     `c:"msr_pat_cr"`
	Var     [16]uint64 `c:"msr_mtrr_var"` // base/mask pairs
	Fixed   [11]uint64 `c:"msr_mtrr_fixed"`
	Cap     uint64     `c:"msr_mtrr_cap"`
	DefType uint64     `c:"msr_mtrr_def_type"`
}

// ViridianDomain is HVM_SAVE_TYPE(VIRIDIAN_DOMAIN).
type ViridianDomain struct {
	HypercallGPA uint64 `c:"hypercall_gpa"`
	GuestOSID    uint64 `c:"guest_os_id"`
	TimeRefCount uint64 `c:"time_ref_count"`
	ReferenceTSC uint64 `c:"reference_tsc"`
}

// ViridianVCPU is HVM_SAVE_TYPE(VIRIDIAN_VCPU).
type ViridianVCPU struct {
	VPAssistMSR       uint64     `c:"vp_assist_msr"`
	APICAssistPending uint8      `c:"apic_assist_pending"`
	Pad               [7]uint8   `c:"_pad"`
	SIMPMSR           uint64     `c:"simp_msr"`
	SINTMSR           [16]uint64 `c:"sint_msr"`
	STimerConfigMSR   [4]uint64  `c:"stimer_config_msr"`
	STimerCountMSR    [4]uint64  `c:"stimer_count_msr"`
}

// VMCEVCPU is HVM_SAVE_TYPE(VMCE_VCPU): one vCPU's machine-check state.
type VMCEVCPU struct {
	Caps         uint64 `c:"caps"`
	MCiCtl2Bank0 uint64 `c:"mci_ctl2_bank0"`
	MCiCtl2Bank1 uint64 `c:"mci_ctl2_bank1"`
	MCGExtCtl    uint64 `c:"mcg_ext_ctl"`
}

// TSCAdjust is HVM_SAVE_TYPE(TSC_ADJUST): one vCPU's IA32_TSC_ADJUST.
type TSCAdjust struct {
	TSCAdjust uint64 `c:"tsc_adjust"`
}

// CPUXSave is a CPU_XSAVE entry, struct hvm_hw_cpu_xsave: one vCPU's
// extended state. Its length depends on the features in XCR0Accum.
type CPUXSave struct {
	XFeatureMask uint64 // ignored by Xen
	XCR0         uint64
	XCR0Accum    uint64
	Area         []byte // the XSAVE area: FXSAVE region, XSAVE header, components
}

// XStateBV returns the XSAVE header's XSTATE_BV (0 if Area is too short).
func (x *CPUXSave) XStateBV() uint64 {
	if len(x.Area) < 520 {
		return 0
	}
	return le.Uint64(x.Area[512:])
}

// XCompBV returns the XSAVE header's XCOMP_BV (0 if Area is too short).
func (x *CPUXSave) XCompBV() uint64 {
	if len(x.Area) < 528 {
		return 0
	}
	return le.Uint64(x.Area[520:])
}

// An MSR is one struct hvm_one_msr.
type MSR struct {
	Index    uint32 `c:"index"`
	Reserved uint32 `c:"_rsvd"`
	Value    uint64 `c:"val"`
}

// CPUMSR is a CPU_MSR entry, struct hvm_msr: MSRs of one vCPU beyond those
// in CPU.
type CPUMSR struct {
	Pad  uint32 // padding after count
	MSRs []MSR
}

// Raw is an entry kept as bytes: an unknown typecode, or, when decoding in
// relaxed mode, a known one whose body is malformed (Err says why).
type Raw struct {
	Code Typecode
	Data []byte
	Err  error
}

// Typecode returns TypeEnd.
func (*End) Typecode() Typecode { return TypeEnd }

// Typecode returns TypeHeader.
func (*Header) Typecode() Typecode { return TypeHeader }

// Typecode returns TypeCPU.
func (*CPU) Typecode() Typecode { return TypeCPU }

// Typecode returns TypePIC.
func (*PIC) Typecode() Typecode { return TypePIC }

// Typecode returns TypeIOAPIC.
func (*IOAPIC) Typecode() Typecode { return TypeIOAPIC }

// Typecode returns TypeLAPIC.
func (*LAPIC) Typecode() Typecode { return TypeLAPIC }

// Typecode returns TypeLAPICRegs.
func (*LAPICRegs) Typecode() Typecode { return TypeLAPICRegs }

// Typecode returns TypePCIIRQ.
func (*PCIIRQ) Typecode() Typecode { return TypePCIIRQ }

// Typecode returns TypeISAIRQ.
func (*ISAIRQ) Typecode() Typecode { return TypeISAIRQ }

// Typecode returns TypePCILink.
func (*PCILink) Typecode() Typecode { return TypePCILink }

// Typecode returns TypePIT.
func (*PIT) Typecode() Typecode { return TypePIT }

// Typecode returns TypeRTC.
func (*RTC) Typecode() Typecode { return TypeRTC }

// Typecode returns TypeHPET.
func (*HPET) Typecode() Typecode { return TypeHPET }

// Typecode returns TypePMTimer.
func (*PMTimer) Typecode() Typecode { return TypePMTimer }

// Typecode returns TypeMTRR.
func (*MTRR) Typecode() Typecode { return TypeMTRR }

// Typecode returns TypeViridianDomain.
func (*ViridianDomain) Typecode() Typecode { return TypeViridianDomain }

// Typecode returns TypeCPUXSave.
func (*CPUXSave) Typecode() Typecode { return TypeCPUXSave }

// Typecode returns TypeViridianVCPU.
func (*ViridianVCPU) Typecode() Typecode { return TypeViridianVCPU }

// Typecode returns TypeVMCEVCPU.
func (*VMCEVCPU) Typecode() Typecode { return TypeVMCEVCPU }

// Typecode returns TypeTSCAdjust.
func (*TSCAdjust) Typecode() Typecode { return TypeTSCAdjust }

// Typecode returns TypeCPUMSR.
func (*CPUMSR) Typecode() Typecode { return TypeCPUMSR }

// Typecode returns r.Code.
func (r *Raw) Typecode() Typecode { return r.Code }

// AppendBinary appends the End body in its current layout.
func (r *End) AppendBinary(b []byte) ([]byte, error) { return b, nil }

// AppendBinary appends the Header body in its current layout.
func (r *Header) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the CPU body in its current layout.
func (r *CPU) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the PIC body in its current layout.
func (r *PIC) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the IOAPIC body in its current layout.
func (r *IOAPIC) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the LAPIC body in its current layout.
func (r *LAPIC) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the LAPICRegs body in its current layout.
func (r *LAPICRegs) AppendBinary(b []byte) ([]byte, error) { return append(b, r.Data[:]...), nil }

// AppendBinary appends the PCIIRQ body in its current layout.
func (r *PCIIRQ) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the ISAIRQ body in its current layout.
func (r *ISAIRQ) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the PCILink body in its current layout.
func (r *PCILink) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the PIT body in its current layout.
func (r *PIT) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the RTC body in its current layout.
func (r *RTC) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the HPET body in its current layout.
func (r *HPET) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the PMTimer body in its current layout.
func (r *PMTimer) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the MTRR body in its current layout.
func (r *MTRR) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the ViridianDomain body in its current layout.
func (r *ViridianDomain) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the ViridianVCPU body in its current layout.
func (r *ViridianVCPU) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the VMCEVCPU body in its current layout.
func (r *VMCEVCPU) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the TSCAdjust body in its current layout.
func (r *TSCAdjust) AppendBinary(b []byte) ([]byte, error) { return appendFixed(b, r) }

// AppendBinary appends the fixed part and the XSAVE area.
func (r *CPUXSave) AppendBinary(b []byte) ([]byte, error) {
	b = le.AppendUint64(b, r.XFeatureMask)
	b = le.AppendUint64(b, r.XCR0)
	b = le.AppendUint64(b, r.XCR0Accum)
	return append(b, r.Area...), nil
}

// AppendBinary appends the count, padding and MSRs.
func (r *CPUMSR) AppendBinary(b []byte) ([]byte, error) {
	b = le.AppendUint32(b, uint32(len(r.MSRs)))
	b = le.AppendUint32(b, r.Pad)
	for _, m := range r.MSRs {
		b = le.AppendUint32(b, m.Index)
		b = le.AppendUint32(b, m.Reserved)
		b = le.AppendUint64(b, m.Value)
	}
	return b, nil
}

// AppendBinary appends Data as it is.
// AppendBinary appends the Raw body in its current layout.
func (r *Raw) AppendBinary(b []byte) ([]byte, error) { return append(b, r.Data...), nil }

func (r *End) decode(b []byte) error            { return nil }
func (r *Header) decode(b []byte) error         { return decodeFixed(b, r) }
func (r *CPU) decode(b []byte) error            { return decodeFixed(b, r) }
func (r *PIC) decode(b []byte) error            { return decodeFixed(b, r) }
func (r *IOAPIC) decode(b []byte) error         { return decodeFixed(b, r) }
func (r *LAPIC) decode(b []byte) error          { return decodeFixed(b, r) }
func (r *LAPICRegs) decode(b []byte) error      { copy(r.Data[:], b); return nil }
func (r *PCIIRQ) decode(b []byte) error         { return decodeFixed(b, r) }
func (r *ISAIRQ) decode(b []byte) error         { return decodeFixed(b, r) }
func (r *PCILink) decode(b []byte) error        { return decodeFixed(b, r) }
func (r *PIT) decode(b []byte) error            { return decodeFixed(b, r) }
func (r *RTC) decode(b []byte) error            { return decodeFixed(b, r) }
func (r *HPET) decode(b []byte) error           { return decodeFixed(b, r) }
func (r *PMTimer) decode(b []byte) error        { return decodeFixed(b, r) }
func (r *MTRR) decode(b []byte) error           { return decodeFixed(b, r) }
func (r *ViridianDomain) decode(b []byte) error { return decodeFixed(b, r) }
func (r *ViridianVCPU) decode(b []byte) error   { return decodeFixed(b, r) }
func (r *VMCEVCPU) decode(b []byte) error       { return decodeFixed(b, r) }
func (r *TSCAdjust) decode(b []byte) error      { return decodeFixed(b, r) }
func (r *Raw) decode(b []byte) error            { r.Data = append([]byte(nil), b...); return nil }

func (r *CPUXSave) decode(b []byte) error {
	if len(b) < CPUXSaveHeaderSize+XSaveAreaMin {
		return &bodyError{"save_area", errLength, "at least " + stream.Bytes(CPUXSaveHeaderSize+XSaveAreaMin), stream.Bytes(len(b))}
	}
	r.XFeatureMask, r.XCR0, r.XCR0Accum = le.Uint64(b), le.Uint64(b[8:]), le.Uint64(b[16:])
	r.Area = append([]byte(nil), b[CPUXSaveHeaderSize:]...)
	return nil
}

func (r *CPUMSR) decode(b []byte) error {
	if len(b) < CPUMSRHeaderSize {
		return &bodyError{"count", errLength, "at least " + stream.Bytes(CPUMSRHeaderSize), stream.Bytes(len(b))}
	}
	n := le.Uint32(b)
	if want := uint64(CPUMSRHeaderSize) + uint64(n)*CPUMSREntrySize; want != uint64(len(b)) {
		return &bodyError{"count", errLength, fmt.Sprintf("%s for %d MSRs", stream.Bytes(int(want)), n), stream.Bytes(len(b))}
	}
	r.Pad = le.Uint32(b[4:])
	r.MSRs = make([]MSR, n)
	for i := range r.MSRs {
		e := b[CPUMSRHeaderSize+i*CPUMSREntrySize:]
		r.MSRs[i] = MSR{le.Uint32(e), le.Uint32(e[4:]), le.Uint64(e[8:])}
	}
	return nil
}
