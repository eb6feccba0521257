// Package migrate saves, restores and live-migrates Xen domains in pure Go,
// with no libxl, libxenguest or cgo: the domain side of save/restore.
//
// Save (a Saver) suspends a PVH or HVM-without-device-model guest through
// its xenstore control node, either at once or after live precopy rounds
// under log-dirty mode (the number of rounds set by a replaceable Policy),
// and writes an `xl save` image: the xl header, the libxl stream and the
// libxc stream v3 inside it. Commit destroys the saved domain; Abort
// resumes it, and every failure resumes it too. Migration speaks the
// sending half of `xl migrate`'s protocol around a save.
//
// A 64-bit PV domain (a Domain that also implements PVDomain, as XenDomain
// does) is saved the way libxenguest saves it: the M2P mapped from Xen,
// the guest's P2M found through its shared info, every page table
// rewritten from machine to pseudo-physical frames, the vCPUs' frames
// likewise. A live PV save needs log-dirty mode, which Xen may refuse for
// PV guests: then Save fails with ErrPVLogDirty before suspending.
// Restore builds a PV domain from such a stream through a PVBuilder,
// rewriting the frames the other way and pinning the page tables.
//
// Restore reads an `xl save` image, a bare libxl stream or a bare libxc
// stream and builds a PVH domain from it the way xl, libxl and
// libxenguest do (createdomain, the build steps, the memory, the CPU
// policy, HVM context and parameters, event channels, grant-table seeding,
// libxl's xenstore layout and userdata file, INTRODUCE), so that xl treats
// the result as one of its own. A failed restore leaves nothing behind.
// Receive is the receiving half of `xl migrate` around a Restore.
//
// Builder and Toolstack are what Restore asks of the hypervisor and of
// xenstore; Host provides both on Linux, tests use fakes.
//
// The package sits above the others on purpose: hypercall (typed
// hypercalls), privcmd (the Linux devices), xenstore (the store) and the
// stream packages (the file formats) stay independent of each other and
// usable alone; only this package, which has to drive all of them in the
// order a toolstack does, imports them together.
package migrate
