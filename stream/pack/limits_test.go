package pack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// bigImage returns a bare HVM libxc stream holding rec between the static
// records and END.
func bigImage(t *testing.T, rec libxc.Record) []byte {
	t.Helper()
	var b bytes.Buffer
	w := newHVMWriter(&b)
	if err := w.WriteRecord(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(&libxc.HVMContext{Data: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestLargeRecords packs records whose bodies lie just under, at and just
// past each size limit a skeleton meets (the skeleton flush, the largest
// block, the record cap): everything a valid stream can hold round-trips,
// and a record past the record cap makes Pack fail (never a file that
// Unpack refuses).
func TestLargeRecords(t *testing.T) {
	const capSize = stream.DefaultMaxRecordSize
	sizes := []int{skelFlush - 8, skelFlush, skelFlush + 8, MaxBlock - 8, MaxBlock, MaxBlock + 8, capSize - 8, capSize, capSize + 8}
	if testing.Short() {
		sizes = sizes[:3]
	}
	for _, n := range sizes {
		for _, kind := range []string{"HVM_CONTEXT", "PAGE_DATA"} {
			t.Run(fmt.Sprintf("%s-%d", kind, n), func(t *testing.T) {
				var rec libxc.Record
				if kind == "HVM_CONTEXT" {
					data := make([]byte, n)
					for i := 0; i < n; i += 4093 {
						data[i] = byte(i) // not all zero, still cheap to compress
					}
					rec = &libxc.HVMContext{Data: data}
				} else {
					// A PFN list of no-data entries: count u32, reserved u32,
					// then 8 bytes an entry; body = 8 + 8*count.
					pd := &libxc.PageData{Entries: make([]uint64, (n-8)/8)}
					for i := range pd.Entries {
						pd.Entries[i] = libxc.PFNEntry(uint64(i), libxc.PageXTab)
					}
					rec = pd
				}
				img := bigImage(t, rec)
				var packed bytes.Buffer
				_, perr := Pack(&packed, bytes.NewReader(img), Options{})
				if n > capSize {
					if !errors.Is(perr, stream.ErrTooLarge) {
						t.Fatalf("record of %d bytes past the cap: Pack returned %v, want ErrTooLarge", n, perr)
					}
					return
				}
				if perr != nil {
					t.Fatalf("Pack: %v", perr)
				}
				var out bytes.Buffer
				if err := Unpack(&out, bytes.NewReader(packed.Bytes())); err != nil {
					t.Fatalf("Pack succeeded but Unpack fails: %v", err)
				}
				if !bytes.Equal(out.Bytes(), img) {
					t.Fatalf("round trip differs: %d bytes, want %d", out.Len(), len(img))
				}
				f, err := Open(bytes.NewReader(packed.Bytes()), int64(packed.Len()))
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				var np bytes.Buffer
				if err := f.NonPage(&np); err != nil {
					t.Fatalf("NonPage: %v", err)
				}
				if np.Len() != len(img) { // no page has data
					t.Fatalf("NonPage wrote %d bytes, want %d", np.Len(), len(img))
				}
			})
		}
	}
}

// TestIndexLimit: an image whose index would not fit in a packed file
// makes Pack fail with ErrLimit as soon as the index outgrows the limit,
// without reading the rest of the image; an index exactly at the limit is
// packed. (The limit, MaxBlock, is lowered here: reaching 64 MiB takes
// millions of pages.)
func TestIndexLimit(t *testing.T) {
	img := fixtures(t)["guest1-pv.xl.zst"]
	var packed bytes.Buffer
	if _, err := Pack(&packed, bytes.NewReader(img), Options{}); err != nil {
		t.Fatal(err)
	}
	pf, err := Open(bytes.NewReader(packed.Bytes()), int64(packed.Len()))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := readHeader(bytes.NewReader(packed.Bytes()[pf.idxOff:]), pf.idxOff)
	if err != nil {
		t.Fatal(err)
	}
	size := int(ib.rawLen)
	defer func(m int) { maxIndex = m }(maxIndex)
	maxIndex = size
	if _, err := Pack(io.Discard, bytes.NewReader(img), Options{}); err != nil {
		t.Fatalf("index of %d bytes at the limit: %v", size, err)
	}
	maxIndex = size - 1
	st, err := Pack(io.Discard, bytes.NewReader(img), Options{})
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("index of %d bytes past the limit %d: %v", size, maxIndex, err)
	}
	maxIndex = size / 2
	st, err = Pack(io.Discard, bytes.NewReader(img), Options{})
	if !errors.Is(err, ErrLimit) || st.InBytes >= int64(len(img)) {
		t.Fatalf("index limit at half: %v after %d of %d image bytes, want ErrLimit before the end", err, st.InBytes, len(img))
	}
	t.Logf("index %d bytes; limit %d: %v after %d of %d image bytes", size, maxIndex, err, st.InBytes, len(img))
}
