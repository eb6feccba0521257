package pack

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// benchImage is a full lab image (XENSR_IMAGES/guest1.save) or, without
// one, the PV fixture.
func benchImage(b *testing.B) []byte {
	if dir := os.Getenv("XENSR_IMAGES"); dir != "" {
		img, err := os.ReadFile(filepath.Join(dir, "guest1.save"))
		if err == nil {
			return img
		}
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

func benchPack(b *testing.B, level zstd.EncoderLevel) {
	img := benchImage(b)
	b.SetBytes(int64(len(img)))
	var n int64
	for i := 0; i < b.N; i++ {
		st, err := Pack(io.Discard, bytes.NewReader(img), Options{Level: level})
		if err != nil {
			b.Fatal(err)
		}
		n = st.OutBytes
	}
	b.ReportMetric(float64(n), "out-bytes")
}

func BenchmarkPack(b *testing.B)     { benchPack(b, 0) }
func BenchmarkPackBest(b *testing.B) { benchPack(b, zstd.SpeedBestCompression) }

func BenchmarkUnpack(b *testing.B) {
	img := benchImage(b)
	var packed bytes.Buffer
	if _, err := Pack(&packed, bytes.NewReader(img), Options{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(img)))
	for i := 0; i < b.N; i++ {
		if err := Unpack(io.Discard, bytes.NewReader(packed.Bytes())); err != nil {
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
