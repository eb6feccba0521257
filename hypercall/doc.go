// Package hypercall issues the Xen hypercalls a toolstack needs for save,
// restore and migration, with typed wrappers over Xen's domctl, sysctl,
// xen_version, memory_op, event-channel and hvm_op interfaces. Open probes
// the running Xen's interface versions and every wrapper encodes that
// release's layout (Releases: Xen 4.17 to 4.22; structure layouts checked
// against the C headers of 4.17 and 4.20 in tests).
//
// Every buffer the hypervisor reads or writes comes from a Pool. On Linux
// the pool maps pages of /dev/xen/hypercall, which the kernel pins: dom0's
// memory compaction or page migration can then never make a hypercall fail
// with EFAULT (the sporadic failures that blocked the Xen 4.11 release).
// Without that device the pool falls back to mlock()ed memory, and Call
// repeats EFAULT-failed hypercalls only when they are marked Safe (read-only
// queries); a hypercall that changes state returns its EFAULT, since it may
// already have had effects.
package hypercall
