package hvm

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode, strict and relaxed. No input
// may panic; whatever either mode accepts must re-encode to the same bytes.
// The seeds are the record table and testdata/fuzz/FuzzDecode, which holds
// the HVM context of the real PVH fixture.
func FuzzDecode(f *testing.F) {
	for _, tc := range recordTable {
		f.Add(ctxOf(entry(tc.tc, 0, tc.body)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, relaxed := range []bool{false, true} {
			c, err := DecodeOptions(b, Options{Relaxed: relaxed})
			if err != nil {
				continue
			}
			for _, e := range c.Entries {
				_ = e.Typecode.String()
				_ = e.Short()
			}
			out, err := Encode(c)
			if err != nil {
				t.Fatalf("relaxed=%v: decoded context does not encode: %v", relaxed, err)
			}
			if !bytes.Equal(out, b) {
				t.Fatalf("relaxed=%v: re-encoding differs", relaxed)
			}
		}
	})
}
