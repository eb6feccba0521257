package pack

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// benchImage is a full lab image (XENSR_IMAGES/guest1.save, or the file
// XENSR_BENCH_IMAGE names there) or, without one, the PV fixture.
func benchImage(b *testing.B) []byte {
	if dir := os.Getenv("XENSR_IMAGES"); dir != "" {
		name := os.Getenv("XENSR_BENCH_IMAGE")
		if name == "" {
			name = "guest1.save"
		}
		img, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		return img
	}
	c, err := os.ReadFile("../testdata/guest1-pv.xl.zst")
	if err != nil {
		b.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	img, err := dec.DecodeAll(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// The baselines, measured in the same run on the same bytes: zstd level 3
// (klauspost's SpeedDefault, the equivalent of `zstd -3`, all cores) and
// gzip -1 (compress/gzip BestSpeed). Each reports the output size.
func BenchmarkBaselineZstd3(b *testing.B) {
	img := benchImage(b)
	b.SetBytes(int64(len(img)))
	var n int
	for i := 0; i < b.N; i++ {
		var out bytes.Buffer
		w, _ := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedDefault))
		w.Write(img)
		w.Close()
		n = out.Len()
	}
	b.ReportMetric(float64(n), "out-bytes")
}

// benchCLI runs a compressor CLI over the benchmark image (from a file in
// the page cache, output counted through a pipe), the way an operator would
// run `zstd -3` or `gzip -1`.
func benchCLI(b *testing.B, name string, args ...string) {
	path, err := exec.LookPath(name)
	if err != nil {
		b.Skipf("SKIP: %s not installed, no CLI baseline (apt-get install %s)", name, name)
	}
	_, f := benchFile(b)
	var n int64
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(path, append(args, f)...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		n, _ = io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "out-bytes")
}

// BenchmarkBaselineZstdCLI is `zstd -3` with one worker per core.
func BenchmarkBaselineZstdCLI(b *testing.B) { benchCLI(b, "zstd", "-3", "-T0", "-q", "-c") }

// BenchmarkBaselineGzipCLI is `gzip -1`.
func BenchmarkBaselineGzipCLI(b *testing.B) { benchCLI(b, "gzip", "-1", "-c") }

// BenchmarkBaselineZstdCLIDecode is `zstd -d` of the `zstd -3` output.
func BenchmarkBaselineZstdCLIDecode(b *testing.B) {
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Skip("SKIP: zstd not installed, no CLI baseline")
	}
	img := benchImage(b)
	dir := b.TempDir()
	raw, comp := filepath.Join(dir, "image"), filepath.Join(dir, "image.zst")
	if err := os.WriteFile(raw, img, 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("zstd", "-3", "-T0", "-q", "-o", comp, raw).CombinedOutput(); err != nil {
		b.Fatal(err, string(out))
	}
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out, err := exec.Command("zstd", "-d", "-q", "-c", "-o", "/dev/null", comp).CombinedOutput(); err != nil {
			b.Fatal(err, string(out))
		}
	}
}

func BenchmarkBaselineGzip1(b *testing.B) {
	img := benchImage(b)
	b.SetBytes(int64(len(img)))
	var n int
	for i := 0; i < b.N; i++ {
		var out bytes.Buffer
		w, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
		w.Write(img)
		w.Close()
		n = out.Len()
	}
	b.ReportMetric(float64(n), "out-bytes")
}

// tempFile writes b to a file, so that Pack and Unpack read from the page
// cache as the CLI baselines do.
func tempFile(tb testing.TB, b []byte) string {
	f := filepath.Join(tb.TempDir(), "file")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return f
}

// benchFile writes the benchmark image to a file and starts the clock: each
// contender reads that file.
func benchFile(b *testing.B) (img []byte, path string) {
	img = benchImage(b)
	path = tempFile(b, img)
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	return img, path
}

func benchPack(b *testing.B, level Level) {
	_, path := benchFile(b)
	var n int64
	for i := 0; i < b.N; i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		st, err := Pack(io.Discard, f, Options{Level: level})
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		n = st.OutBytes
	}
	b.ReportMetric(float64(n), "out-bytes")
}

func BenchmarkPack(b *testing.B)     { benchPack(b, 0) }
func BenchmarkPackBest(b *testing.B) { benchPack(b, LevelBest) }

func BenchmarkUnpack(b *testing.B) {
	img := benchImage(b)
	var packed bytes.Buffer
	if _, err := Pack(&packed, bytes.NewReader(img), Options{}); err != nil {
		b.Fatal(err)
	}
	path := tempFile(b, packed.Bytes())
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		err = Unpack(io.Discard, f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBaselineZstd3Decode(b *testing.B) {
	img := benchImage(b)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	c := enc.EncodeAll(img, nil)
	dec, _ := zstd.NewReader(nil)
	b.SetBytes(int64(len(img)))
	for i := 0; i < b.N; i++ {
		dec.Reset(bytes.NewReader(c))
		io.Copy(io.Discard, dec)
	}
}
