package privcmd

import (
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

// TestIoctlNumbers checks the numbers against the values Linux's
// include/uapi/xen/privcmd.h gives on x86-64 (as computed by the C
// preprocessor: _IOC(_IOC_NONE, 'P', nr, sizeof(struct))).
func TestIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uint64
		want uint64
	}{
		{"HYPERCALL", uint64(IoctlHypercall), 0x305000},
		{"MMAP", uint64(IoctlMmap), 0x105002},
		{"MMAPBATCH", uint64(IoctlMmapBatch), 0x185003},
		{"MMAPBATCH_V2", uint64(IoctlMmapBatchV2), 0x205004},
		{"DM_OP", uint64(IoctlDMOp), 0x105005},
		{"RESTRICT", uint64(IoctlRestrict), 0x25006},
		{"MMAP_RESOURCE", uint64(IoctlMmapResource), 0x205007},
	} {
		if tc.got != tc.want {
			t.Errorf("IOCTL_PRIVCMD_%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// TestIoctlNumbersAgainstC compares with the C headers themselves.
func TestIoctlNumbersAgainstC(t *testing.T) {
	cheader.Compare(t, map[string]uint64{
		"IOCTL_PRIVCMD_HYPERCALL": uint64(IoctlHypercall), "IOCTL_PRIVCMD_MMAP": uint64(IoctlMmap),
		"IOCTL_PRIVCMD_MMAPBATCH": uint64(IoctlMmapBatch), "IOCTL_PRIVCMD_MMAPBATCH_V2": uint64(IoctlMmapBatchV2),
		"IOCTL_PRIVCMD_DM_OP": uint64(IoctlDMOp), "IOCTL_PRIVCMD_RESTRICT": uint64(IoctlRestrict),
		"IOCTL_PRIVCMD_MMAP_RESOURCE": uint64(IoctlMmapResource),
	})
}
