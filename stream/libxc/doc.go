// Package libxc reads and writes the libxc migration stream, versions 2 and
// 3 (docs/specs/libxc-migration-stream.pandoc in the Xen tree): the image and
// domain headers and every record of the specification, with the optional
// bit and unknown types passed through as *Raw.
//
// A Reader hands out one typed record at a time. PAGE_DATA is zero-copy: its
// PFN entries and page contents alias the Reader's reused buffers, so a
// stream of any size is read in bounded memory with no allocation per record
// in steady state. By default the Reader validates as strictly as Xen's
// verify-stream-v2 and Xen's C restore together (record order,
// STATIC_DATA_END, reserved fields and padding, page types and PFNs against
// the P2M, record sizes); Relaxed turns that off for forensic reading.
// Errors are *stream.FormatError values naming the record index, byte
// offset, type and field, with expected versus actual where they apply.
//
// Strict mode refuses what Xen 4.17's restore (xg_sr_restore*.c) refuses,
// including: TOOLSTACK and CHECKPOINT_DIRTY_PFN_LIST records (no restore
// handler: "mandatory record not handled"); a PV stream whose P2M frame list
// at END leaves a frame out or names a PFN past max_pfn or one not last sent
// as a normal page; PV vCPU records (not empty) whose id is at or beyond the
// domain's vCPU count (Reader.VCPUs, or MaxPVVCPUs); an HVM stream without
// HVM_CONTEXT. It is stricter than Xen on purpose where Xen's acceptance
// depends on state a stream reader cannot see or that no Xen sender
// produces: reserved fields must be zero; X86_PV_P2M_FRAMES records may not
// leave a gap after the frames already covered; a P2M frame's PFN counts as
// sent only by PAGE_DATA after the record that named it (Xen writes the
// frame list once, before any page).
//
// Memory bound: a Reader holds the framing's record buffer (at most the
// record cap; less than twice the cap allocated while a record grows, see
// package stream), the decoded arrays of the largest record (PFN entries, P2M
// frames, HVM parameters, policy entries: at most the cap), and, for PV
// streams, the P2M frame list kept for the END check at 17 bytes per frame
// (at most 2.2 times the largest frame record, 136 MiB for a 2^32-PFN P2M; a
// few KiB for real guests). One record thus costs less than 5.2 times the cap
// in allocations. TestMemoryBound checks it with runtime.MemStats, at and
// just past the cap.
//
// A Writer encodes records with their padding; decoding a valid stream and
// writing every record back reproduces it byte for byte, checkpointed
// streams included.
package libxc
