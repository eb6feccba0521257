package libxc

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"
)

func TestDecodeCPUPolicyRejectsPartialEntries(t *testing.T) {
	for _, c := range [][2]int{{0, 0}, {25, 16}, {24, 15}} {
		if _, _, err := DecodeCPUPolicy(make([]byte, c[0]), make([]byte, c[1])); err == nil {
			t.Errorf("cpuid %d bytes, msr %d bytes: accepted", c[0], c[1])
		}
	}
}

// TestCPUPolicyRoundTrip: Encode(Decode(b)) == b for whole entries.
func TestCPUPolicyRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nl := rapid.IntRange(1, 40).Draw(t, "leaves")
		nm := rapid.IntRange(0, 40).Draw(t, "msrs")
		cpuid := rapid.SliceOfN(rapid.Byte(), nl*CPUIDLeafSize, nl*CPUIDLeafSize).Draw(t, "cpuid")
		msr := rapid.SliceOfN(rapid.Byte(), nm*MSREntrySize, nm*MSREntrySize).Draw(t, "msr")
		c, m, err := DecodeCPUPolicy(cpuid, msr)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Leaves) != nl || len(m.Entries) != nm {
			t.Fatalf("%d leaves %d msrs", len(c.Leaves), len(m.Entries))
		}
		c2, m2 := EncodeCPUPolicy(c, m)
		if !bytes.Equal(c2, cpuid) || !bytes.Equal(m2, msr) && !(len(m2) == 0 && len(msr) == 0) {
			t.Fatal("round trip differs")
		}
	})
}
