package compat

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	fixturepkg "github.com/xensr/xensr/internal/fixture"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// fixture returns a copy of the decompressed stream/testdata/NAME.zst.
func fixture(t testing.TB, name string) []byte {
	return bytes.Clone(fixturepkg.Load(t, name))
}

// growLAPIC re-encodes an image with every HVM LAPIC record in Xen 4.21's
// 32-byte layout (pending_esr zero), as Xen 4.21 and later write them, and
// the libxc domain header naming Xen writer: what a 4.21 save looks like.
// It fails t when the image has no LAPIC record to grow.
func growLAPIC(t testing.TB, img []byte, writer Version) []byte {
	t.Helper()
	var out bytes.Buffer
	enc := image.NewEncoder(&out)
	grown := 0
	_, err := image.Walk(bytes.NewReader(img), image.Options{}, func(it *image.Item) error {
		if it.LibxcDomain != nil {
			d := *it.LibxcDomain
			d.XenMajor, d.XenMinor = writer.Major, writer.Minor
			it.LibxcDomain = &d
		}
		if hc, ok := it.Libxc.(*libxc.HVMContext); ok {
			ctx, err := hvm.Decode(hc.Data)
			if err != nil {
				return err
			}
			for i := range ctx.Entries {
				if e := &ctx.Entries[i]; e.Typecode == hvm.TypeLAPIC {
					e.Length = hvm.LAPICSize
					grown++
				}
			}
			data, err := hvm.Encode(ctx)
			if err != nil {
				return err
			}
			it.Libxc = &libxc.HVMContext{Data: data}
		}
		return enc.Encode(it)
	})
	if err != nil {
		t.Fatal(err)
	}
	if grown == 0 {
		t.Fatal("growLAPIC: no LAPIC record in the image")
	}
	return out.Bytes()
}

func check(t *testing.T, img []byte, target Version) *Report {
	t.Helper()
	rep, err := Check(bytes.NewReader(img), image.Options{}, target)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestCheckRealImages: the lab's xl save images of Xen 4.17 (PVH and PV)
// restore on every release in the tables.
func TestCheckRealImages(t *testing.T) {
	for _, name := range []string{"guest3-pvh.xl", "guest1-pv.xl"} {
		img := fixture(t, name)
		for _, target := range []Version{{4, 17, 0}, {4, 20, 0}, {4, 21, 0}, {4, 22, 0}} {
			rep := check(t, img, target)
			if rep.Writer != (Version{4, 17, 0}) || rep.Err() != nil || len(rep.Notes) != 0 {
				t.Errorf("%s on %s: writer %s, err %v, notes %q", name, target, rep.Writer, rep.Err(), rep.Notes)
			}
		}
	}
}

// TestCheckRefusesLongLAPIC: the PVH image with its LAPIC records grown to
// 4.21's 32 bytes is refused on 4.17 and 4.20, naming the record, its
// offset and both versions, and accepted on 4.21 and 4.22.
func TestCheckRefusesLongLAPIC(t *testing.T) {
	img := growLAPIC(t, fixture(t, "guest3-pvh.xl"), Version{4, 21, 0})
	for _, target := range []Version{{4, 17, 0}, {4, 17, 7}, {4, 18, 4}, {4, 19, 1}, {4, 20, 0}} {
		rep := check(t, img, target)
		err := rep.Err()
		var ce *Error
		if !errors.As(err, &ce) || !errors.Is(err, ErrIncompatible) || len(rep.Problems) != 1 {
			t.Fatalf("on %s: %v (%d problems)", target, err, len(rep.Problems))
		}
		p := rep.Problems[0]
		if p.Offset <= 0 || p.Offset >= int64(len(img)) || !bytes.Equal(img[p.Offset:p.Offset+2], []byte{5, 0}) {
			t.Fatalf("problem offset %d does not point at the LAPIC descriptor", p.Offset)
		}
		for _, s := range []string{"Xen 4.21", "Xen " + target.String(), "HVM LAPIC instance 0", "32-byte record", "at most 24"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
		if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "newer Xen") {
			t.Errorf("notes %q", rep.Notes)
		}
	}
	// 4.21 on, and the stable releases that took pending_esr.
	for _, target := range []Version{{4, 21, 0}, {4, 22, 0}, {4, 20, 1}, {4, 20, 5}, {4, 19, 2}, {4, 18, 5}} {
		if rep := check(t, img, target); rep.Err() != nil {
			t.Errorf("on %s: %v", target, rep.Err())
		}
	}
}

// TestCheckHVMContextUnknownTypecode: a typecode no release knows is
// refused (Xen's loader fails on it).
func TestCheckHVMContextUnknownTypecode(t *testing.T) {
	ctx := &hvm.Context{Entries: []hvm.Entry{
		{Typecode: 42, Record: &hvm.Raw{Code: 42, Data: make([]byte, 8)}},
		{Typecode: hvm.TypeEnd, Record: &hvm.End{}},
	}}
	data, err := hvm.Encode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := CheckHVMContext(data, 100, Version{4, 20, 0})
	if err != nil || len(ps) != 1 || ps[0].Offset != 100 || !strings.Contains(ps[0].Reason, "typecode 42 is unknown to Xen 4.20") {
		t.Fatalf("problems %v, err %v", ps, err)
	}
}

// TestHVMRecordSize pins the one size that differs between releases and
// the variable-length records.
func TestHVMRecordSize(t *testing.T) {
	for _, c := range []struct {
		v     Version
		tc    hvm.Typecode
		size  int
		fixed bool
	}{
		{Version{4, 17, 0}, hvm.TypeLAPIC, 24, true}, {Version{4, 20, 0}, hvm.TypeLAPIC, 24, true},
		{Version{4, 21, 0}, hvm.TypeLAPIC, 32, true}, {Version{4, 22, 0}, hvm.TypeLAPIC, 32, true},
		{Version{4, 17, 0}, hvm.TypeCPU, 1032, true}, {Version{4, 20, 0}, hvm.TypeCPUXSave, 0, false},
	} {
		if size, fixed, ok := HVMRecordSize(c.v, c.tc); !ok || size != c.size || fixed != c.fixed {
			t.Errorf("%s %s: %d %v %v", c.v, c.tc, size, fixed, ok)
		}
	}
	if _, _, ok := HVMRecordSize(Version{4, 20, 0}, 42); ok {
		t.Error("typecode 42 known")
	}
}

// TestCheckMalformed: a broken image is an error, not a report.
func TestCheckMalformed(t *testing.T) {
	img := fixture(t, "guest3-pvh.xl")
	if _, err := Check(bytes.NewReader(img[:len(img)/2]), image.Options{}, Version{4, 20, 0}); err == nil {
		t.Fatal("truncated image checked fine")
	}
}
