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
		got  uintptr
		want uintptr
	}{
		{"HYPERCALL", IoctlHypercall, 0x305000},
		{"MMAP", IoctlMmap, 0x105002},
		{"MMAPBATCH", IoctlMmapBatch, 0x185003},
		{"MMAPBATCH_V2", IoctlMmapBatchV2, 0x205004},
		{"DM_OP", IoctlDMOp, 0x105005},
		{"RESTRICT", IoctlRestrict, 0x25006},
		{"MMAP_RESOURCE", IoctlMmapResource, 0x205007},
	} {
		if tc.got != tc.want {
			t.Errorf("IOCTL_PRIVCMD_%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// TestIoctlNumbersAgainstC compares with the C headers themselves.
func TestIoctlNumbersAgainstC(t *testing.T) {
	body := ""
	ours := map[string]uintptr{
		"IOCTL_PRIVCMD_HYPERCALL": IoctlHypercall, "IOCTL_PRIVCMD_MMAP": IoctlMmap,
		"IOCTL_PRIVCMD_MMAPBATCH": IoctlMmapBatch, "IOCTL_PRIVCMD_MMAPBATCH_V2": IoctlMmapBatchV2,
		"IOCTL_PRIVCMD_DM_OP": IoctlDMOp, "IOCTL_PRIVCMD_RESTRICT": IoctlRestrict,
		"IOCTL_PRIVCMD_MMAP_RESOURCE": IoctlMmapResource,
	}
	for name := range ours {
		body += cheader.Print(name, name)
	}
	c := cheader.Run(t, body)
	for name, v := range ours {
		if uint64(v) != c[name] {
			t.Errorf("%s = %#x, C says %#x", name, v, c[name])
		}
	}
}
