package xl

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/internal/memtest"
	"github.com/xensr/xensr/stream"
)

// allocated is what fn allocates.
var allocated = memtest.Allocated

// TestMemoryBound checks the package doc's bound with forged sizes: optional
// data at the cap costs less than twice the cap, a JSON configuration at the
// cap less than six times (decoding included), a length just past the cap
// fails before allocating, and a lying length on a short input costs about
// what arrived.
func TestMemoryBound(t *testing.T) {
	const limit = 4 << 20
	opt := Options{MaxOptionalData: limit}
	text, _ := (&Header{Mandatory: FlagStreamV2, Config: bytes.Repeat([]byte("x"), limit-4)}).MarshalBinary()
	var err error
	d := allocated(func() { _, err = ReadHeader(bytes.NewReader(text), opt) })
	t.Logf("text config at a 4 MiB cap: %.1f MiB", float64(d)/(1<<20))
	if err != nil || d >= 2*limit+(64<<10) {
		t.Errorf("text config at the cap: %v, allocated %d bytes", err, d)
	}
	cfg := append([]byte(`{"c_info":{"type":"pv"},"x":"`), bytes.Repeat([]byte("y"), limit-4-40)...)
	cfg = append(cfg, `"}`...)
	js, _ := (&Header{Mandatory: FlagJSON | FlagStreamV2, Config: cfg}).MarshalBinary()
	d = allocated(func() { _, err = ReadHeader(bytes.NewReader(js), opt) })
	t.Logf("JSON config at a 4 MiB cap: %.1f MiB", float64(d)/(1<<20))
	if err != nil || d >= 6*limit {
		t.Errorf("JSON config at the cap: %v, allocated %d bytes", err, d)
	}
	past, _ := (&Header{Mandatory: FlagStreamV2, Config: make([]byte, limit-3)}).MarshalBinary()
	if d := allocated(func() { _, err = ReadHeader(bytes.NewReader(past), opt) }); !errors.Is(err, stream.ErrTooLarge) || d > 64<<10 {
		t.Errorf("past the cap: %v, allocated %d bytes", err, d)
	}
	short := text[:HeaderSize+1000]
	if d := allocated(func() { _, err = ReadHeader(bytes.NewReader(short), opt) }); !errors.Is(err, stream.ErrTruncated) || d > 256<<10 {
		t.Errorf("lying length: %v, allocated %d bytes", err, d)
	}
}
