package libxc

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"
)

const (
	benchBatch   = 1024 // pages per PAGE_DATA record, as Xen writes them
	benchRecords = 256  // 256 records of 4 MiB: a 1 GiB stream
	benchRecSize = 8 + 8 + 8*benchBatch + benchBatch*PageSize
)

var (
	benchOnce   sync.Once
	benchStream []byte
)

// bigStream returns a 1 GiB HVM stream of full PAGE_DATA batches with
// non-zero page contents.
func bigStream(b *testing.B) []byte {
	benchOnce.Do(func() {
		var buf bytes.Buffer
		buf.Grow(benchRecords*benchRecSize + 4096)
		w := NewWriter(&buf)
		w.WriteHeader(NewImageHeader(3), DomainHeader{Type: DomainX86HVM, PageShift: PageShift})
		head := validHVM()[:3]
		for _, r := range head {
			w.WriteRecord(r)
		}
		p := &PageData{Entries: make([]uint64, benchBatch), Data: make([]byte, benchBatch*PageSize)}
		for i := range p.Data {
			p.Data[i] = byte(i*7 + i>>12)
		}
		for r := 0; r < benchRecords; r++ {
			for i := range p.Entries {
				p.Entries[i] = PFNEntry(uint64(r*benchBatch+i), PageNormal)
			}
			w.WriteRecord(p)
		}
		w.Close()
		benchStream = buf.Bytes()
	})
	return benchStream
}

// readFullBaseline reads the stream record by record with io.ReadFull into a
// reused buffer: a real memmove of every byte, the floor for any decoder.
func readFullBaseline(b []byte, buf []byte) {
	r := bytes.NewReader(b)
	hdr := buf[:40]
	io.ReadFull(r, hdr)
	for {
		if _, err := io.ReadFull(r, buf[:8]); err != nil {
			return
		}
		n := int(le.Uint32(buf[4:8]))
		n = (n + 7) &^ 7
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return
		}
	}
}

// decodeAll decodes and validates the stream strictly, touching every page.
func decodeAll(tb testing.TB, b []byte, rd *Reader) int {
	pages := 0
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return pages
		}
		if err != nil {
			tb.Fatal(err)
		}
		if p, ok := rec.(*PageData); ok {
			p.Pages(func(_ int, _ uint64, _ PageType, d []byte) bool {
				if d != nil {
					pages++
				}
				return true
			})
		}
	}
}

// BenchmarkBaselineReadFull is the baseline: io.ReadFull of the same 1 GiB.
func BenchmarkBaselineReadFull(b *testing.B) {
	s := bigStream(b)
	buf := make([]byte, benchRecSize+8)
	b.SetBytes(int64(len(s)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		readFullBaseline(s, buf)
	}
}

// BenchmarkDecode decodes and validates the 1 GiB stream. allocs/op over
// 256 PAGE_DATA records shows the per-record allocation (0 in steady state).
func BenchmarkDecode(b *testing.B) {
	s := bigStream(b)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := decodeAll(b, s, NewReader(bytes.NewReader(s))); n != benchRecords*benchBatch {
			b.Fatalf("%d pages", n)
		}
	}
}

// BenchmarkDecodeVsReadFull measures both in the same iterations and reports
// the throughput ratio decode/baseline (1.0 = as fast as a plain read).
func BenchmarkDecodeVsReadFull(b *testing.B) {
	s := bigStream(b)
	buf := make([]byte, benchRecSize+8)
	var base, dec time.Duration
	b.SetBytes(int64(len(s)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		readFullBaseline(s, buf)
		t1 := time.Now()
		decodeAll(b, s, NewReader(bytes.NewReader(s)))
		base, dec = base+t1.Sub(t0), dec+time.Since(t1)
	}
	b.ReportMetric(float64(base)/float64(dec), "ratio")
	b.ReportMetric(float64(len(s))*float64(b.N)/dec.Seconds()/1e6, "decode-MB/s")
	b.ReportMetric(float64(len(s))*float64(b.N)/base.Seconds()/1e6, "readfull-MB/s")
}

// TestSteadyStateAllocs checks that a PAGE_DATA record costs no allocation
// once the Reader's buffers have grown.
func TestSteadyStateAllocs(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteHeader(NewImageHeader(3), DomainHeader{Type: DomainX86HVM, PageShift: PageShift})
	for _, r := range validHVM()[:3] {
		w.WriteRecord(r)
	}
	p := &PageData{Entries: make([]uint64, 64), Data: make([]byte, 64*PageSize)}
	for i := 0; i < 200; i++ {
		w.WriteRecord(p)
	}
	rd := NewReader(bytes.NewReader(buf.Bytes()))
	for i := 0; i < 5; i++ {
		rd.Next()
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%v allocations per PAGE_DATA record", a)
	}
}
