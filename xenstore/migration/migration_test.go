package migration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/xensr/xensr/stream"
)

// cStream builds, byte by byte and independently of the Writer, a version 1
// little-endian stream laid out the way C xenstored 4.17 writes one: every
// record's length counts its padding.
type cStream struct{ b []byte }

func newCStream(version uint32) *cStream {
	s := &cStream{b: []byte("xenstore")}
	s.b = binary.BigEndian.AppendUint32(s.b, version)
	s.b = binary.BigEndian.AppendUint32(s.b, 0)
	return s
}

func (s *cStream) rec(t uint32, body ...[]byte) *cStream {
	var all []byte
	for _, p := range body {
		all = append(all, p...)
	}
	for len(all)%8 != 0 {
		all = append(all, 0)
	}
	s.b = binary.LittleEndian.AppendUint32(s.b, t)
	s.b = binary.LittleEndian.AppendUint32(s.b, uint32(len(all)))
	s.b = append(s.b, all...)
	return s
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// sample is a stream like the one C xenstored 4.17 writes during a live
// update with one socket client holding a watch, dom1's ring, and a few
// nodes.
func sample() []byte {
	s := newCStream(1)
	s.rec(1, le32(5), le32(7))                                                        // GLOBAL: socket fd 5, evtchn fd 7
	s.rec(2, le32(1), le16(1), le16(0), le32(12), le32(0), le16(0), le16(0), le32(0)) // socket conn, fd 12
	s.rec(3, le32(1), le16(6), le16(8), []byte("/test\x00"), []byte("xensr-1\x00"))
	s.rec(2, le32(2), le16(0), le16(0), le16(1), le16(DomidInvalid), le32(3), le16(0), le16(0), le32(3), []byte("OK\x00"))
	s.rec(5, le32(0), le32(0), le16(15), le16(0), le16(0), le16(1), []byte{'n', 0}, le16(0), []byte("@releaseDomain\x00"))
	s.rec(5, le32(0), le32(0), le16(2), le16(0), le16(0), le16(1), []byte{'n', 0}, le16(0), []byte("/\x00"))
	s.rec(5, le32(0), le32(0), le16(6), le16(3), le16(0), le16(2), []byte{'b', 0}, le16(0), []byte{'r', 1}, le16(1), []byte("/test\x00"), []byte("a\x00b"))
	s.rec(0)
	return s.b
}

func TestDecodeSample(t *testing.T) {
	in := sample()
	st, err := ReadState(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Body{
		&Global{SocketFD: 5, EvtchnFD: 7},
		&Connection{ID: 1, Kind: ConnSocket, SocketFD: 12},
		&Watch{ConnID: 1, Path: "/test", Token: "xensr-1"},
		&Connection{ID: 2, Kind: ConnRing, DomID: 1, TargetID: DomidInvalid, Evtchn: 3, Out: []byte("OK\x00")},
		&Node{Perms: []Perm{{Access: 'n'}}, Path: "@releaseDomain"},
		&Node{Perms: []Perm{{Access: 'n'}}, Path: "/"},
		&Node{Perms: []Perm{{Access: 'b'}, {Access: 'r', Flags: PermStale, DomID: 1}}, Path: "/test", Value: []byte("a\x00b")},
		&End{},
	}
	var got []Body
	for i, r := range st.Records {
		got = append(got, r.Body)
		if r.Index != i {
			t.Errorf("record %d has Index %d", i, r.Index)
		}
	}
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("decoded (-want +got):\n%s", d)
	}
	// Lengths counting the padding are remembered where they differ.
	if !st.Records[2].LenPadded || st.Records[0].LenPadded {
		t.Errorf("LenPadded: watch %v, global %v", st.Records[2].LenPadded, st.Records[0].LenPadded)
	}
	if st.Records[6].Offset != 16+16+32+32+40+48+32 {
		t.Errorf("node offset %d", st.Records[6].Offset)
	}
	out, err := st.Bytes()
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("re-encoded differs (%v):\n%x\n%x", err, in, out)
	}
	if got := st.Records[6].Body.(*Node).Perms[1].String(); got != "r1!" {
		t.Errorf("perm string %q", got)
	}
}

// TestDesignLengths: a stream whose lengths are exact, as the design has
// it, also round-trips byte for byte, in both byte orders.
func TestDesignLengths(t *testing.T) {
	for _, flags := range []uint32{0, FlagBigEndian} {
		st := &State{Header: Header{Version: 2, Flags: flags}, Records: []Record{
			{Body: &GlobalQuota{Domain: []Quota{{"nodes", 1000}, {"watches", 128}}, Global: []Quota{{"memory", 0}}}},
			{Body: &Domain{DomID: 3, Features: 1, Quotas: []Quota{{"nodes", 2000}}}},
			{Body: &Connection{ID: 9, Kind: ConnRing, DomID: 3, TargetID: 0, Evtchn: 17, In: []byte{1, 2, 3}, Out: []byte("xyz"), RespLen: 2, HasUniqueID: true, UniqueID: 0x1122334455667788}},
			{Body: &Watch{ConnID: 9, Path: "/local/domain/3", Token: "tok", Extended: true, Depth: 0xffff}},
			{Body: &Transaction{ConnID: 9, TxID: 44}},
			{Body: &Node{ConnID: 9, TxID: 44, Access: AccessRead | AccessWritten, Perms: []Perm{{'b', 0, 3}}, Path: "/local/domain/3/x", Value: []byte("v")}},
			{Body: &Node{ConnID: 9, TxID: 44, Path: "/local/domain/3/gone"}},
			{Body: &End{}},
		}}
		b, err := st.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadState(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("flags %d: %v", flags, err)
		}
		if d := cmp.Diff(st.Records, got.Records, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(Record{}, "Offset", "Index")); d != "" {
			t.Fatalf("flags %d (-want +got):\n%s", flags, d)
		}
		b2, _ := got.Bytes()
		if !bytes.Equal(b, b2) {
			t.Fatalf("flags %d: not byte-identical", flags)
		}
		if flags == FlagBigEndian && binary.BigEndian.Uint32(b[16:]) != uint32(TypeGlobalQuota) {
			t.Fatalf("big-endian record header %x", b[16:24])
		}
	}
}

// TestErrors: every class of malformed input gets a FormatError with the
// offset, record index, type and field.
func TestErrors(t *testing.T) {
	good := sample()
	hdrs := func(f func(*cStream)) []byte {
		s := newCStream(1)
		f(s)
		return s.b
	}
	conn := func(s *cStream) { s.rec(2, le32(1), le16(1), le16(0), le32(12), le32(0), le16(0), le16(0), le32(0)) }
	for _, tc := range []struct {
		name   string
		in     []byte
		off    int64
		index  int
		typ    Type
		field  string
		sentry error
	}{
		{"short header", good[:10], 0, -1, 0, "header", stream.ErrTruncated},
		{"ident", append([]byte("xenstorf"), good[8:]...), 0, -1, 0, "ident", stream.ErrValue},
		{"version", append(append([]byte("xenstore"), 0, 0, 0, 3), good[12:]...), 8, -1, 0, "version", stream.ErrValue},
		{"flags", append(append([]byte("xenstore\x00\x00\x00\x01"), 0, 0, 0, 2), good[16:]...), 12, -1, 0, "flags", stream.ErrReserved},
		{"no END", good[:len(good)-8], int64(len(good) - 8), 7, 0, "record header", stream.ErrTruncated},
		{"truncated body", good[:len(good)-20], int64(len(good) - 56), 6, TypeNode, "body", stream.ErrTruncated},
		{"unknown type", hdrs(func(s *cStream) { s.rec(9) }), 16, 0, 9, "type", stream.ErrUnknownType},
		{"extended watch in v1", hdrs(func(s *cStream) { conn(s); s.rec(8, le32(1), le16(2), le16(2), le16(0), le16(0), []byte("/\x00t\x00")) }), 48, 1, TypeWatchExtended, "", stream.ErrUnknownType},
		{"watch before its connection", hdrs(func(s *cStream) { s.rec(3, le32(1), le16(2), le16(2), []byte("/\x00t\x00")) }), 16, 0, TypeWatch, "conn-id", stream.ErrOrder},
		{"duplicate connection", hdrs(func(s *cStream) { conn(s); conn(s) }), 48, 1, TypeConnection, "conn-id", stream.ErrValue},
		{"conn type", hdrs(func(s *cStream) { s.rec(2, le32(1), le16(2), le16(0), le32(0), le32(0), le32(0), le32(0)) }), 16, 0, TypeConnection, "conn-type", stream.ErrValue},
		{"conn data too long", hdrs(func(s *cStream) { s.rec(2, le32(1), le16(1), le16(0), le32(0), le32(0), le16(9), le16(0), le32(0)) }), 16, 0, TypeConnection, "data", stream.ErrLength},
		{"fields reserved", hdrs(func(s *cStream) { s.rec(2, le32(1), le16(1), le16(2), le32(0), le32(0), le32(0), le32(0)) }), 16, 0, TypeConnection, "fields", stream.ErrReserved},
		{"path without NUL", hdrs(func(s *cStream) { s.rec(5, le32(0), le32(0), le16(2), le16(0), le16(0), le16(0), []byte("/x")) }), 16, 0, TypeNode, "path", stream.ErrValue},
		{"perm letter", hdrs(func(s *cStream) {
			s.rec(5, le32(0), le32(0), le16(2), le16(0), le16(0), le16(1), []byte{'x', 0}, le16(0), []byte("/\x00"))
		}), 16, 0, TypeNode, "perm[0].perm", stream.ErrValue},
		{"node of unknown transaction", hdrs(func(s *cStream) {
			conn(s)
			s.rec(5, le32(1), le32(7), le16(2), le16(0), le16(0), le16(0), []byte("/\x00"))
		}), 48, 1, TypeNode, "tx-id", stream.ErrOrder},
		{"value past the end", hdrs(func(s *cStream) { s.rec(5, le32(0), le32(0), le16(2), le16(99), le16(0), le16(0), []byte("/\x00")) }), 16, 0, TypeNode, "value", stream.ErrLength},
		{"features in v1", hdrs(func(s *cStream) { s.rec(7, le16(1), le16(0), le32(1)) }), 16, 0, TypeDomain, "features", stream.ErrReserved},
		{"quota names short", hdrs(func(s *cStream) {
			s.b = append(s.b, 6, 0, 0, 0, 14, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 'a', 0, 0, 0)
		}), 16, 0, TypeGlobalQuota, "quota-names", stream.ErrLength},
		{"END with a body", hdrs(func(s *cStream) { s.rec(0, le32(0)) }), 16, 0, TypeEnd, "", stream.ErrLength},
		{"short GLOBAL_DATA", hdrs(func(s *cStream) {
			s.b = append(s.b, 1, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 9, 0)
		}), 16, 0, TypeGlobal, "", stream.ErrLength},
		{"bytes after END", append(append([]byte{}, good...), 0), int64(len(good)), 8, 0, "after END", stream.ErrOrder},
		{"too large", hdrs(func(s *cStream) { s.b = append(s.b, 5, 0, 0, 0, 0, 0, 0, 0x10) }), 16, 0, TypeNode, "len", stream.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadState(bytes.NewReader(tc.in))
			var fe *stream.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FormatError", err)
			}
			if fe.Layer != Layer || fe.Offset != tc.off || fe.Index != tc.index || Type(fe.Type) != tc.typ || fe.Field != tc.field || !errors.Is(err, tc.sentry) {
				t.Fatalf("err = %v (%+v), want offset %d index %d type %v field %q %v", err, *fe, tc.off, tc.index, tc.typ, tc.field, tc.sentry)
			}
		})
	}
}

// TestPaddingNonZero: padding after a record's content must be zero, both
// inside a length that counts it and after an exact one.
func TestPaddingNonZero(t *testing.T) {
	for _, lenPadded := range []bool{false, true} {
		s := newCStream(1)
		s.rec(2, le32(1), le16(1), le16(0), le32(12), le32(0), le16(0), le16(0), le32(0))
		body := append(append(le32(1), le16(2)...), le16(2)...)
		body = append(body, '/', 0, 't', 0)
		n := len(body)
		if lenPadded {
			n = 16
		}
		s.b = append(append(s.b, le32(3)...), le32(uint32(n))...)
		s.b = append(append(s.b, body...), 0, 0, 0, 7, 0, 0, 0, 0)
		_, err := ReadState(bytes.NewReader(s.b))
		var fe *stream.FormatError
		if !errors.As(err, &fe) || fe.Field != "padding" || !errors.Is(err, stream.ErrPadding) || fe.Index != 1 {
			t.Fatalf("lenPadded %v: %v", lenPadded, err)
		}
	}
}

// TestLyingLength: a record declaring the cap on a short input allocates
// about what arrived, not the cap.
func TestLyingLength(t *testing.T) {
	in := newCStream(1).b
	in = append(in, 5, 0, 0, 0, 0, 0, 0xff, 0) // NODE of 16 MiB - 64 KiB
	in = append(in, make([]byte, 100)...)
	r := NewReader(bytes.NewReader(in))
	_, err := r.Next()
	if !errors.Is(err, stream.ErrTruncated) {
		t.Fatalf("err = %v", err)
	}
	if cap(r.buf) > growChunk {
		t.Fatalf("buffer grew to %d for 100 bytes of body", cap(r.buf))
	}
	// The error is sticky.
	if _, err2 := r.Next(); err2 != err {
		t.Fatalf("second Next = %v", err2)
	}
}

// TestWriterRefuses: what the stream cannot hold is refused before writing.
func TestWriterRefuses(t *testing.T) {
	for _, tc := range []struct {
		v    uint32
		body Body
	}{
		{1, &Watch{ConnID: 1, Path: "/", Token: "t", Extended: true}},
		{1, &Domain{Features: 1}},
		{2, &Node{Path: "/a\x00b"}},
		{2, &Node{Path: "/", Perms: []Perm{{Access: 'x'}}}},
		{2, &Connection{ID: 0}},
		{2, &Connection{ID: 1, Out: []byte("a"), RespLen: 2}},
		{2, &GlobalQuota{Domain: []Quota{{Name: "a\x00"}}}},
	} {
		var b bytes.Buffer
		w := NewWriter(&b)
		w.WriteHeader(Header{Version: tc.v})
		n := b.Len()
		if err := w.WriteRecord(Record{Body: tc.body}); !errors.Is(err, ErrEncode) || b.Len() != n {
			t.Errorf("v%d %T: err %v, wrote %d bytes", tc.v, tc.body, err, b.Len()-n)
		}
	}
}

// TestNextAfterEnd: Next returns io.EOF after END without reading on.
func TestNextAfterEnd(t *testing.T) {
	in := append(sample(), "trailing"...)
	r := NewReader(bytes.NewReader(in))
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 8 || !r.Ended() || r.Offset() != int64(len(in)-8) {
		t.Fatalf("%d records, ended %v, offset %d", n, r.Ended(), r.Offset())
	}
}

// TestTestdataStates: every captured state file in testdata decodes and
// re-encodes byte for byte.
func TestTestdataStates(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.state")
	for _, f := range files {
		in, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		st, err := ReadState(bytes.NewReader(in))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out, err := st.Bytes()
		if err != nil || !bytes.Equal(in, out) {
			t.Fatalf("%s: re-encoding differs (%v)", f, err)
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.ErrShortWrite
	}
	f.n--
	return len(p), nil
}

// TestWriterStickyError: after the first failed write every call fails.
func TestWriterStickyError(t *testing.T) {
	w := NewWriter(&failWriter{n: 1})
	if err := w.WriteHeader(Header{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecord(Record{Body: &Global{}}); err != io.ErrShortWrite {
		t.Fatalf("first failure: %v", err)
	}
	if err := w.WriteRecord(Record{Body: &End{}}); err != io.ErrShortWrite {
		t.Fatalf("after the failure: %v", err)
	}
}

// TestForgedSizesMemory: forged lengths and counts cost at most what
// arrived (plus the 1 MiB growth step), measured with runtime.MemStats: a
// record declaring the size cap with 100 bytes behind it, quota and
// permission counts of 65535 in short bodies.
func TestForgedSizesMemory(t *testing.T) {
	cases := map[string][]byte{
		"cap":    append(append(newCStream(2).b, 5, 0, 0, 0, 0, 0, 0, 1), make([]byte, 100)...),
		"quotas": newCStream(2).rec(6, le16(0xffff), le16(0xffff), le32(1)).b,
		"domain": newCStream(2).rec(7, le16(1), le16(0xffff), le32(0), le32(1)).b,
		"perms":  newCStream(2).rec(5, le32(0), le32(0), le16(2), le16(0xffff), le16(0), le16(0xffff), []byte{'r', 0, 0, 0}).b,
	}
	for name, in := range cases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := ReadState(bytes.NewReader(in))
		runtime.ReadMemStats(&after)
		total := after.TotalAlloc - before.TotalAlloc
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if total > growChunk+64<<10 {
			t.Errorf("%s: %d bytes allocated for %d bytes of input", name, total, len(in))
		}
	}
}
