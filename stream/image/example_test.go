package image_test

import (
	"bytes"
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/xensr/xensr/stream/image"
)

func Example() {
	// A trimmed real `xl save` image of a PVH guest from Xen 4.17.
	z, _ := os.ReadFile("../testdata/guest3-pvh.xl.zst")
	zr, _ := zstd.NewReader(nil)
	in, _ := zr.DecodeAll(z, nil)

	headers := 0
	sum, err := image.Walk(bytes.NewReader(in), image.Options{}, func(it *image.Item) error {
		if it.Kind == image.KindHeader {
			fmt.Printf("%6d %-5s %s\n", it.Offset, it.Layer, it.Name)
			headers++
		}
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s guest, Xen %s, libxc v%d; %d libxl and %d libxc records\n",
		sum.DomainType, sum.XenVersion, sum.LibxcVersion, sum.Records["libxl"], sum.Records["libxc"])

	var out bytes.Buffer
	image.Rewrite(&out, bytes.NewReader(in), image.Options{})
	fmt.Println("re-encoded byte-identically:", bytes.Equal(out.Bytes(), in))
	// Output:
	//      0 xl    xl header
	//    905 libxl libxl header
	//    929 libxc libxc image header
	//    953 libxc libxc domain header
	// x86 HVM guest, Xen 4.17, libxc v3; 2 libxl and 995 libxc records
	// re-encoded byte-identically: true
}
