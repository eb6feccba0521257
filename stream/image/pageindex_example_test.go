package image_test

import (
	"bytes"
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/xensr/xensr/stream/image"
)

func ExampleIndexPages() {
	// A checkpointed (Remus-style) libxl stream of three rounds.
	z, _ := os.ReadFile("../testdata/synthetic-pvh-checkpointed.libxl.zst")
	zr, _ := zstd.NewReader(nil)
	in, _ := zr.DecodeAll(z, nil)

	x, err := image.IndexPages(bytes.NewReader(in), int64(len(in)), image.Options{Checkpointed: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	perRound := map[int]int{}
	for ref := range x.Refs() {
		perRound[ref.Round]++
	}
	fmt.Printf("%d PFNs; final copies per round: %v\n", x.Len(), perRound)

	// The first page of the last round, read with one ReadAt.
	for ref := range x.Refs() {
		if ref.Round == 2 {
			page := make([]byte, 4096)
			x.ReadPage(ref.PFN, page)
			fmt.Printf("PFN %#x: %v, sent %d time(s), at offset %d\n", ref.PFN, ref.Type, ref.Copies, ref.Offset)
			break
		}
	}
	// Output:
	// 3072 PFNs; final copies per round: map[0:1024 1:1024 2:1024]
	// PFN 0x800: NOTAB, sent 1 time(s), at offset 8415888
}

func ExampleVerify() {
	z, _ := os.ReadFile("../testdata/guest1-pv.xl.zst")
	zr, _ := zstd.NewReader(nil)
	in, _ := zr.DecodeAll(z, nil)

	rep, err := image.Verify(bytes.NewReader(in), image.Options{})
	if err != nil {
		fmt.Println("invalid:", err)
		return
	}
	fmt.Printf("valid %s image of %q, %d libxc records\n", rep.DomainType, rep.Config.CInfo.Name, rep.Records["libxc"])
	fmt.Printf("vCPU0 at rip %#x\n", rep.VCPUs[0].IP())
	// Output:
	// valid x86 PV image of "guest1", 12 libxc records
	// vCPU0 at rip 0xffffffff81a442b5
}
