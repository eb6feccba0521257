package xl

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/xensr/xensr/stream"
)

func sample() *Header {
	return &Header{
		Mandatory: FlagJSON | FlagStreamV2,
		Config:    []byte("{\n    \"c_info\": {\"type\": \"pv\", \"name\": \"guest1\"}\n}\n\x00"),
	}
}

func TestRoundTrip(t *testing.T) {
	for _, h := range []*Header{
		sample(),
		{Mandatory: FlagStreamV2}, // no optional data
		{Mandatory: FlagStreamV2, Config: []byte{}},                                   // zero-length config
		{Mandatory: FlagStreamV2, Config: []byte("x=1\n\x00"), Extra: []byte("tail")}, // unknown tail
		{BigEndian: true, Mandatory: FlagStreamV2, Optional: 7, Config: []byte("a")},
	} {
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != h.Size() {
			t.Errorf("Size %d, encoded %d", h.Size(), len(enc))
		}
		payload := []byte("LibxlFmt...")
		// xl refuses big-endian headers; relaxed reading keeps them.
		rd, err := NewReaderOptions(io.MultiReader(bytes.NewReader(enc), bytes.NewReader(payload)), Options{Relaxed: h.BigEndian})
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if d := cmp.Diff(*h, rd.Header); d != "" {
			t.Errorf("header mismatch (-want +got):\n%s", d)
		}
		if rd.Offset() != int64(len(enc)) {
			t.Errorf("Offset %d, want %d", rd.Offset(), len(enc))
		}
		rest, _ := io.ReadAll(rd)
		if !bytes.Equal(rest, payload) {
			t.Errorf("payload %q, want %q (reader read ahead?)", rest, payload)
		}
		var out bytes.Buffer
		w := NewWriter(&out)
		if err := w.WriteHeader(&rd.Header); err != nil {
			t.Fatal(err)
		}
		w.Write(rest)
		if want := append(enc, payload...); !bytes.Equal(out.Bytes(), want) {
			t.Errorf("re-encoding differs:\n got %q\nwant %q", out.Bytes(), want)
		}
	}
}

func TestLittleEndianLayout(t *testing.T) {
	enc, _ := sample().MarshalBinary()
	// Byte-order marker 0x01020304 in little-endian, flags 3, optional 0.
	want := []byte{4, 3, 2, 1, 3, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(enc[32:44], want) {
		t.Errorf("fixed fields % x, want % x", enc[32:44], want)
	}
	if got, want := int(enc[44])|int(enc[45])<<8, 4+len(sample().Config); got != want {
		t.Errorf("optional_data_len %d, want %d", got, want)
	}
}

func TestErrors(t *testing.T) {
	good, _ := sample().MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	le := func(b []byte, off int, v uint32) []byte {
		b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		return b
	}
	cases := []struct {
		name  string
		in    []byte
		field string
		err   error
		off   int64
	}{
		{"empty", nil, "magic", ErrMagic, 0},
		{"not xl", []byte("LibxlFmt\x00\x00\x00\x02"), "magic", ErrMagic, 0},
		{"magic prefix only", good[:20], "header", stream.ErrTruncated, 0},
		{"bad byte order", mut(func(b []byte) []byte { return le(b, 32, 0x11223344) }), "byteorder", stream.ErrValue, 32},
		{"unknown mandatory", mut(func(b []byte) []byte { return le(b, 36, 0x13) }), "mandatory_flags", nil, 36},
		{"legacy", mut(func(b []byte) []byte { return le(b, 36, FlagJSON) }), "mandatory_flags", nil, 36},
		{"huge optional", mut(func(b []byte) []byte { return le(b, 44, 0xfffffff0) }), "optional_data_len", stream.ErrTooLarge, 44},
		{"short optional", good[:len(good)-3], "optional_data", stream.ErrTruncated, HeaderSize},
		{"optional < 4", mut(func(b []byte) []byte { return le(b, 44, 2) }), "optional_data", stream.ErrLength, HeaderSize},
		{"config_len > optional", mut(func(b []byte) []byte { return le(b, HeaderSize, 0x1000) }), "config_len", stream.ErrLength, HeaderSize},
	}
	for _, c := range cases {
		_, err := NewReader(bytes.NewReader(c.in))
		var fe *stream.FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: err %v, want *stream.FormatError", c.name, err)
			continue
		}
		if fe.Field != c.field || fe.Offset != c.off || fe.Layer != Layer || fe.Index != -1 {
			t.Errorf("%s: got %+v, want field %q offset %d", c.name, fe, c.field, c.off)
		}
		if c.err != nil && !errors.Is(err, c.err) {
			t.Errorf("%s: %v is not %v", c.name, err, c.err)
		}
	}
	// Relaxed accepts the flags xl would refuse.
	for _, flags := range []uint32{0x13, FlagJSON} {
		in := mut(func(b []byte) []byte { return le(b, 36, flags) })
		rd, err := NewReaderOptions(bytes.NewReader(in), Options{Relaxed: true})
		if err != nil || rd.Header.Mandatory != flags {
			t.Errorf("relaxed flags %#x: %v", flags, err)
		}
	}
}

func TestWriterOrder(t *testing.T) {
	w := NewWriter(io.Discard)
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write before WriteHeader succeeded")
	}
	if err := w.WriteHeader(sample()); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(sample()); err == nil {
		t.Error("second WriteHeader succeeded")
	}
}

func genHeader(t *rapid.T) *Header {
	h := &Header{
		BigEndian: rapid.Bool().Draw(t, "be"),
		Mandatory: FlagStreamV2 | rapid.Uint32Range(0, 1).Draw(t, "json"),
		Optional:  rapid.Uint32().Draw(t, "optional"),
	}
	switch rapid.IntRange(0, 2).Draw(t, "shape") {
	case 1:
		h.Config = rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "config")
		if h.Config == nil {
			h.Config = []byte{}
		}
	case 2:
		h.Config = rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "config")
		if h.Config == nil {
			h.Config = []byte{}
		}
		h.Extra = rapid.SliceOfN(rapid.Byte(), 1, 50).Draw(t, "extra")
	}
	return h
}

func TestRapidRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHeader(t)
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// Random configs are not JSON and half the headers big-endian:
		// relaxed reading round-trips them all.
		got, err := ReadHeader(bytes.NewReader(enc), Options{Relaxed: true})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(h, got); d != "" {
			t.Fatalf("mismatch:\n%s", d)
		}
		enc2, _ := got.MarshalBinary()
		if !bytes.Equal(enc, enc2) {
			t.Fatal("re-encoding differs")
		}
	})
}

func FuzzReadHeader(f *testing.F) {
	for _, h := range []*Header{sample(), {Mandatory: FlagStreamV2}, {BigEndian: true, Mandatory: 2, Config: []byte("c"), Extra: []byte("e")}} {
		b, _ := h.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := ReadHeader(bytes.NewReader(in), Options{MaxOptionalData: 1 << 16})
		if err != nil {
			var fe *stream.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FormatError", err)
			}
			return
		}
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, in[:len(enc)]) {
			t.Fatalf("re-encoding differs from input prefix")
		}
	})
}

// TestXLRestoreRules covers the headers of issue 14 item 3 that xl 4.17
// (xl_vmcontrol.c create_domain) refuses and strict mode once accepted: a
// big-endian header ("File has wrong byte order") and, with FlagJSON, a
// configuration libxl's JSON parser cannot take.
func TestXLRestoreRules(t *testing.T) {
	cases := []struct {
		name  string
		h     *Header
		field string
	}{
		{"big endian", &Header{BigEndian: true, Mandatory: FlagStreamV2, Config: []byte("a")}, "byteorder"},
		{"config not JSON", &Header{Mandatory: FlagJSON | FlagStreamV2, Config: []byte("name = \"guest1\"\n\x00")}, "config"},
		{"config truncated JSON", &Header{Mandatory: FlagJSON | FlagStreamV2, Config: []byte("{\"c_info\": {\x00")}, "config"},
	}
	for _, c := range cases {
		enc, err := c.h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ReadHeader(bytes.NewReader(enc), Options{})
		var fe *stream.FormatError
		if !errors.As(err, &fe) || !errors.Is(err, stream.ErrValue) || fe.Field != c.field {
			t.Errorf("%s: got %v, want ErrValue in field %s", c.name, err, c.field)
		}
		if _, err := ReadHeader(bytes.NewReader(enc), Options{Relaxed: true}); err != nil {
			t.Errorf("%s: relaxed: %v", c.name, err)
		}
	}
	// Text configurations without FlagJSON stay accepted (xl parses them
	// as xl.cfg text).
	enc, _ := (&Header{Mandatory: FlagStreamV2, Config: []byte("name = \"guest1\"\n\x00")}).MarshalBinary()
	if _, err := ReadHeader(bytes.NewReader(enc), Options{}); err != nil {
		t.Errorf("text config: %v", err)
	}
}

// After a failed write the xl Writer returns that error and writes nothing.
func TestWriterStickyError(t *testing.T) {
	f := &failingWriter{n: 10}
	w := NewWriter(f)
	if err := w.WriteHeader(sample()); err == nil {
		t.Fatal("WriteHeader into a full sink succeeded")
	}
	f.n = 1 << 20
	if n, err := w.Write([]byte("LibxlFmt")); err == nil || n != 0 || f.wrote != 10 {
		t.Fatalf("Write after a failure: %d, %v (sink holds %d bytes)", n, err, f.wrote)
	}
}

type failingWriter struct{ n, wrote int }

func (f *failingWriter) Write(p []byte) (int, error) {
	k := min(len(p), f.n)
	f.n -= k
	f.wrote += k
	if k < len(p) {
		return k, errors.New("disk full")
	}
	return k, nil
}
