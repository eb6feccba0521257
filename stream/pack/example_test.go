package pack_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pack"
)

func Example() {
	// A bare libxc stream with a zero page and two copies of one page.
	var img bytes.Buffer
	w := libxc.NewWriter(&img)
	w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: libxc.PageShift})
	w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{Leaf: 1}}})
	w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{Index: 0xce}}})
	w.WriteRecord(&libxc.StaticDataEnd{})
	page := bytes.Repeat([]byte("guest data "), 373)[:libxc.PageSize]
	data := append(append(make([]byte, libxc.PageSize), page...), page...)
	w.WriteRecord(&libxc.PageData{Entries: []uint64{0x10, 0x11, 0x12}, Data: data})
	w.WriteRecord(&libxc.HVMContext{Data: []byte{1}})
	w.Close()

	var packed bytes.Buffer
	st, err := pack.Pack(&packed, bytes.NewReader(img.Bytes()), pack.Options{Image: image.Options{Format: image.FormatLibxc}})
	if err != nil {
		log.Fatal(err)
	}
	f, _ := pack.Open(bytes.NewReader(packed.Bytes()), int64(packed.Len()))
	p, _ := f.Page(0, 0x12)
	var back bytes.Buffer
	pack.Unpack(&back, bytes.NewReader(packed.Bytes()))
	fmt.Println(st.Pages, st.ZeroPages, st.DupPages, st.UniquePages, bytes.Equal(p, page), bytes.Equal(back.Bytes(), img.Bytes()))
	// Output: 3 1 1 1 true true
}
