package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/libxl"
)

// recordAt returns the offset of the first record named name in image b.
func recordAt(t *testing.T, b []byte, name string) int64 {
	t.Helper()
	off := int64(-1)
	Walk(bytes.NewReader(b), Options{}, func(it *Item) error {
		if it.Kind == KindRecord && it.Name == name && off < 0 {
			off = it.Offset
		}
		return nil
	})
	if off < 0 {
		t.Fatalf("no %s record", name)
	}
	return off
}

// TestConfigRules checks what the image layer takes from the xl
// configuration for the restore rules of issue 14 item 3: the vCPU count
// (max_vcpus) bounds vCPU ids, the guest type (c_info.type) must match the
// libxc domain type, and a PVH or PV domain takes no EMULATOR_* records.
func TestConfigRules(t *testing.T) {
	pv := fixture(t, "guest1-pv.xl")   // PV, max_vcpus 1
	pvh := fixture(t, "guest3-pvh.xl") // PVH, max_vcpus 1

	vcpu1 := bytes.Clone(pv)
	at := recordAt(t, vcpu1, "X86_PV_VCPU_EXTENDED")
	binary.LittleEndian.PutUint32(vcpu1[at+8:], 1)

	typ := bytes.Clone(pv)
	i := bytes.Index(typ, []byte(`"type": "pv",`))
	if i < 0 {
		t.Fatal("no c_info.type in guest1's config")
	}
	copy(typ[i:], `"type":"pvh",`)

	emu, _ := libxl.Emulator{ID: libxl.EmulatorQemuUpstream}.AppendBinary(nil)
	rec := binary.LittleEndian.AppendUint32(nil, uint32(libxl.TypeEmulatorContext))
	rec = binary.LittleEndian.AppendUint32(rec, uint32(len(emu)))
	rec = append(rec, emu...)
	emuPVH := append(append(bytes.Clone(pvh[:len(pvh)-8]), rec...), pvh[len(pvh)-8:]...)

	cases := []struct {
		name  string
		in    []byte
		layer string
		field string
		want  error
	}{
		{"vCPU id at max_vcpus", vcpu1, libxc.Layer, "vcpu_id", stream.ErrValue},
		{"PVH config, PV stream", typ, libxc.Layer, "type", stream.ErrValue},
		{"EMULATOR_CONTEXT in a PVH image", emuPVH, libxl.Layer, "type", stream.ErrOrder},
	}
	for _, c := range cases {
		_, err := Walk(bytes.NewReader(c.in), Options{}, nil)
		var fe *stream.FormatError
		if !errors.As(err, &fe) || !errors.Is(err, c.want) || fe.Layer != c.layer || fe.Field != c.field {
			t.Errorf("%s: got %v, want %v in %s field %s", c.name, err, c.want, c.layer, c.field)
		}
		if _, err := Walk(bytes.NewReader(c.in), Options{Relaxed: true}, nil); err != nil {
			t.Errorf("%s: relaxed: %v", c.name, err)
		}
	}
	// Without the xl header (a bare libxl stream) the vCPU count and the
	// PVH/HVM distinction are unknown: vCPU 1 is below MaxPVVCPUs and an
	// emulator record after an HVM libxc stream may belong to an HVM guest.
	lh := bytes.Index(vcpu1, []byte("LibxlFmt"))
	if _, err := Walk(bytes.NewReader(vcpu1[lh:]), Options{}, nil); err != nil {
		t.Errorf("bare libxl with vCPU 1: %v", err)
	}
	lh = bytes.Index(emuPVH, []byte("LibxlFmt"))
	if _, err := Walk(bytes.NewReader(emuPVH[lh:]), Options{}, nil); err != nil {
		t.Errorf("bare libxl HVM stream with an emulator record: %v", err)
	}
	// A bare libxl stream whose libxc stream is PV still refuses emulator
	// records: the libxc domain header says PV.
	emuPV := append(append(bytes.Clone(pv[:len(pv)-8]), rec...), pv[len(pv)-8:]...)
	lh = bytes.Index(emuPV, []byte("LibxlFmt"))
	_, err := Walk(bytes.NewReader(emuPV[lh:]), Options{}, nil)
	var fe *stream.FormatError
	if !errors.As(err, &fe) || !errors.Is(err, stream.ErrOrder) || fe.Layer != libxl.Layer || fe.Field != "type" {
		t.Errorf("bare libxl PV stream with an emulator record: got %v", err)
	}
}
