package libxc

import (
	"encoding/binary"
	"fmt"
)

// Sizes of the serialised CPU policy entries Xen's get/set_cpu_policy
// domctls exchange: xen_cpuid_leaf_t and xen_msr_entry_t. The
// X86_CPUID_POLICY and X86_MSR_POLICY records carry the same bytes.
const (
	CPUIDLeafSize = 24
	MSREntrySize  = 16
)

// DecodeCPUPolicy turns the arrays XEN_DOMCTL_get_cpu_policy returns (24
// bytes per CPUID leaf, 16 per MSR entry, little endian) into the two
// policy records. An empty CPUID array or a partial entry is an error.
func DecodeCPUPolicy(cpuid, msr []byte) (*X86CPUIDPolicy, *X86MSRPolicy, error) {
	if len(cpuid) == 0 || len(cpuid)%CPUIDLeafSize != 0 || len(msr)%MSREntrySize != 0 {
		return nil, nil, fmt.Errorf("libxc: cpu policy of %d CPUID bytes and %d MSR bytes: not whole entries", len(cpuid), len(msr))
	}
	le := binary.LittleEndian
	c := &X86CPUIDPolicy{Leaves: make([]CPUIDLeaf, len(cpuid)/CPUIDLeafSize)}
	for i := range c.Leaves {
		b := cpuid[CPUIDLeafSize*i:]
		c.Leaves[i] = CPUIDLeaf{Leaf: le.Uint32(b), Subleaf: le.Uint32(b[4:]),
			A: le.Uint32(b[8:]), B: le.Uint32(b[12:]), C: le.Uint32(b[16:]), D: le.Uint32(b[20:])}
	}
	m := &X86MSRPolicy{Entries: make([]MSREntry, len(msr)/MSREntrySize)}
	for i := range m.Entries {
		b := msr[MSREntrySize*i:]
		m.Entries[i] = MSREntry{Index: le.Uint32(b), Flags: le.Uint32(b[4:]), Value: le.Uint64(b[8:])}
	}
	return c, m, nil
}

// EncodeCPUPolicy is DecodeCPUPolicy's inverse: the arrays
// XEN_DOMCTL_set_cpu_policy takes. Either record may be nil (no entries).
func EncodeCPUPolicy(c *X86CPUIDPolicy, m *X86MSRPolicy) (cpuid, msr []byte) {
	le := binary.LittleEndian
	if c != nil {
		cpuid = make([]byte, 0, len(c.Leaves)*CPUIDLeafSize)
		for _, l := range c.Leaves {
			for _, v := range [6]uint32{l.Leaf, l.Subleaf, l.A, l.B, l.C, l.D} {
				cpuid = le.AppendUint32(cpuid, v)
			}
		}
	}
	if m != nil {
		msr = make([]byte, 0, len(m.Entries)*MSREntrySize)
		for _, e := range m.Entries {
			msr = le.AppendUint32(msr, e.Index)
			msr = le.AppendUint32(msr, e.Flags)
			msr = le.AppendUint64(msr, e.Value)
		}
	}
	return cpuid, msr
}
