package hvm_test

import (
	"bytes"
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

func Example() {
	// A trimmed real `xl save` image of a PVH guest from Xen 4.17.
	z, _ := os.ReadFile("../testdata/guest3-pvh.xl.zst")
	zr, _ := zstd.NewReader(nil)
	in, _ := zr.DecodeAll(z, nil)

	image.Walk(bytes.NewReader(in), image.Options{}, func(it *image.Item) error {
		rec, ok := it.Libxc.(*libxc.HVMContext)
		if !ok {
			return nil
		}
		// Offsets in entries and errors count from the start of the file.
		c, err := hvm.DecodeOptions(rec.Data, hvm.Options{Offset: it.Offset + stream.HeaderSize})
		if err != nil {
			return err
		}
		for _, e := range c.Entries {
			fmt.Printf("%8d %-10s instance %d, %4d bytes\n", e.Offset, e.Typecode, e.Instance, e.Length)
		}
		cpu := c.CPU(0)
		fmt.Printf("vCPU0: cr0 %#x cr4 %#x efer %#x, LAPIC of Xen before 4.21: %v\n",
			cpu.CR0, cpu.CR4, cpu.MSREFER, c.Find(hvm.TypeLAPIC, 0).Short())
		out, _ := hvm.Encode(c)
		fmt.Println("re-encoded byte-identically:", bytes.Equal(out, rec.Data))
		return nil
	})
	// Output:
	// 12334769 HEADER     instance 0,   24 bytes
	// 12334801 CPU        instance 0, 1032 bytes
	// 12335841 LAPIC      instance 0,   24 bytes
	// 12335873 LAPIC_REGS instance 0, 1024 bytes
	// 12336905 PCI_IRQ    instance 0,   16 bytes
	// 12336929 ISA_IRQ    instance 0,    8 bytes
	// 12336945 PCI_LINK   instance 0,    8 bytes
	// 12336961 MTRR       instance 0,  240 bytes
	// 12337209 VMCE_VCPU  instance 0,   32 bytes
	// 12337249 TSC_ADJUST instance 0,    8 bytes
	// 12337265 END        instance 0,    0 bytes
	// vCPU0: cr0 0x80050033 cr4 0x6f0 efer 0xd01, LAPIC of Xen before 4.21: true
	// re-encoded byte-identically: true
}
