package hvm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/stream"
)

// sample returns a body of n bytes with a pattern, so that every byte of a
// layout is distinct from its neighbours.
func sample(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// entry encodes one descriptor and body.
func entry(tc Typecode, inst uint16, body []byte) []byte {
	b := le.AppendUint16(nil, uint16(tc))
	b = le.AppendUint16(b, inst)
	b = le.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func header() []byte {
	h, _ := (&Header{Magic: FileMagic, Version: FileVersion, Changeset: 0x1234, CPUID: 0x663, GTSCKHz: 2000000}).AppendBinary(nil)
	return h
}

// ctxOf builds a context: HEADER, the given entries, END.
func ctxOf(entries ...[]byte) []byte {
	b := entry(TypeHeader, 0, header())
	for _, e := range entries {
		b = append(b, e...)
	}
	return append(b, entry(TypeEnd, 0, nil)...)
}

// recordTable has a valid body of every typecode: the layouts' sizes, the
// older layouts Xen still loads, and the variable-length records.
var recordTable = []struct {
	tc   Typecode
	body []byte
}{
	{TypeCPU, sample(CPUSize, 1)},
	{TypeCPU, sample(CPUCompatSize, 2)},
	{TypePIC, sample(PICSize, 3)},
	{TypeIOAPIC, sample(IOAPICSize, 4)},
	{TypeLAPIC, sample(LAPICSize, 5)},
	{TypeLAPIC, sample(LAPICSizeLegacy, 6)},
	{TypeLAPICRegs, sample(LAPICRegsSize, 7)},
	{TypePCIIRQ, sample(PCIIRQSize, 8)},
	{TypeISAIRQ, sample(ISAIRQSize, 9)},
	{TypePCILink, sample(PCILinkSize, 10)},
	{TypePIT, sample(PITSize, 11)},
	{TypeRTC, sample(RTCSize, 12)},
	{TypeRTC, sample(16, 13)},
	{TypeHPET, sample(HPETSize, 14)},
	{TypePMTimer, sample(PMTimerSize, 15)},
	{TypeMTRR, sample(MTRRSize, 16)},
	{TypeViridianDomain, sample(ViridianDomainSize, 17)},
	{TypeViridianDomain, sample(24, 18)},
	{TypeCPUXSave, sample(CPUXSaveHeaderSize+XSaveAreaMin+256, 19)},
	{TypeViridianVCPU, sample(ViridianVCPUSize, 20)},
	{TypeVMCEVCPU, sample(VMCEVCPUSize, 21)},
	{TypeVMCEVCPU, sample(24, 22)},
	{TypeTSCAdjust, sample(TSCAdjustSize, 23)},
	{TypeCPUMSR, append(le.AppendUint32(nil, 2), sample(4+2*CPUMSREntrySize, 24)...)},
	{TypeCPUMSR, le.AppendUint64(nil, 0)},
	{Typecode(21), sample(40, 25)},
}

// TestRecordTable decodes and re-encodes a context of every record type,
// and checks a field at a known offset of each typed record.
func TestRecordTable(t *testing.T) {
	for _, tc := range recordTable {
		in := ctxOf(entry(tc.tc, 3, tc.body))
		c, err := Decode(in)
		if err != nil {
			t.Fatalf("%s (%d bytes): %v", tc.tc, len(tc.body), err)
		}
		e := c.Entries[1]
		if e.Typecode != tc.tc || e.Instance != 3 || int(e.Length) != len(tc.body) {
			t.Errorf("%s: entry %+v", tc.tc, e)
		}
		if _, raw := e.Record.(*Raw); raw != !tc.tc.Known() {
			t.Errorf("%s: record %T", tc.tc, e.Record)
		}
		out, err := Encode(c)
		if err != nil {
			t.Fatalf("%s: %v", tc.tc, err)
		}
		if !bytes.Equal(out, in) {
			t.Errorf("%s (%d bytes): re-encoding differs", tc.tc, len(tc.body))
		}
	}
}

// TestFieldsAtOffsets reads fields of decoded records that sit at the
// offsets of Xen's layout (the offsets themselves are checked against the
// C headers in layout_test.go).
func TestFieldsAtOffsets(t *testing.T) {
	body := sample(CPUSize, 1)
	c, err := Decode(ctxOf(entry(TypeCPU, 0, body)))
	if err != nil {
		t.Fatal(err)
	}
	cpu := c.CPU(0)
	if cpu.RAX != le.Uint64(body[512:]) || cpu.RIP != le.Uint64(body[640:]) || cpu.TSC != le.Uint64(body[1008:]) || cpu.Pad0 != le.Uint32(body[1028:]) {
		t.Errorf("CPU fields do not match their offsets")
	}
	// The compat layout puts tsc, pending_event and error_code 8 bytes
	// earlier and has no msr_tsc_aux or flags.
	cbody := sample(CPUCompatSize, 2)
	c, err = Decode(ctxOf(entry(TypeCPU, 1, cbody)))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CPU(1)
	if cc.MSREFER != le.Uint64(cbody[992:]) || cc.TSC != le.Uint64(cbody[1000:]) || cc.PendingEvent != le.Uint32(cbody[1008:]) ||
		cc.ErrorCode != le.Uint32(cbody[1012:]) || cc.MSRTSCAux != 0 || cc.Flags != 0 || !c.Find(TypeCPU, 1).Short() {
		t.Errorf("compat CPU decoded wrongly: %+v", cc)
	}
	var p PIC
	p.decode([]byte{0, 0, 0, 0, 0x5a, 0x42, 0, 0})
	if p.InitState() != 0xa || p.PriorityAdd() != 5 || !p.Poll() || !p.IsMaster() || p.AutoEOI() || p.ReadselISR() {
		t.Errorf("PIC bit-fields: %+v", p)
	}
	cpu.PendingEvent = 0x80000b0e
	if cpu.PendingVector() != 0x0e || cpu.PendingType() != 3 || !cpu.PendingErrorValid() || !cpu.PendingValid() {
		t.Errorf("pending event bit-fields")
	}
}

// TestShortLayouts checks both LAPIC layouts and that Encode refuses to
// drop state an older layout cannot hold.
func TestShortLayouts(t *testing.T) {
	l := &LAPIC{APICBaseMSR: 0xfee00900, TimerDivisor: 3, PendingESR: 0x40}
	c := &Context{Entries: []Entry{{Typecode: TypeHeader, Record: &Header{Magic: FileMagic, Version: FileVersion}},
		{Typecode: TypeLAPIC, Record: l}, {Typecode: TypeEnd, Record: &End{}}}}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if e := d.Find(TypeLAPIC, 0); e.Length != LAPICSize || e.Short() || *e.Record.(*LAPIC) != *l {
		t.Errorf("4.21 LAPIC: %+v", e)
	}
	c.Entries[1].Length = LAPICSizeLegacy
	if _, err := Encode(c); !errors.Is(err, stream.ErrValue) {
		t.Errorf("pending_esr in a 24-byte LAPIC: %v", err)
	}
	l.PendingESR = 0
	if b, err = Encode(c); err != nil || len(b) != 2*DescriptorSize+HeaderSize+DescriptorSize+LAPICSizeLegacy {
		t.Errorf("24-byte LAPIC: %d bytes, %v", len(b), err)
	}
	c.Entries[1].Length = 40
	if _, err := Encode(c); !errors.Is(err, stream.ErrLength) {
		t.Errorf("LAPIC longer than its layout: %v", err)
	}
	cpu := &CPU{RIP: 1, TSC: 2, PendingEvent: 3, ErrorCode: 4, MSREFER: 5}
	c.Entries[1] = Entry{Typecode: TypeCPU, Length: CPUCompatSize, Record: cpu}
	b, err = Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = Decode(b); err != nil || *d.CPU(0) != *cpu {
		t.Errorf("compat CPU round trip: %v", err)
	}
	cpu.Flags = CPUFPUInitialised
	if _, err := Encode(c); !errors.Is(err, stream.ErrValue) {
		t.Errorf("flags in a compat CPU: %v", err)
	}
}

// TestErrors checks the typed error of each kind of malformed context:
// offset, entry index, typecode, field and sentinel.
func TestErrors(t *testing.T) {
	good := ctxOf(entry(TypeCPU, 0, sample(CPUSize, 1)))
	hdrEnd := DescriptorSize + HeaderSize
	cpuEnd := hdrEnd + DescriptorSize + CPUSize
	badMagic := append([]byte(nil), good...)
	badMagic[DescriptorSize] ^= 1
	badVersion := append([]byte(nil), good...)
	badVersion[DescriptorSize+4] = 2
	for _, tc := range []struct {
		name  string
		in    []byte
		off   int
		index int
		tc    Typecode
		field string
		err   error
	}{
		{"empty", nil, 0, 0, 0, "typecode", ErrNoEnd},
		{"no END", good[:cpuEnd], cpuEnd, 2, 0, "typecode", ErrNoEnd},
		{"short descriptor", good[:cpuEnd+4], cpuEnd, 2, 0, "descriptor", stream.ErrTruncated},
		{"short body", good[:cpuEnd-1], hdrEnd, 1, TypeCPU, "length", stream.ErrTruncated},
		{"CPU too long", ctxOf(entry(TypeCPU, 0, sample(CPUSize+8, 1))), hdrEnd, 1, TypeCPU, "length", stream.ErrLength},
		{"LAPIC too long", ctxOf(entry(TypeLAPIC, 0, sample(40, 1))), hdrEnd, 1, TypeLAPIC, "length", stream.ErrLength},
		{"PIT size", ctxOf(entry(TypePIT, 0, sample(PITSize-8, 1))), hdrEnd, 1, TypePIT, "length", stream.ErrLength},
		{"XSAVE short", ctxOf(entry(TypeCPUXSave, 0, sample(100, 1))), hdrEnd, 1, TypeCPUXSave, "save_area", stream.ErrLength},
		{"MSR count", ctxOf(entry(TypeCPUMSR, 0, append(le.AppendUint32(nil, 3), sample(4+2*CPUMSREntrySize, 1)...))), hdrEnd, 1, TypeCPUMSR, "count", stream.ErrLength},
		{"END length", append(ctxOf()[:hdrEnd], entry(TypeEnd, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8})...), hdrEnd, 1, TypeEnd, "length", stream.ErrLength},
		{"no HEADER", entry(TypeEnd, 0, nil), 0, 0, TypeEnd, "typecode", stream.ErrOrder},
		{"two HEADERs", ctxOf(entry(TypeHeader, 0, header())), hdrEnd, 1, TypeHeader, "typecode", stream.ErrOrder},
		{"magic", badMagic, 0, 0, TypeHeader, "magic", stream.ErrValue},
		{"version", badVersion, 0, 0, TypeHeader, "version", stream.ErrValue},
		{"trailing", append(append([]byte(nil), good...), 0, 0, 0, 0), len(good), -1, 0, "trailing", ErrTrailing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeOptions(tc.in, Options{Offset: 1000})
			var fe *stream.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FormatError", err)
			}
			if fe.Layer != Layer || fe.Offset != int64(1000+tc.off) || fe.Index != tc.index || fe.Type != uint32(tc.tc) || fe.Field != tc.field || !errors.Is(err, tc.err) {
				t.Errorf("got %+v (%v), want offset %d index %d type %s field %q %v", *fe, err, 1000+tc.off, tc.index, tc.tc, tc.field, tc.err)
			}
			if (tc.index >= 0 && fe.TypeName != tc.tc.String()) || fe.Expected == "" || fe.Actual == "" {
				t.Errorf("type name %q, expected %q, actual %q", fe.TypeName, fe.Expected, fe.Actual)
			}
		})
	}
}

// TestErrorText shows the expected and actual values in the message.
func TestErrorText(t *testing.T) {
	_, err := Decode(ctxOf(entry(TypeLAPIC, 1, sample(40, 1))))
	want := "hvm: record 1 (LAPIC) at offset 32, field length: bad record length: expected at most 32 bytes, got 40 bytes"
	if err == nil || err.Error() != want {
		t.Errorf("error text\n%v\nwant\n%s", err, want)
	}
}

// TestRelaxed keeps malformed bodies as Raw with the error, keeps trailing
// bytes, and still re-encodes the input exactly.
func TestRelaxed(t *testing.T) {
	in := ctxOf(entry(TypeLAPIC, 0, sample(40, 1)), entry(TypeCPU, 0, sample(CPUSize, 2)))
	in[DescriptorSize] ^= 1 // bad magic
	in = append(in, 9, 9, 9)
	if _, err := Decode(in); err == nil {
		t.Fatal("strict Decode accepted a bad context")
	}
	c, err := DecodeOptions(in, Options{Relaxed: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := c.Entries[1].Record.(*Raw)
	if !ok || !errors.Is(raw.Err, stream.ErrLength) || c.CPU(0) == nil || !bytes.Equal(c.Trailing, []byte{9, 9, 9}) {
		t.Fatalf("relaxed: %+v %v", c.Entries[1], c.Trailing)
	}
	if c.Header().Magic == FileMagic {
		t.Errorf("magic not kept as found")
	}
	out, err := Encode(c)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("relaxed round trip: %v", err)
	}
}

// TestEncodeErrors checks that Encode refuses contexts it cannot write.
func TestEncodeErrors(t *testing.T) {
	hdr := Entry{Typecode: TypeHeader, Record: &Header{}}
	end := Entry{Typecode: TypeEnd, Record: &End{}}
	for name, c := range map[string]*Context{
		"no END":         {Entries: []Entry{hdr}},
		"after END":      {Entries: []Entry{hdr, end, hdr}},
		"nil record":     {Entries: []Entry{hdr, {Typecode: TypeCPU}, end}},
		"typecode":       {Entries: []Entry{hdr, {Typecode: TypeCPU, Record: &LAPIC{}}, end}},
		"variable short": {Entries: []Entry{hdr, {Typecode: TypeCPUMSR, Length: 4, Record: &CPUMSR{}}, end}},
	} {
		if _, err := Encode(c); err == nil {
			t.Errorf("%s: Encode accepted it", name)
		}
	}
}
