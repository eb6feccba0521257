package grant

// Linux _IOC(_IOC_NONE, 'G', nr, size) numbers of include/uapi/xen/gntdev.h
// and gntalloc.h (checked against the C headers in tests).
func iocG(nr, size uintptr) uintptr { return size<<16 | 'G'<<8 | nr }

// The gntdev and gntalloc ioctls.
var (
	IoctlGntdevMapGrantRef      = iocG(0, 24) // struct ioctl_gntdev_map_grant_ref (one ref)
	IoctlGntdevUnmapGrantRef    = iocG(1, 16)
	IoctlGntdevSetUnmapNotify   = iocG(7, 16)
	IoctlGntdevGrantCopy        = iocG(8, 16)
	IoctlGntallocAllocGref      = iocG(5, 24) // struct ioctl_gntalloc_alloc_gref (one id)
	IoctlGntallocDeallocGref    = iocG(6, 16)
	IoctlGntallocSetUnmapNotify = iocG(7, 16)
)

// Unmap notification actions (UNMAP_NOTIFY_*).
const (
	NotifyClearByte = 0x1
	NotifySendEvent = 0x2
)
