package image

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

func TestVerifyFixtures(t *testing.T) {
	for _, fx := range validFixtures {
		t.Run(fx.name, func(t *testing.T) {
			in := fixture(t, fx.name)
			rep, err := Verify(bytes.NewReader(in), Options{Checkpointed: fx.checkpoints > 0, Relaxed: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Bytes != int64(len(in)) || rep.DomainType != fx.domain || rep.Checkpoints != fx.checkpoints {
				t.Errorf("summary %+v", rep.Summary)
			}
			if (rep.Config != nil) != (fx.format == FormatXL) {
				t.Errorf("config %v for format %v", rep.Config, fx.format)
			}
			switch fx.domain {
			case "x86 PV":
				if c := rep.VCPUs[0]; c == nil || c.Width() != pv.Width64 || !c.Online() || rep.HVM != nil || rep.Config.CInfo.Type != "pv" {
					t.Errorf("PV report: vCPUs %v, HVM %v", rep.VCPUs, rep.HVM)
				}
			case "x86 HVM":
				if rep.HVM == nil || rep.HVM.CPU(0) == nil || rep.VCPUs != nil || (rep.Config != nil && rep.Config.CInfo.Type != "pvh") {
					t.Errorf("PVH report: HVM %v, vCPUs %v", rep.HVM, rep.VCPUs)
				}
			}
		})
	}
}

// TestVerifyDeeper shows what Verify checks beyond a strict Walk: the HVM
// context's entries. (The JSON configuration is checked by the strict xl
// header read itself.) Each mutated image still
// walks strictly (the control) and fails Verify at the right place.
func TestVerifyDeeper(t *testing.T) {
	in := fixture(t, "guest3-pvh.xl")
	var hvmBody int64
	_, err := Walk(bytes.NewReader(in), Options{}, func(it *Item) error {
		if _, ok := it.Libxc.(*libxc.HVMContext); ok {
			hvmBody = it.Offset + stream.HeaderSize
		}
		return nil
	})
	if err != nil || hvmBody == 0 {
		t.Fatal("no HVM_CONTEXT", err)
	}
	badMagic := bytes.Clone(in)
	badMagic[hvmBody+hvm.DescriptorSize] ^= 0xff
	// Turn the END entry into one of an unknown type: the context then
	// runs out without an END.
	var hvmLen int
	Walk(bytes.NewReader(in), Options{}, func(it *Item) error {
		if r, ok := it.Libxc.(*libxc.HVMContext); ok {
			hvmLen = len(r.Data)
		}
		return nil
	})
	noEnd := bytes.Clone(in)
	endAt := hvmBody + int64(hvmLen) - hvm.DescriptorSize
	noEnd[endAt] = 0x15
	for _, tc := range []struct {
		name  string
		in    []byte
		layer string
		off   int64
		err   error
	}{
		{"HVM HEADER magic", badMagic, hvm.Layer, hvmBody, stream.ErrValue},
		{"HVM END", noEnd, hvm.Layer, endAt + hvm.DescriptorSize, hvm.ErrNoEnd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Walk(bytes.NewReader(tc.in), Options{}, nil); err != nil {
				t.Fatalf("control: strict Walk fails already: %v", err)
			}
			_, err := Verify(bytes.NewReader(tc.in), Options{})
			var fe *stream.FormatError
			if !errors.As(err, &fe) || fe.Layer != tc.layer || !errors.Is(err, tc.err) || (tc.off != 0 && fe.Offset != tc.off) {
				t.Errorf("Verify: %v", err)
			}
		})
	}
	if _, err := Verify(bytes.NewReader(in[:len(in)-100]), Options{}); !errors.Is(err, stream.ErrTruncated) {
		t.Errorf("truncated image: %v", err)
	}
}
