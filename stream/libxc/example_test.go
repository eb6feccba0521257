package libxc_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/xensr/xensr/stream/libxc"
)

// Write a tiny PVH-style stream, then read it back record by record.
func Example() {
	var buf bytes.Buffer
	w := libxc.NewWriter(&buf)
	w.WriteHeader(libxc.NewImageHeader(3), libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: libxc.PageShift, XenMajor: 4, XenMinor: 17})
	w.WriteRecord(&libxc.X86CPUIDPolicy{Leaves: []libxc.CPUIDLeaf{{Leaf: 0, Subleaf: 0xffffffff, A: 0xd}}})
	w.WriteRecord(&libxc.X86MSRPolicy{Entries: []libxc.MSREntry{{Index: 0xce}}})
	w.WriteRecord(&libxc.StaticDataEnd{})
	w.WriteRecord(&libxc.PageData{
		Entries: []uint64{libxc.PFNEntry(0x10, libxc.PageNormal), libxc.PFNEntry(0x11, libxc.PageXTab)},
		Data:    make([]byte, libxc.PageSize),
	})
	w.WriteRecord(&libxc.HVMContext{Data: []byte{1, 2, 3}})
	w.Close() // writes END

	rd := libxc.NewReader(&buf)
	_, dom, err := rd.Header()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("domain:", dom.Type, "Xen", dom.XenMajor, dom.XenMinor)
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d @%d %v\n", rd.Current().Index, rd.Current().Offset, rec.Type())
		if p, ok := rec.(*libxc.PageData); ok {
			p.Pages(func(i int, pfn uint64, t libxc.PageType, data []byte) bool {
				fmt.Printf("  pfn %#x %v data=%d\n", pfn, t, len(data))
				return true
			})
		}
	}
	// Output:
	// domain: x86 HVM Xen 4 17
	// 0 @40 X86_CPUID_POLICY
	// 1 @72 X86_MSR_POLICY
	// 2 @96 STATIC_DATA_END
	// 3 @104 PAGE_DATA
	//   pfn 0x10 NOTAB data=4096
	//   pfn 0x11 XTAB data=0
	// 4 @4232 HVM_CONTEXT
	// 5 @4248 END
}
