package liveupdate_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream/liveupdate"
)

func Example() {
	ram := make([]byte, 64*liveupdate.PageSize) // a memory image
	bootmem := liveupdate.Region{Start: 4 * liveupdate.PageSize, Len: liveupdate.PageSize}
	data := bytes.Repeat([]byte("migration stream bytes "), 300) // 6900 bytes: two pages
	liveupdate.Layout(ram, bootmem, 10*liveupdate.PageSize, []uint64{40, 21}, data)

	s, err := liveupdate.Open(bytes.NewReader(ram), uint64(len(ram)), bootmem)
	if err != nil {
		fmt.Println(err)
		return
	}
	got, _ := io.ReadAll(s.Reader())
	fmt.Println(s.Breadcrumb.NrPages, s.MFNs, len(got), bytes.Equal(got, data))
	// Output: 2 [40 21] 6900 true
}
