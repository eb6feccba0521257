package libxl_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/xensr/xensr/stream/libxl"
)

func Example() {
	// A libxl stream as libxl writes it for an HVM guest, with a stand-in
	// for the inline libxc stream (a real one is written by a libxc Writer
	// to w.Libxc()).
	libxcStream := []byte("<libxc stream>\x00\x00")
	var buf bytes.Buffer
	w := libxl.NewWriter(&buf, 0)
	w.WriteHeader(libxl.Header{Version: libxl.Version})
	w.WriteRecord(libxl.TypeLibxcContext, nil)
	w.Libxc().Write(libxcStream)
	w.WriteEmulator(libxl.TypeEmulatorContext, libxl.Emulator{ID: libxl.EmulatorQemuUpstream, Data: []byte("QEVM")})
	w.Close() // END

	r := libxl.NewReader(&buf)
	for {
		if r.InLibxc() {
			// Here a libxc Reader would read from r.Underlying().
			io.ReadFull(r.Underlying(), make([]byte, len(libxcStream)))
			fmt.Printf("libxc stream at offset %d\n", r.Offset())
			r.Resume(r.Offset()+int64(len(libxcStream)), false)
			continue
		}
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("record %d %v at offset %d, %d bytes\n", rec.Index, rec.Type, rec.Offset, len(rec.Body))
	}
	// Output:
	// record 0 LIBXC_CONTEXT at offset 16, 0 bytes
	// libxc stream at offset 24
	// record 1 EMULATOR_CONTEXT at offset 40, 12 bytes
	// record 2 END at offset 64, 0 bytes
}
