// Package privcmd is the thin Linux layer over the Xen privcmd driver:
// /dev/xen/privcmd (hypercalls, foreign mappings, device-model operations)
// and /dev/xen/hypercall (hypercall buffers in pages the kernel pins). One
// function per ioctl, structures as the kernel lays them out, no policy:
// pooling, retries and typed hypercalls live in package hypercall.
//
// The ioctl numbers and structure sizes are portable and tested on every
// OS; the device code builds on Linux only.
package privcmd

// Linux _IOC encoding (asm-generic/ioctl.h): dir<<30 | size<<16 | type<<8 | nr.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

// Structure sizes of include/uapi/xen/privcmd.h on 64-bit Linux.
const (
	sizeHypercall    = 48 // struct privcmd_hypercall { __u64 op, arg[5]; }
	sizeMmap         = 16 // struct privcmd_mmap { int num; domid_t dom; ptr entry; }
	sizeMmapBatch    = 24 // struct privcmd_mmapbatch
	sizeMmapBatchV2  = 32 // struct privcmd_mmapbatch_v2 { u32 num; u16 dom; u64 addr; ptr arr, err; }
	sizeDMOp         = 16 // struct privcmd_dm_op { u16 dom, num; ptr ubufs; }
	sizeDomid        = 2  // domid_t
	sizeMmapResource = 32 // struct privcmd_mmap_resource { u16 dom; u32 type, id, idx; u64 num, addr; }
)

// The privcmd ioctls.
var (
	IoctlHypercall    = ioc(iocNone, 'P', 0, sizeHypercall)
	IoctlMmap         = ioc(iocNone, 'P', 2, sizeMmap)
	IoctlMmapBatch    = ioc(iocNone, 'P', 3, sizeMmapBatch)
	IoctlMmapBatchV2  = ioc(iocNone, 'P', 4, sizeMmapBatchV2)
	IoctlDMOp         = ioc(iocNone, 'P', 5, sizeDMOp)
	IoctlRestrict     = ioc(iocNone, 'P', 6, sizeDomid)
	IoctlMmapResource = ioc(iocNone, 'P', 7, sizeMmapResource)
)

// PageSize is the page size of x86 Xen guests and of dom0's mappings.
const PageSize = 4096

// DomidSelf is DOMID_SELF.
const DomidSelf = 0x7ff0

// Hypercall numbers (xen/include/public/xen.h) that the SDK uses.
const (
	HypercallMemoryOp   = 12
	HypercallXenVersion = 17
	HypercallSysctl     = 35
	HypercallDomctl     = 36
	HypercallHVMOp      = 34
)
