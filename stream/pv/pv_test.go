package pv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// Test32 round-trips a 32-bit context and checks fields at their offsets
// (the offsets are checked against C in layout_test.go) and the folded CR3.
func Test32(t *testing.T) {
	b := make([]byte, libxc.VCPUBasicSize32)
	for i := range b {
		b[i] = byte(i*13 + 1)
	}
	c, err := Decode(b, Width32)
	if err != nil {
		t.Fatal(err)
	}
	c32 := c.(*Context32)
	le := binary.LittleEndian
	if c32.Flags != le.Uint32(b[512:]) || c32.UserRegs.EIP != le.Uint32(b[548:]) || c32.VMAssist != le.Uint32(b[2796:]) || c32.FailsafeCallbackCS != le.Uint32(b[2788:]) {
		t.Errorf("fields do not match their offsets")
	}
	c32.CtrlReg[3] = 0x12345678
	if c.CR3PFN() != 0x67812345 {
		t.Errorf("folded CR3 PFN %#x", c.CR3PFN())
	}
	c32.CtrlReg[3] = le.Uint32(b[2716+12:])
	out, _ := Encode(c)
	if !bytes.Equal(out, b) {
		t.Errorf("re-encoding differs")
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		n, width int
		field    string
		err      error
	}{
		{libxc.VCPUBasicSize64, 6, "guest_width", stream.ErrValue},
		{libxc.VCPUBasicSize32, Width64, "length", stream.ErrLength},
		{libxc.VCPUBasicSize64, Width32, "length", stream.ErrLength},
		{0, Width64, "length", stream.ErrLength},
	} {
		_, err := Decode(make([]byte, tc.n), tc.width)
		var fe *stream.FormatError
		if !errors.As(err, &fe) || fe.Layer != Layer || fe.Field != tc.field || !errors.Is(err, tc.err) {
			t.Errorf("%d bytes width %d: %v", tc.n, tc.width, err)
		}
	}
	rec := &libxc.VCPUContext{Kind: libxc.TypeX86PVVCPUBasic, Context: make([]byte, 100)}
	_, err := DecodeRecord(&libxc.X86PVInfo{GuestWidth: 8}, rec, 1000)
	var fe *stream.FormatError
	if !errors.As(err, &fe) || fe.Offset != 1000+ctxOffset || fe.Type != uint32(libxc.TypeX86PVVCPUBasic) {
		t.Errorf("record error: %+v", err)
	}
	rec.Kind = libxc.TypeX86PVVCPUExtended
	if _, err := DecodeRecord(&libxc.X86PVInfo{GuestWidth: 8}, rec, 0); !errors.Is(err, stream.ErrValue) {
		t.Errorf("EXTENDED record: %v", err)
	}
}

// TestSizes ties the Go layouts to the record sizes libxc checks.
func TestSizes(t *testing.T) {
	if n := binary.Size(Context64{}); n != libxc.VCPUBasicSize64 {
		t.Errorf("Context64 is %d bytes", n)
	}
	if n := binary.Size(Context32{}); n != libxc.VCPUBasicSize32 {
		t.Errorf("Context32 is %d bytes", n)
	}
	if !reflect.DeepEqual(reflect.TypeOf(Context64{}).NumField(), 19) {
		t.Errorf("Context64 fields changed")
	}
}

// TestExtendedShort decodes an older, shorter extended context
// zero-extended, re-encodes it at its length, and refuses to drop state.
func TestExtendedShort(t *testing.T) {
	b := make([]byte, 32)
	b[4], b[8], b[24] = 32, 0x11, 0x23
	e, err := DecodeExtended(b)
	if err != nil || e.Size != 32 || e.Syscall32CallbackEIP != 0x11 || e.Syscall32CallbackCS != 0x23 || e.VMCE.Caps != 0 {
		t.Fatalf("%+v %v", e, err)
	}
	out, err := e.AppendBinary(nil)
	if err != nil || !bytes.Equal(out, b) {
		t.Errorf("short round trip: %v", err)
	}
	e.VMCE.Caps = 1
	if _, err := e.AppendBinary(nil); !errors.Is(err, stream.ErrValue) {
		t.Errorf("dropped VMCE state: %v", err)
	}
	long := make([]byte, 72)
	long[70] = 9
	if e, err = DecodeExtended(long); err != nil || len(e.Tail) != 8 {
		t.Fatalf("long: %v", err)
	} else if out, _ := e.AppendBinary(nil); !bytes.Equal(out, long) {
		t.Errorf("long round trip")
	}
	if _, err := DecodeExtended(make([]byte, 136)); !errors.Is(err, stream.ErrLength) {
		t.Errorf("over 128 bytes: %v", err)
	}
}
