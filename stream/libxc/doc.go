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
// offset, type and field.
//
// A Writer encodes records with their padding; decoding a valid stream and
// writing every record back reproduces it byte for byte, checkpointed
// streams included.
package libxc
