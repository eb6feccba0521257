package grant

import (
	"testing"

	"github.com/xensr/xensr/internal/cheader"
)

func TestIoctlNumbersAgainstC(t *testing.T) {
	ours := map[string]uint64{
		"IOCTL_GNTDEV_MAP_GRANT_REF": uint64(IoctlGntdevMapGrantRef), "IOCTL_GNTDEV_UNMAP_GRANT_REF": uint64(IoctlGntdevUnmapGrantRef),
		"IOCTL_GNTDEV_SET_UNMAP_NOTIFY": uint64(IoctlGntdevSetUnmapNotify), "IOCTL_GNTDEV_GRANT_COPY": uint64(IoctlGntdevGrantCopy),
		"IOCTL_GNTALLOC_ALLOC_GREF": uint64(IoctlGntallocAllocGref), "IOCTL_GNTALLOC_DEALLOC_GREF": uint64(IoctlGntallocDeallocGref),
		"IOCTL_GNTALLOC_SET_UNMAP_NOTIFY": uint64(IoctlGntallocSetUnmapNotify),
		"UNMAP_NOTIFY_CLEAR_BYTE":         NotifyClearByte, "UNMAP_NOTIFY_SEND_EVENT": NotifySendEvent,
		"sizeof(struct ioctl_gntdev_grant_copy_segment)": 24, "GNTCOPY_source_gref": 1, "GNTCOPY_dest_gref": 2,
		"GTF_permit_access": TypePermitAccess, "GTF_transitive": TypeTransitive, "GTF_readonly": FlagReadonly,
		"GTF_reading": FlagReading, "GTF_writing": FlagWriting, "GTF_sub_page": FlagSubPage,
		"sizeof(grant_entry_v1_t)": EntrySizeV1, "sizeof(grant_entry_v2_t)": EntrySizeV2,
		"offsetof(grant_entry_v2_t, sub_page.page_off)": 4, "offsetof(grant_entry_v2_t, sub_page.frame)": 8,
		"offsetof(grant_entry_v2_t, full_page.frame)": 8, "offsetof(grant_entry_v2_t, transitive.gref)": 8,
		"GNTALLOC_FLAG_WRITABLE": 1,
	}
	cheader.Compare(t, ours)
}
