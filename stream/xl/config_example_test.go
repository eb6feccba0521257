package xl_test

import (
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/xensr/xensr/stream/xl"
)

func ExampleHeader_DomainConfig() {
	// A trimmed real `xl save` image of a PVH guest from Xen 4.17.
	f, _ := os.Open("../testdata/guest3-pvh.xl.zst")
	defer f.Close()
	zr, _ := zstd.NewReader(f)
	defer zr.Close()

	h, err := xl.ReadHeader(zr, xl.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := h.DomainConfig()
	if err != nil {
		fmt.Println(err)
		return
	}
	b := c.BInfo
	fmt.Printf("%s guest %q, uuid %s\n", c.CInfo.Type, c.CInfo.Name, c.CInfo.UUID)
	fmt.Printf("memory %d/%d KiB, %d vCPUs (online %v)\n", b.TargetMemKB, b.MaxMemKB, b.MaxVCPUs, b.AvailVCPUs)
	fmt.Printf("kernel %s, ramdisk %s, cmdline %q\n", b.KernelPath(), b.RamdiskPath(), b.CommandLine())
	fmt.Printf("%d disks, %d nics; fields kept unnamed in b_info: %d\n", len(c.Disks), len(c.NICs), len(b.Unknown))
	// Output:
	// pvh guest "guest3", uuid 30403c35-c2b0-4973-9f06-b6503ddf3f51
	// memory 131072/131072 KiB, 1 vCPUs (online [0])
	// kernel /lab/vmlinuz, ramdisk /lab/domU.cpio.gz, cmdline "console=hvc0 quiet loglevel=3"
	// 0 disks, 0 nics; fields kept unnamed in b_info: 4
}
