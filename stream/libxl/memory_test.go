package libxl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/xensr/xensr/internal/memtest"
	"github.com/xensr/xensr/stream"
)

// allocated returns the bytes allocated while fn ran.
// allocated is what fn allocates.
var allocated = memtest.Allocated

// drain reads a stream of fake libxc blobs like decode but keeps nothing.
func drain(in []byte, opt Options) error {
	r := NewReaderOptions(bytes.NewReader(in), 0, opt)
	for {
		if r.InLibxc() {
			var hd [8]byte
			if _, err := io.ReadFull(r.Underlying(), hd[:]); err != nil {
				return err
			}
			n := int64(binary.LittleEndian.Uint32(hd[:4]))
			io.CopyN(io.Discard, r.Underlying(), n)
			r.Resume(r.Offset()+8+n, hd[4] != 0)
			continue
		}
		if _, err := r.Next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// TestMemoryBound checks the package doc's bound with forged sizes: a record
// at the cap costs less than twice the cap (the framing's buffer; the
// checks allocate nothing per string), one just past the cap fails before
// its body is allocated.
func TestMemoryBound(t *testing.T) {
	const limit = 8 << 20
	h := Header{Version: 2}
	// The worst xenstore data for an allocating parser: 3-byte pairs.
	data := bytes.Repeat([]byte("a\x00\x00"), (limit-8)/3)
	at := encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEmulatorXenstoreData, Body: emu(EmulatorQemuUpstream, 0, data)}, {Type: TypeEnd}})
	var err error
	if d := allocated(func() { err = drain(at, Options{MaxRecordSize: limit}) }); err != nil || d >= 2*limit+(1<<20) {
		t.Fatalf("record at the cap: %v, allocated %d MiB, want < %d MiB", err, d>>20, (2*limit+(1<<20))>>20)
	}
	past := encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEmulatorContext, Body: emu(EmulatorQemuUpstream, 0, make([]byte, limit-7))}, {Type: TypeEnd}})
	if d := allocated(func() { err = drain(past, Options{MaxRecordSize: limit}) }); !errors.Is(err, stream.ErrTooLarge) || d > 64<<10 {
		t.Fatalf("record past the cap: %v, allocated %d bytes", err, d)
	}
}
