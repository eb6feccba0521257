package hvm

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

const saveIncludes = "#include <string.h>\n#include <xen/hvm/save.h>"

// TestLayoutsAgainstC compares every typecode, size and field offset of the
// records with Xen's public/arch-x86/hvm/save.h as libxen-dev ships it.
func TestLayoutsAgainstC(t *testing.T) {
	facts := map[string]uint64{
		"sizeof(struct hvm_save_descriptor)":             DescriptorSize,
		"offsetof(struct hvm_save_descriptor, typecode)": 0,
		"offsetof(struct hvm_save_descriptor, instance)": 2,
		"offsetof(struct hvm_save_descriptor, length)":   4,
		"HVM_FILE_MAGIC":                                                   FileMagic,
		"HVM_FILE_VERSION":                                                 FileVersion,
		"VIOAPIC_NUM_PINS":                                                 IOAPICPins,
		"CPU_XSAVE_CODE":                                                   uint64(TypeCPUXSave),
		"CPU_MSR_CODE":                                                     uint64(TypeCPUMSR),
		"HVM_SAVE_CODE_MAX":                                                uint64(TypeCPUMSR),
		"sizeof(struct hvm_hw_cpu_compat)":                                 CPUCompatSize,
		"offsetof(struct hvm_hw_cpu_compat, tsc)":                          1000,
		"offsetof(struct hvm_hw_cpu_compat, error_code)":                   1012,
		"offsetof(struct hvm_hw_cpu_xsave, save_area)":                     CPUXSaveHeaderSize,
		"offsetof(struct hvm_hw_cpu_xsave, xcr0)":                          8,
		"offsetof(struct hvm_hw_cpu_xsave, xcr0_accum)":                    16,
		"offsetof(struct hvm_hw_cpu_xsave, save_area.xsave_hdr.xstate_bv)": 512 + CPUXSaveHeaderSize,
		"offsetof(struct hvm_hw_cpu_xsave, save_area.xsave_hdr.xcomp_bv)":  520 + CPUXSaveHeaderSize,
		"sizeof(struct hvm_hw_cpu_xsave)":                                  CPUXSaveHeaderSize + XSaveAreaMin,
		"offsetof(struct hvm_msr, msr)":                                    CPUMSRHeaderSize,
		"sizeof(struct hvm_one_msr)":                                       CPUMSREntrySize,
	}
	// Every fixed-size record: its typecode, its size, its fields.
	for _, r := range []struct {
		name  string // HVM_SAVE_TYPE name
		cType string
		v     any
	}{
		{"HEADER", "struct hvm_save_header", Header{}},
		{"CPU", "struct hvm_hw_cpu", CPU{}},
		{"PIC", "struct hvm_hw_vpic", PIC{}},
		{"IOAPIC", "struct hvm_hw_vioapic", IOAPIC{}},
		{"LAPIC", "struct hvm_hw_lapic", LAPIC{}},
		{"LAPIC_REGS", "struct hvm_hw_lapic_regs", LAPICRegs{}},
		{"PCI_IRQ", "struct hvm_hw_pci_irqs", PCIIRQ{}},
		{"ISA_IRQ", "struct hvm_hw_isa_irqs", ISAIRQ{}},
		{"PCI_LINK", "struct hvm_hw_pci_link", PCILink{}},
		{"PIT", "struct hvm_hw_pit", PIT{}},
		{"RTC", "struct hvm_hw_rtc", RTC{}},
		{"HPET", "struct hvm_hw_hpet", HPET{}},
		{"PMTIMER", "struct hvm_hw_pmtimer", PMTimer{}},
		{"MTRR", "struct hvm_hw_mtrr", MTRR{}},
		{"VIRIDIAN_DOMAIN", "struct hvm_viridian_domain_context", ViridianDomain{}},
		{"VIRIDIAN_VCPU", "struct hvm_viridian_vcpu_context", ViridianVCPU{}},
		{"VMCE_VCPU", "struct hvm_vmce_vcpu", VMCEVCPU{}},
		{"TSC_ADJUST", "struct hvm_tsc_adjust", TSCAdjust{}},
		{"END", "struct hvm_save_end", End{}},
	} {
		var tc Typecode = 0xffff
		for code, info := range types {
			if info.name == r.name {
				tc = code
			}
		}
		facts["HVM_SAVE_CODE("+r.name+")"] = uint64(tc)
		facts["HVM_SAVE_LENGTH("+r.name+")"] = uint64(types[tc].size)
		facts["sizeof("+r.cType+")"] = uint64(binary.Size(r.v))
		cheader.Fields(facts, r.cType, "", 0, r.v)
	}
	// libxen-dev 4.17 predates pending_esr (Xen 4.21, commit b28b590d4a
	// "x86/vlapic: Fix handling of writes to APIC_ESR"): its LAPIC is the
	// legacy layout, the Go struct's first 24 bytes.
	facts["sizeof(struct hvm_hw_lapic)"] = LAPICSizeLegacy
	facts["HVM_SAVE_LENGTH(LAPIC)"] = LAPICSizeLegacy
	// Nested structures.
	cheader.Fields(facts, "struct hvm_hw_pit", "channels[1].", 16, PITChannel{})
	facts["sizeof(struct hvm_hw_pit_channel)"] = uint64(binary.Size(PITChannel{}))
	cheader.Fields(facts, "struct hvm_hw_hpet", "timers[2].", 256+2*32, HPETTimer{})
	cheader.Fields(facts, "struct hvm_msr", "msr[1].", CPUMSRHeaderSize+CPUMSREntrySize, MSR{})
	cheader.CompareWith(t, saveIncludes, facts)
	t.Logf("%d layout facts agree with the C headers", len(facts))
}

// TestBitfieldsAgainstC sets each C bit-field alone and checks that the
// accessor reads it back from the bytes C produced.
func TestBitfieldsAgainstC(t *testing.T) {
	pic := map[string]func(*PIC) uint64{
		"init_state = 9":                func(p *PIC) uint64 { return uint64(p.InitState()) },
		"priority_add = 6":              func(p *PIC) uint64 { return uint64(p.PriorityAdd()) },
		"readsel_isr = 1":               func(p *PIC) uint64 { return b2u(p.ReadselISR()) },
		"poll = 1":                      func(p *PIC) uint64 { return b2u(p.Poll()) },
		"auto_eoi = 1":                  func(p *PIC) uint64 { return b2u(p.AutoEOI()) },
		"rotate_on_auto_eoi = 1":        func(p *PIC) uint64 { return b2u(p.RotateOnAutoEOI()) },
		"special_fully_nested_mode = 1": func(p *PIC) uint64 { return b2u(p.SpecialFullyNested()) },
		"special_mask_mode = 1":         func(p *PIC) uint64 { return b2u(p.SpecialMask()) },
		"is_master = 1":                 func(p *PIC) uint64 { return b2u(p.IsMaster()) },
	}
	cpu := map[string]func(*CPU) uint64{
		"pending_vector = 0xe1":   func(c *CPU) uint64 { return uint64(c.PendingVector()) },
		"pending_type = 5":        func(c *CPU) uint64 { return uint64(c.PendingType()) },
		"pending_error_valid = 1": func(c *CPU) uint64 { return b2u(c.PendingErrorValid()) },
		"pending_valid = 1":       func(c *CPU) uint64 { return b2u(c.PendingValid()) },
	}
	var prints strings.Builder
	prints.WriteString("struct hvm_hw_vpic p; struct hvm_hw_cpu c;\n")
	var names []string
	for set := range pic {
		names = append(names, "pic "+set)
	}
	for set := range cpu {
		names = append(names, "cpu "+set)
	}
	for i, n := range names {
		kind, set, _ := strings.Cut(n, " ")
		if kind == "pic" {
			prints.WriteString("memset(&p, 0, sizeof p); p." + set + ";\n")
			prints.WriteString(cheader.Print("p"+string(rune('a'+i))+"4", "((uint8_t *)&p)[4]"))
			prints.WriteString(cheader.Print("p"+string(rune('a'+i))+"5", "((uint8_t *)&p)[5]"))
		} else {
			prints.WriteString("memset(&c, 0, sizeof c); c." + set + ";\n")
			prints.WriteString(cheader.Print("p"+string(rune('a'+i))+"e", "c.pending_event"))
		}
	}
	got := cheader.RunWith(t, saveIncludes, prints.String())
	for i, n := range names {
		kind, set, _ := strings.Cut(n, " ")
		_, val, _ := strings.Cut(set, " = ")
		var want uint64
		for _, ch := range strings.TrimPrefix(val, "0x") {
			d := uint64(strings.IndexRune("0123456789abcdef", ch))
			if strings.HasPrefix(val, "0x") {
				want = want*16 + d
			} else {
				want = want*10 + d
			}
		}
		k := "p" + string(rune('a'+i))
		var have uint64
		if kind == "pic" {
			p := PIC{InitBits: uint8(got[k+"4"]), ModeBits: uint8(got[k+"5"])}
			have = pic[set](&p)
		} else {
			c := CPU{PendingEvent: uint32(got[k+"e"])}
			have = cpu[set](&c)
		}
		if have != want {
			t.Errorf("%s %s: accessor reads %#x from C's bytes", kind, set, have)
		}
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
