package libxl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/xensr/xensr/stream"
)

// The tests stand in for the libxc layer with a fake inline blob:
// u32 length n, u32 checkpoint flag, then n bytes. The caller reads it from
// Underlying and calls Resume, exactly as a libxc reader would be used.
func fakeLibxc(data []byte, checkpoint bool) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(data)))
	c := uint32(0)
	if checkpoint {
		c = 1
	}
	b = binary.LittleEndian.AppendUint32(b, c)
	return append(b, data...)
}

// item is one element of a test stream: a libxl record or a fake libxc blob.
type item struct {
	Type       RecordType
	Body       []byte
	Libxc      []byte // when IsLibxc
	IsLibxc    bool
	Checkpoint bool
}

func encode(t testing.TB, h Header, items []item) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	if err := w.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.IsLibxc {
			w.Libxc().Write(fakeLibxc(it.Libxc, it.Checkpoint))
			continue
		}
		if err := w.WriteRecord(it.Type, it.Body); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// decode reads a whole stream, reading fake libxc blobs when InLibxc, and
// returns the items and the offsets of the libxl records.
func decode(in []byte, opt Options) (Header, []item, error) {
	r := NewReaderOptions(bytes.NewReader(in), 0, opt)
	h, err := r.Header()
	if err != nil {
		return h, nil, err
	}
	var items []item
	for {
		if r.InLibxc() {
			var hd [8]byte
			if _, err := io.ReadFull(r.Underlying(), hd[:]); err != nil {
				return h, items, err
			}
			n := binary.LittleEndian.Uint32(hd[:4])
			if n > 1<<16 || binary.LittleEndian.Uint32(hd[4:]) > 1 {
				return h, items, errors.New("bad fake libxc blob")
			}
			var data []byte
			if n > 0 {
				data = make([]byte, n)
				if _, err := io.ReadFull(r.Underlying(), data); err != nil {
					return h, items, err
				}
			}
			ck := binary.LittleEndian.Uint32(hd[4:]) != 0
			items = append(items, item{IsLibxc: true, Libxc: data, Checkpoint: ck})
			if err := r.Resume(r.Offset()+8+int64(n), ck); err != nil {
				return h, items, err
			}
			continue
		}
		rec, err := r.Next()
		if err == io.EOF {
			return h, items, nil
		}
		if err != nil {
			return h, items, err
		}
		var body []byte
		if len(rec.Body) > 0 {
			body = append(body, rec.Body...)
		}
		items = append(items, item{Type: rec.Type, Body: body})
	}
}

func emu(id EmulatorID, idx uint32, data []byte) []byte {
	b, _ := Emulator{ID: id, Index: idx, Data: data}.AppendBinary(nil)
	return b
}

var xsData = AppendXenstoreData(nil, []KeyValue{{"physmap/1/start_addr", "f0000000"}, {"physmap/1/size", "800000"}})

// Streams the way libxl writes them (libxl_stream_write.c).
var (
	plainPV = []item{
		{Type: TypeLibxcContext},
		{IsLibxc: true, Libxc: []byte("libxc stream ... END")},
		{Type: TypeEnd},
	}
	plainHVM = []item{
		{Type: TypeLibxcContext},
		{IsLibxc: true, Libxc: []byte("libxc stream ... END")},
		{Type: TypeEmulatorXenstoreData, Body: emu(EmulatorQemuUpstream, 0, xsData)},
		{Type: TypeEmulatorContext, Body: emu(EmulatorQemuUpstream, 0, []byte("QEVM\x00\x00\x00\x03"))},
		{Type: TypeEnd},
	}
	checkpointed = []item{
		{Type: TypeLibxcContext},
		{IsLibxc: true, Libxc: []byte("round 0 ... CHECKPOINT"), Checkpoint: true},
		{Type: TypeEmulatorContext, Body: emu(EmulatorQemuUpstream, 0, []byte("ctx0"))},
		{Type: TypeCheckpointEnd},
		{IsLibxc: true, Libxc: []byte("round 1 ... CHECKPOINT"), Checkpoint: true},
		{Type: TypeEmulatorXenstoreData, Body: emu(EmulatorQemuUpstream, 0, nil)},
		{Type: TypeCheckpointEnd},
		{IsLibxc: true, Libxc: []byte("round 2 ... END")},
		{Type: TypeEnd},
	}
	backChannel = []item{
		{Type: TypeCheckpointState, Body: []byte{CheckpointSVMSuspended, 0, 0, 0}},
		{Type: TypeCheckpointState, Body: []byte{CheckpointSVMReady, 0, 0, 0}},
		{Type: TypeEnd},
	}
)

func TestRoundTrip(t *testing.T) {
	for name, items := range map[string][]item{"pv": plainPV, "hvm": plainHVM, "checkpointed": checkpointed, "back channel": backChannel} {
		h := Header{Version: Version, Options: OptLegacy}
		enc := encode(t, h, items)
		gh, got, err := decode(enc, Options{BackChannel: name == "back channel"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if gh != h {
			t.Errorf("%s: header %+v, want %+v", name, gh, h)
		}
		if d := cmp.Diff(items, got); d != "" {
			t.Errorf("%s: items differ (-want +got):\n%s", name, d)
		}
		if re := encode(t, gh, got); !bytes.Equal(re, enc) {
			t.Errorf("%s: re-encoding differs", name)
		}
	}
}

func TestWireFormat(t *testing.T) {
	enc := encode(t, Header{Version: 2}, []item{{Type: TypeEmulatorContext, Body: emu(2, 1, []byte("abc"))}})
	want := []byte("LibxlFmt\x00\x00\x00\x02\x00\x00\x00\x00" +
		"\x03\x00\x00\x00\x0b\x00\x00\x00" + "\x02\x00\x00\x00\x01\x00\x00\x00abc\x00\x00\x00\x00\x00")
	if !bytes.Equal(enc, want) {
		t.Errorf("encoding\n got % x\nwant % x", enc, want)
	}
}

func TestOffsetsAndCheckpoints(t *testing.T) {
	enc := encode(t, Header{Version: 2}, checkpointed)
	r := NewReaderOptions(bytes.NewReader(enc), 100, Options{})
	rec, err := r.Next()
	if err != nil || rec.Type != TypeLibxcContext || rec.Offset != 116 || rec.Index != 0 {
		t.Fatalf("first record %+v, %v", rec, err)
	}
	if !r.InLibxc() || r.Offset() != 124 {
		t.Fatalf("InLibxc %v offset %d, want true 124", r.InLibxc(), r.Offset())
	}
	if _, err := r.Next(); !errors.Is(err, ErrLibxcPending) {
		t.Fatalf("Next while libxc pending: %v", err)
	}
	// Skip all three libxc rounds through the real path and count.
	_, items, err := decode(enc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, it := range items {
		if it.IsLibxc {
			n++
		}
	}
	if n != 3 {
		t.Errorf("libxc rounds %d, want 3", n)
	}
}

func TestErrors(t *testing.T) {
	h := Header{Version: 2}
	hdr := func(ident uint64, version, options uint32) []byte {
		b := binary.BigEndian.AppendUint64(nil, ident)
		b = binary.BigEndian.AppendUint32(b, version)
		return binary.BigEndian.AppendUint32(b, options)
	}
	good := encode(t, h, plainHVM)
	cases := []struct {
		name    string
		in      []byte
		err     error
		field   string
		index   int
		relaxed bool // passes in relaxed mode
	}{
		{"empty", nil, ErrIdent, "ident", -1, false},
		{"xl file", []byte("Xen saved domain, xl format\n \x00 \r"), ErrIdent, "ident", -1, false},
		{"short header", good[:10], stream.ErrTruncated, "header", -1, false},
		{"version", hdr(Ident, 3, 0), stream.ErrValue, "version", -1, false},
		{"reserved options", hdr(Ident, 2, 1<<16), stream.ErrReserved, "options", -1, false},
		{"big endian", hdr(Ident, 2, OptBigEndian), nil, "options", -1, false},
		{"no END", good[:len(good)-8], stream.ErrTruncated, "END", -1, true},
		{"END with body", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEnd, Body: []byte{1}}}), stream.ErrLength, "length", 1, false},
		{"LIBXC_CONTEXT with body", encode(t, h, []item{{Type: TypeLibxcContext, Body: []byte{1}}}), stream.ErrLength, "length", 0, false},
		{"short emulator", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEmulatorContext, Body: []byte{2, 0, 0}}}), stream.ErrLength, "length", 1, false},
		{"unknown emulator", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEmulatorContext, Body: emu(7, 0, nil)}, {Type: TypeEnd}}), stream.ErrValue, "emulator_id", 1, true},
		{"xenstore not NUL-terminated", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEmulatorXenstoreData, Body: emu(2, 0, []byte("k\x00v"))}, {Type: TypeEnd}}), stream.ErrValue, "xenstore_data", 1, true},
		{"xenstore odd strings", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEmulatorXenstoreData, Body: emu(2, 0, []byte("k\x00v\x00k2\x00"))}, {Type: TypeEnd}}), stream.ErrValue, "xenstore_data", 1, true},
		{"unknown mandatory type", encode(t, h, []item{{Type: 6}, {Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEnd}}), stream.ErrUnknownType, "type", 0, true},
		{"END before libxc", encode(t, h, []item{{Type: TypeEnd}}), stream.ErrOrder, "", 0, true},
		{"two LIBXC_CONTEXT", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEnd}}), stream.ErrOrder, "", 1, true},
		{"emulator before libxc", encode(t, h, []item{{Type: TypeEmulatorContext, Body: emu(2, 0, nil)}, {Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeEnd}}), stream.ErrOrder, "", 0, true},
		{"CHECKPOINT_END outside a checkpoint", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeCheckpointEnd}, {Type: TypeEnd}}), stream.ErrOrder, "", 1, true},
		{"END inside a checkpoint", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true, Checkpoint: true}, {Type: TypeEnd}}), stream.ErrOrder, "", 1, true},
		{"CHECKPOINT_STATE after libxc", encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}, {Type: TypeCheckpointState, Body: []byte{1, 0, 0, 0}}, {Type: TypeEnd}}), stream.ErrOrder, "", 1, true},
		{"CHECKPOINT_STATE length", encode(t, h, []item{{Type: TypeCheckpointState, Body: []byte{1, 0}}, {Type: TypeEnd}}), stream.ErrLength, "length", 0, true},
		{"padding", append(encode(t, h, []item{{Type: TypeLibxcContext}, {IsLibxc: true}}), []byte("\x03\x00\x00\x00\x09\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x07\x00\x00\x00\x00\x00\x00")...), stream.ErrPadding, "padding", 1, true},
	}
	for _, c := range cases {
		_, _, err := decode(c.in, Options{})
		var fe *stream.FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: err %v, want a FormatError", c.name, err)
			continue
		}
		if (c.err != nil && !errors.Is(err, c.err)) || fe.Field != c.field || fe.Index != c.index || fe.Layer != Layer {
			t.Errorf("%s: got %v (%+v), want %v field %q index %d", c.name, err, fe, c.err, c.field, c.index)
		}
		_, _, err = decode(c.in, Options{Relaxed: true})
		if c.relaxed && err != nil {
			t.Errorf("%s: relaxed: %v", c.name, err)
		}
		if !c.relaxed && err == nil {
			t.Errorf("%s: relaxed mode accepted it", c.name)
		}
	}
}

func TestXenstoreData(t *testing.T) {
	kv, err := ParseXenstoreData(xsData)
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyValue{{"physmap/1/start_addr", "f0000000"}, {"physmap/1/size", "800000"}}
	if d := cmp.Diff(want, kv); d != "" {
		t.Error(d)
	}
}

func TestLargeRecordCapped(t *testing.T) {
	in := encode(t, Header{Version: 2}, nil)
	in = append(in, 3, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f) // 2 GiB EMULATOR_CONTEXT, no body
	_, _, err := decode(in, Options{})
	if !errors.Is(err, stream.ErrTooLarge) {
		t.Errorf("got %v, want ErrTooLarge", err)
	}
	in = in[:len(in)-8]
	in = append(in, 3, 0, 0, 0, 0, 0, 0, 0x07) // 112 MiB declared, truncated
	_, _, err = decode(in, Options{})
	if !errors.Is(err, stream.ErrTruncated) {
		t.Errorf("got %v, want ErrTruncated", err)
	}
}

func genItems(t *rapid.T) []item {
	body := func(label string) []byte {
		b := rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, label)
		if len(b) == 0 {
			return nil
		}
		return b
	}
	emuRec := func() item {
		typ := rapid.SampledFrom([]RecordType{TypeEmulatorContext, TypeEmulatorXenstoreData}).Draw(t, "emutype")
		var data []byte
		if typ == TypeEmulatorXenstoreData {
			n := rapid.IntRange(0, 3).Draw(t, "kvs")
			var kv []KeyValue
			for i := 0; i < n; i++ {
				kv = append(kv, KeyValue{rapid.StringMatching(`[a-z_-][a-z/_-]{0,11}`).Draw(t, "k") /* libxl wants relative keys */, rapid.StringMatching(`[ -~]{0,12}`).Draw(t, "v")})
			}
			data = AppendXenstoreData(nil, kv)
		} else {
			data = body("data")
		}
		return item{Type: typ, Body: emu(EmulatorID(rapid.IntRange(0, 2).Draw(t, "emu")), rapid.Uint32().Draw(t, "idx"), data)}
	}
	items := []item{{Type: TypeLibxcContext}}
	rounds := rapid.IntRange(0, 3).Draw(t, "checkpoints")
	for i := 0; i < rounds; i++ {
		items = append(items, item{IsLibxc: true, Libxc: body("round"), Checkpoint: true})
		for j := rapid.IntRange(0, 2).Draw(t, "emus"); j > 0; j-- {
			items = append(items, emuRec())
		}
		items = append(items, item{Type: TypeCheckpointEnd})
	}
	items = append(items, item{IsLibxc: true, Libxc: body("last")})
	for j := rapid.IntRange(0, 3).Draw(t, "emus"); j > 0; j-- {
		items = append(items, emuRec())
	}
	return append(items, item{Type: TypeEnd})
}

func TestRapidRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := Header{Version: 2, Options: rapid.SampledFrom([]uint32{0, OptLegacy}).Draw(rt, "options")}
		items := genItems(rt)
		enc := encode(t, h, items)
		gh, got, err := decode(enc, Options{})
		if err != nil {
			rt.Fatal(err)
		}
		if d := cmp.Diff(items, got); d != "" || gh != h {
			rt.Fatalf("mismatch:\n%s", d)
		}
		if !bytes.Equal(encode(t, gh, got), enc) {
			rt.Fatal("re-encoding differs")
		}
	})
}

func FuzzReader(f *testing.F) {
	for _, items := range [][]item{plainPV, plainHVM, checkpointed, backChannel} {
		f.Add(encode(f, Header{Version: 2}, items), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, relaxed bool) {
		h, items, err := decode(in, Options{Relaxed: relaxed, MaxRecordSize: 1 << 20})
		if err != nil {
			return
		}
		// Whatever decodes cleanly re-encodes to a prefix of the input
		// (relaxed mode accepts non-zero padding, which is not reproduced).
		re := encode(t, h, items)
		if !relaxed && !bytes.Equal(re, in[:len(re)]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// TestLibxlRestoreRules covers the libxl streams of issue 14 item 3 that
// libxl 4.17 (libxl_stream_read.c, libxl__restore_emulator_xenstore_data)
// refuses and strict mode once accepted.
func TestLibxlRestoreRules(t *testing.T) {
	h := Header{Version: 2}
	after := func(recs ...item) []byte {
		return encode(t, h, append(append([]item{{Type: TypeLibxcContext}, {IsLibxc: true}}, recs...), item{Type: TypeEnd}))
	}
	xs := func(kv ...KeyValue) item {
		return item{Type: TypeEmulatorXenstoreData, Body: emu(EmulatorQemuUpstream, 0, AppendXenstoreData(nil, kv))}
	}
	ctx := item{Type: TypeEmulatorContext, Body: emu(EmulatorQemuUpstream, 0, []byte("QEVM"))}
	cases := []struct {
		name  string
		in    []byte
		opt   Options
		err   error
		field string
		index int
	}{
		// "Unrecognised record": libxl has no optional records.
		{"unknown optional record", after(item{Type: OptionalBit | 0x1234, Body: []byte("opt")}), Options{}, stream.ErrUnknownType, "type", 1},
		// "Received a xenstore emulator record when none was expected".
		{"EMULATOR_XENSTORE_DATA in PV", after(xs(KeyValue{"physmap", "1"})), Options{Guest: GuestPV}, stream.ErrOrder, "type", 1},
		{"EMULATOR_CONTEXT in PVH", after(ctx), Options{Guest: GuestPVH}, stream.ErrOrder, "type", 1},
		// "empty key found" / "Key in xenstore data not relative".
		{"absolute xenstore key", after(xs(KeyValue{"physmap", "1"}, KeyValue{"/local/domain/0/x", "1"})), Options{}, stream.ErrValue, "xenstore_data[1].key", 1},
		{"empty xenstore key", after(xs(KeyValue{"", "1"})), Options{}, stream.ErrValue, "xenstore_data[0].key", 1},
		// "Unexpected CHECKPOINT_STATE record in stream".
		{"CHECKPOINT_STATE in a restore stream", encode(t, h, backChannel), Options{}, stream.ErrOrder, "", 0},
		// A restore stream needs a domain: END before LIBXC_CONTEXT.
		{"END alone", encode(t, h, []item{{Type: TypeEnd}}), Options{}, stream.ErrOrder, "", 0},
		{"LIBXC_CONTEXT in the back channel", encode(t, h, plainPV), Options{BackChannel: true}, stream.ErrOrder, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := decode(c.in, c.opt)
			var fe *stream.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, c.err) || fe.Field != c.field || fe.Index != c.index || fe.TypeName == "" {
				t.Fatalf("got %v, want %v field %q index %d with a type name", err, c.err, c.field, c.index)
			}
			c.opt.Relaxed = true
			if _, _, err := decode(c.in, c.opt); err != nil {
				t.Errorf("relaxed: %v", err)
			}
		})
	}
	// The counterparts pass: emulator records for HVM or an unknown guest,
	// the back channel when declared.
	for name, tc := range map[string]struct {
		in  []byte
		opt Options
	}{
		"HVM emulator records": {after(xs(KeyValue{"physmap/1", "f"}), ctx), Options{Guest: GuestHVM}},
		"unknown guest":        {after(ctx), Options{}},
		"back channel":         {encode(t, h, backChannel), Options{BackChannel: true}},
	} {
		if _, _, err := decode(tc.in, tc.opt); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A missing END is reported at the end of input, not as a record that does
// not exist (issue 14 item 7).
func TestMissingENDText(t *testing.T) {
	in := encode(t, Header{Version: 2}, plainPV)
	in = in[:len(in)-8]
	_, _, err := decode(in, Options{})
	want := "libxl: at offset 52, field END: stream truncated: expected an END record, got end of input"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}
