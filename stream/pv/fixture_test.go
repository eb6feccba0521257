package pv_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	fixturepkg "github.com/xensr/xensr/internal/fixture"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

// fixture returns the decompressed bytes of stream/testdata/NAME.zst.
func fixture(t testing.TB, name string) []byte { return fixturepkg.Load(t, name) }

// checkImage decodes vCPU0 of a PV image and checks it against the image's
// own records: CR3 and the GDT frames name PFNs below the P2M's end, and
// those the image sends are a pinned L4 page table and pages. Trimmed
// fixtures keep only some PAGE_DATA records; full images (all) must hold
// every one of those pages.
func checkImage(t *testing.T, in []byte, all bool) {
	var info libxc.X86PVInfo
	var basic []byte
	var endPFN uint64
	extended := 0
	types := map[uint64]libxc.PageType{}
	_, err := image.Walk(bytes.NewReader(in), image.Options{}, func(it *image.Item) error {
		switch r := it.Libxc.(type) {
		case *libxc.X86PVInfo:
			info = *r
		case *libxc.X86PVP2MFrames:
			endPFN = uint64(r.EndPFN)
		case *libxc.PageData:
			for i := range r.Entries {
				types[r.PFN(i)] = r.PageType(i)
			}
		case *libxc.VCPUContext:
			if r.Kind == libxc.TypeX86PVVCPUBasic && r.VCPU == 0 {
				basic = append([]byte(nil), r.Context...)
				c, err := pv.DecodeRecord(&info, r, it.Offset)
				if err != nil {
					return err
				}
				if c.Width() != pv.Width64 {
					t.Errorf("width %d", c.Width())
				}
			}
			if r.Kind == libxc.TypeX86PVVCPUExtended {
				e, err := pv.DecodeExtended(r.Context)
				if err != nil {
					return err
				}
				// Xen fills in vcpu and the size it wrote, which libxc
				// uses as the record's length.
				if e.VCPU != r.VCPU || int(e.Size) != len(r.Context) || e.Size != pv.ExtendedSize {
					t.Errorf("EXTENDED: vcpu %d size %d, record vCPU %d, %d bytes", e.VCPU, e.Size, r.VCPU, len(r.Context))
				}
				if out, err := e.AppendBinary(nil); err != nil || !bytes.Equal(out, r.Context) {
					t.Errorf("EXTENDED re-encodes differently: %v", err)
				}
				extended++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if extended == 0 {
		t.Errorf("no X86_PV_VCPU_EXTENDED record")
	}
	if info.GuestWidth != pv.Width64 || basic == nil || endPFN == 0 {
		t.Fatalf("PV info %+v, BASIC %d bytes, P2M end %#x", info, len(basic), endPFN)
	}
	c, err := pv.Decode(basic, int(info.GuestWidth))
	if err != nil {
		t.Fatal(err)
	}
	c64 := c.(*pv.Context64)
	pfns := map[string]uint64{"CR3": c.CR3PFN()}
	if u := c64.UserCR3PFN(); u != 0 {
		pfns["user CR3"] = u
	}
	if c64.GDTEnts == 0 {
		t.Errorf("no GDT entries")
	}
	for i := uint64(0); i < (c64.GDTEnts*8+4095)/4096; i++ {
		pfns[fmt.Sprintf("GDT frame %d", i)] = c64.GDTFrames[i]
	}
	sent := 0
	for what, pfn := range pfns {
		pt, ok := types[pfn]
		switch {
		case pfn > endPFN:
			t.Errorf("%s: PFN %#x beyond the P2M end %#x", what, pfn, endPFN)
		case !ok && all:
			t.Errorf("%s: PFN %#x not in the image", what, pfn)
		case ok && strings.Contains(what, "CR3") && pt != libxc.PageL4Pinned:
			t.Errorf("%s: PFN %#x has page type %v, want L4TAB_PIN", what, pfn, pt)
		}
		if ok {
			sent++
		}
	}
	// A 64-bit PV Linux kernel: online, kernel mode, a kernel RIP and
	// stack.
	if !c.Online() || c64.Flags&pv.FlagInKernel == 0 || c.IP() < 0xffff800000000000 || c64.KernelSP < 0xffff800000000000 {
		t.Errorf("flags %#x rip %#x kernel_sp %#x", c64.Flags, c.IP(), c64.KernelSP)
	}
	out, err := pv.Encode(c)
	if err != nil || !bytes.Equal(out, basic) {
		t.Fatalf("re-encoding differs: %v", err)
	}
	t.Logf("vCPU0: rip %#x rsp %#x cr3 pfn %#x, %d GDT entries; %d of %d frames it names are in the image", c.IP(), c.SP(), c.CR3PFN(), c64.GDTEnts, sent, len(pfns))
}

// TestFixture checks vCPU0 of the trimmed real Xen 4.17 PV images.
func TestFixture(t *testing.T) {
	for _, name := range []string{"guest1-pv.xl", "guest1-pv-save-c.xl"} {
		t.Run(name, func(t *testing.T) { checkImage(t, fixture(t, name), false) })
	}
}

// TestFullImage checks vCPU0 of the full lab PV image, where every frame
// the context names must be present.
func TestFullImage(t *testing.T) {
	dir := os.Getenv("XENSR_IMAGES")
	if dir == "" {
		t.Skip("SKIP-NEEDS-IMAGES: set XENSR_IMAGES to a folder of full lab images (scripts/lab.sh keeps them)")
	}
	in, err := os.ReadFile(filepath.Join(dir, "guest1-pv.save"))
	if err != nil {
		t.Skip("SKIP-NEEDS-IMAGES: ", err)
	}
	checkImage(t, in, true)
}
