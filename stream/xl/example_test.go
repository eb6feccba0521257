package xl_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream/xl"
)

func Example() {
	// Write a header the way `xl save` does, followed by the libxl stream.
	var file bytes.Buffer
	w := xl.NewWriter(&file)
	w.WriteHeader(&xl.Header{
		Mandatory: xl.FlagJSON | xl.FlagStreamV2,
		Config:    []byte(`{"c_info": {"name": "guest1"}}` + "\x00"),
	})
	w.Write([]byte("LibxlFmt")) // the libxl stream would follow here

	rd, err := xl.NewReader(&file)
	if err != nil {
		fmt.Println(err)
		return
	}
	rest, _ := io.ReadAll(rd)
	fmt.Printf("flags %#x, config %s\n", rd.Header.Mandatory, rd.Header.ConfigText())
	fmt.Printf("libxl stream at offset %d starts %q\n", rd.Offset(), rest)
	// Output:
	// flags 0x3, config {"c_info": {"name": "guest1"}}
	// libxl stream at offset 83 starts "LibxlFmt"
}
