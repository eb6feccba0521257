package main

import (
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// Example dumps the failed PV migration captured in the lab: the stream stops
// inside the libxc layer, and -verify says where.
func Example() {
	z, _ := os.ReadFile(filepath.Join("..", "..", "stream", "testdata", "guest1-pv-migrate-failed.xl.zst"))
	zr, _ := zstd.NewReader(nil)
	b, _ := zr.DecodeAll(z, nil)
	dir, _ := os.MkdirTemp("", "xsrdump")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "failed.xl")
	os.WriteFile(path, b, 0o644)

	run(config{format: "auto"}, path, os.Stdout, os.Stdout)
	// Output:
	// 0  xl     header: mandatory 0x3 optional 0x0, optional data 855 bytes, config 851 bytes (JSON)
	//        903  libxl  header: version 2, options 0x0 (little-endian)
	//        919  libxl  #0     LIBXC_CONTEXT, length 0
	//        927  libxc  image header: version 3, options 0x0
	//        951  libxc  domain header: x86 PV, page shift 12, Xen 4.17
	//        967  libxc  #0     X86_PV_INFO, length 8
	//        983  libxc  #1     X86_CPUID_POLICY, length 1224
	//       2215  libxc  #2     X86_MSR_POLICY, length 32
	//       2255  libxc  #3     STATIC_DATA_END, length 0
	//       2263  libxc  #4     X86_PV_P2M_FRAMES, length 520
	// xsrdump: invalid stream: libxc: at offset 2791, field END: stream ended before the END record: expected an END record, got end of input
}
