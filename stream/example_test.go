package stream_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream"
)

func Example() {
	var buf bytes.Buffer
	w := stream.NewWriter(&buf, 0)
	w.WriteRecord(0x10, []byte("hello")) // padded to 8 bytes for us
	w.WriteRecord(0x00, nil)

	r := stream.NewReader(&buf, "demo", 0)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("record %d type %#x at offset %d: %q\n", rec.Index, rec.Type, rec.Offset, rec.Body)
	}
	// Output:
	// record 0 type 0x10 at offset 0: "hello"
	// record 1 type 0x0 at offset 16: ""
}
