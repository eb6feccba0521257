package hvm_test

import (
	"bytes"
	"reflect"
	"testing"

	fixturepkg "github.com/xensr/xensr/internal/fixture"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// fixture returns the decompressed bytes of stream/testdata/NAME.zst.
func fixture(t testing.TB, name string) []byte { return fixturepkg.Load(t, name) }

// hvmRecords returns copies of the HVM_CONTEXT bodies of an image with the
// absolute offsets of the bodies, and the TSC kHz of its X86_TSC_INFO.
type found struct {
	body []byte
	off  int64
}

func contexts(t testing.TB, name string, checkpointed bool) (out []found, khz uint32) {
	t.Helper()
	_, err := image.Walk(bytes.NewReader(fixture(t, name)), image.Options{Checkpointed: checkpointed}, func(it *image.Item) error {
		switch r := it.Libxc.(type) {
		case *libxc.HVMContext:
			out = append(out, found{append([]byte(nil), r.Data...), it.Offset + stream.HeaderSize})
		case *libxc.X86TSCInfo:
			khz = r.KHz
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, khz
}

// TestFixtures decodes the HVM contexts of the real Xen 4.17 PVH images,
// checks them against other records of the same image and re-encodes them
// byte for byte.
func TestFixtures(t *testing.T) {
	for _, fx := range []struct {
		name         string
		checkpointed bool
		rounds       int
	}{
		{"guest3-pvh.xl", false, 1},
		{"guest3-pvh-migrate.xl", false, 1},
		{"synthetic-pvh-checkpointed.libxl", true, 3},
	} {
		t.Run(fx.name, func(t *testing.T) {
			ctxs, khz := contexts(t, fx.name, fx.checkpointed)
			if len(ctxs) != fx.rounds {
				t.Fatalf("%d HVM_CONTEXT records, want %d", len(ctxs), fx.rounds)
			}
			for _, f := range ctxs {
				c, err := hvm.DecodeOptions(f.body, hvm.Options{Offset: f.off})
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range c.Entries {
					names = append(names, e.Typecode.String())
					if _, raw := e.Record.(*hvm.Raw); raw {
						t.Errorf("entry %s decoded as raw", e.Typecode)
					}
				}
				want := []string{"HEADER", "CPU", "LAPIC", "LAPIC_REGS", "PCI_IRQ", "ISA_IRQ", "PCI_LINK", "MTRR", "VMCE_VCPU", "TSC_ADJUST", "END"}
				if !reflect.DeepEqual(names, want) {
					t.Errorf("entries %v, want %v", names, want)
				}
				if c.Entries[0].Offset != f.off || c.Entries[1].Offset != f.off+hvm.DescriptorSize+hvm.HeaderSize {
					t.Errorf("offsets %d, %d from body offset %d", c.Entries[0].Offset, c.Entries[1].Offset, f.off)
				}
				h := c.Header()
				if h == nil || h.GTSCKHz != khz || khz == 0 {
					t.Errorf("HEADER gtsc_khz %+v, X86_TSC_INFO says %d kHz", h, khz)
				}
				cpu := c.CPU(0)
				if cpu == nil || !reflect.DeepEqual(c.VCPUs(), []uint16{0}) {
					t.Fatalf("vCPUs %v", c.VCPUs())
				}
				// A 64-bit Linux PVH guest: paging and protection on, long
				// mode active, a kernel RIP in the upper half.
				const cr0PE, cr0PG, eferLMA = 1, 1 << 31, 1 << 10
				if cpu.CR0&(cr0PE|cr0PG) != cr0PE|cr0PG || cpu.MSREFER&eferLMA == 0 || cpu.RIP < 0xffff800000000000 {
					t.Errorf("CPU cr0 %#x efer %#x rip %#x: not a 64-bit kernel", cpu.CR0, cpu.MSREFER, cpu.RIP)
				}
				if cpu.Flags&hvm.CPUFPUInitialised == 0 {
					t.Errorf("CPU flags %#x", cpu.Flags)
				}
				lapic := c.Find(hvm.TypeLAPIC, 0)
				if lapic.Length != hvm.LAPICSizeLegacy || !lapic.Short() || c.Find(hvm.TypeCPU, 0).Short() {
					t.Errorf("Xen 4.17 LAPIC entry: length %d, short %v", lapic.Length, lapic.Short())
				}
				// The x2APIC/xAPIC base MSR holds the default base and the
				// BSP bit for vCPU 0.
				const apicBaseBSP, apicBaseDefault = 1 << 8, 0xfee00000
				if l := c.LAPIC(0); l.APICBaseMSR&apicBaseBSP == 0 || l.APICBaseMSR&0xfffff000 != apicBaseDefault {
					t.Errorf("apic_base_msr %#x", l.APICBaseMSR)
				}
				out, err := hvm.Encode(c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, f.body) {
					t.Fatalf("re-encoding differs (%d vs %d bytes)", len(out), len(f.body))
				}
			}
		})
	}
}
