package libxc

import (
	"bytes"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the Reader, strict and relaxed. No
// input may panic or allocate beyond the cap, and whatever the strict
// Reader accepts whole must re-encode to the same bytes.
func FuzzReader(f *testing.F) {
	f.Add(encode(f, 3, DomainX86PV, validPV()...))
	f.Add(encode(f, 3, DomainX86HVM, validHVM()...))
	f.Add(encode(f, 2, DomainX86HVM, validHVM()[3:]...))
	for _, tc := range recordTable {
		f.Add(encode(f, 3, DomainX86HVM, tc.sample()))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, relaxed := range []bool{false, true} {
			rd := NewReader(bytes.NewReader(b))
			rd.Relaxed = relaxed
			rd.Checkpointed = true
			rd.SetMaxRecordSize(1 << 20)
			for i := 0; i < 1000; i++ {
				rec, err := rd.Next()
				if err != nil {
					break
				}
				if p, ok := rec.(*PageData); ok {
					p.Pages(func(int, uint64, PageType, []byte) bool { return true })
				}
				_ = rec.Type().String()
			}
		}
		out, n, ok := reencode(b)
		if ok && !bytes.Equal(out, b[:n]) {
			t.Fatalf("strictly valid stream re-encodes differently")
		}
	})
}

// reencode decodes b strictly and re-encodes it; ok is false when b is not
// a valid stream.
func reencode(b []byte) (out []byte, n int64, ok bool) {
	rd := NewReader(bytes.NewReader(b))
	rd.Checkpointed = true
	img, dom, err := rd.Header()
	if err != nil {
		return nil, 0, false
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteHeader(img, dom)
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return buf.Bytes(), rd.Offset(), true
		}
		if err != nil {
			return nil, 0, false
		}
		w.WriteRecord(rec)
	}
}
