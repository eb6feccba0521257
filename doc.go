// Package xensr is a Go SDK of small, composable packages for Xen
// save/restore and migration. Toolstack authors import the packages below to
// build their own save, restore, migrate, inspect and live-update tools
// without linking libxenguest or libxl through cgo.
//
// The package map:
//
//   - stream: the migration v2 record framing shared by the layers, and the
//     FormatError that names where a stream went wrong.
//   - stream/xl: the xl save-file header that `xl save` writes first.
//   - stream/libxl: the libxl migration stream (v2).
//   - stream/libxc: the libxc migration stream (v2 and v3) and its records.
//   - stream/image: detect the outermost layer and walk a whole image.
//   - stream/pack: compact, deduplicated, randomly accessible images.
//   - stream/liveupdate: the Live Update breadcrumb and data-stream layout.
//   - privcmd: the thin Linux layer over /dev/xen/privcmd and /dev/xen/hypercall.
//   - hypercall: pinned hypercall buffers and typed hypercalls.
//   - xenstore: a xenstore client over the unix socket or /dev/xen/xenbus.
//   - grant: grant-map tracking for backend quiescence, and grant-table codecs.
//   - examples: small programs that assemble the packages into tools.
//
// Code that needs real Xen runs in the project's lab (scripts/lab.sh and
// internal/xenlab), which boots Xen 4.17 under QEMU and runs the tests named
// TestLab* inside dom0; internal/labtest is the contract those tests follow.
package xensr
