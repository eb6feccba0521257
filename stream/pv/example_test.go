package pv_test

import (
	"bytes"
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

func Example() {
	// A trimmed real `xl save` image of a 64-bit PV guest from Xen 4.17.
	z, _ := os.ReadFile("../testdata/guest1-pv.xl.zst")
	zr, _ := zstd.NewReader(nil)
	in, _ := zr.DecodeAll(z, nil)

	var info libxc.X86PVInfo // X86_PV_INFO comes first and gives the guest width
	image.Walk(bytes.NewReader(in), image.Options{}, func(it *image.Item) error {
		switch r := it.Libxc.(type) {
		case *libxc.X86PVInfo:
			info = *r
		case *libxc.VCPUContext:
			if r.Kind != libxc.TypeX86PVVCPUBasic {
				return nil
			}
			c, err := pv.DecodeRecord(&info, r, it.Offset)
			if err != nil {
				return err
			}
			fmt.Printf("vCPU%d: %d-bit, online %v, rip %#x, rsp %#x, page table at PFN %#x\n",
				r.VCPU, c.Width()*8, c.Online(), c.IP(), c.SP(), c.CR3PFN())
			if c64, ok := c.(*pv.Context64); ok {
				fmt.Printf("kernel stack %#x, gs_base_kernel %#x, %d GDT entries\n",
					c64.KernelSP, c64.GSBaseKernel, c64.GDTEnts)
			}
		}
		return nil
	})
	// Output:
	// vCPU0: 64-bit, online true, rip 0xffffffff81a442b5, rsp 0xffffc90040083e30, page table at PFN 0x2a10
	// kernel stack 0xffffc90040084000, gs_base_kernel 0xffff888007a00000, 16 GDT entries
}
