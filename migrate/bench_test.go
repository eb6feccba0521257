package migrate

import (
	"bufio"
	"context"
	"io"
	"testing"
)

// BenchmarkSave measures the engine (batching, page types, PAGE_DATA
// framing, buffered output) on a 64 MiB fake guest against a baseline that
// only copies the same pages through the same buffered writer: the
// difference is the engine's overhead.
func BenchmarkSave(b *testing.B) {
	const pages = 16384
	f := newFakeDomain(pages)
	b.Run("baseline-copy-pages", func(b *testing.B) {
		b.SetBytes(int64(len(f.mem)) * PageSize)
		for i := 0; i < b.N; i++ {
			w := bufio.NewWriterSize(io.Discard, 1<<20)
			for p := uint64(0); p <= f.maxgpfn; p++ {
				if pg := f.mem[p]; pg != nil {
					w.Write(pg)
				}
			}
			w.Flush()
		}
	})
	b.Run("save-engine", func(b *testing.B) {
		b.SetBytes(int64(len(f.mem)) * PageSize)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f.clearShutdown()
			if _, err := NewSaver(f, SaveOptions{}).Save(context.Background(), io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
