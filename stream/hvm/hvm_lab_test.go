//go:build linux

package hvm_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
)

func labDomid(t *testing.T, name string) uint32 {
	t.Helper()
	id, err := strconv.Atoi(strings.TrimSpace(labtest.Run(t, "xl", "domid", name)))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(id)
}

// liveContext reads a domain's HVM context from Xen and decodes it; the
// decode must re-encode to Xen's exact bytes.
func liveContext(t *testing.T, x *hypercall.Xen, dom uint32) *hvm.Context {
	t.Helper()
	b, err := x.GetHVMContext(dom)
	if err != nil {
		t.Fatal(err)
	}
	c, err := hvm.Decode(b)
	if err != nil {
		t.Fatalf("Xen's live HVM context does not decode: %v", err)
	}
	if out, err := hvm.Encode(c); err != nil || !bytes.Equal(out, b) {
		t.Fatalf("Xen's live HVM context re-encodes differently (%v)", err)
	}
	return c
}

// TestLabHVMContextAgreesWithXen saves a PVH guest with `xl save`, decodes
// the HVM_CONTEXT record of the image (and Verify checks the whole image),
// restores it paused with `xl restore -p`, and compares the decoded record
// field by field with what Xen reports for the restored guest through
// XEN_DOMCTL_gethvmcontext: vCPU0's registers, control and segment state,
// MSRs, LAPIC, APIC registers and MTRRs. Because both sides of that go
// through this package's decoder, it also compares the registers with
// XEN_DOMCTL_getvcpucontext of the restored vCPU, a different structure
// decoded by package pv. Then it unpauses the guest and checks that it
// counts on.
func TestLabHVMContextAgreesWithXen(t *testing.T) {
	labtest.Require(t)
	x, err := hypercall.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	name := labtest.CreateGuest(t, labtest.GuestPVH)

	// Xen's live context of the running guest decodes too.
	dom := labDomid(t, name)
	if err := x.PauseDomain(dom); err != nil {
		t.Fatal(err)
	}
	live := liveContext(t, x, dom)
	if err := x.UnpauseDomain(dom); err != nil {
		t.Fatal(err)
	}
	t.Logf("live context of %s (domain %d): %d entries, vCPUs %v, LAPIC %d bytes", name, dom, len(live.Entries), live.VCPUs(), live.Find(hvm.TypeLAPIC, 0).Length)

	path := filepath.Join(t.TempDir(), "hvm-lab-guest3.save")
	labtest.Run(t, "xl", "save", name, path)
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := image.Verify(f, image.Options{})
	f.Close()
	if err != nil {
		t.Fatalf("Verify of the saved image: %v", err)
	}
	saved := rep.HVM
	if saved == nil || rep.Config == nil || rep.Config.CInfo.Name != name {
		t.Fatalf("report: HVM %v, config %+v", saved, rep.Config)
	}
	// The record's raw bytes, for the byte-exact re-encoding.
	f, _ = os.Open(path)
	var raw []byte
	image.Walk(f, image.Options{}, func(it *image.Item) error {
		if r, ok := it.Libxc.(*libxc.HVMContext); ok {
			raw = append([]byte(nil), r.Data...)
		}
		return nil
	})
	f.Close()
	if out, err := hvm.Encode(saved); err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("saved context re-encodes differently (%v)", err)
	}

	labtest.Run(t, "xl", "restore", "-p", path)
	dom = labDomid(t, name)
	restored := liveContext(t, x, dom)

	s, r := saved.CPU(0), restored.CPU(0)
	if s == nil || r == nil {
		t.Fatalf("CPU 0: saved %v, restored %v", s, r)
	}
	type pair struct {
		name      string
		got, want uint64
	}
	u := func(v uint32) uint64 { return uint64(v) }
	fields := []pair{
		{"rax", r.RAX, s.RAX}, {"rbx", r.RBX, s.RBX}, {"rcx", r.RCX, s.RCX}, {"rdx", r.RDX, s.RDX},
		{"rbp", r.RBP, s.RBP}, {"rsi", r.RSI, s.RSI}, {"rdi", r.RDI, s.RDI}, {"rsp", r.RSP, s.RSP},
		{"r8", r.R8, s.R8}, {"r9", r.R9, s.R9}, {"r10", r.R10, s.R10}, {"r11", r.R11, s.R11},
		{"r12", r.R12, s.R12}, {"r13", r.R13, s.R13}, {"r14", r.R14, s.R14}, {"r15", r.R15, s.R15},
		{"rip", r.RIP, s.RIP}, {"rflags", r.RFLAGS, s.RFLAGS},
		{"cr0", r.CR0, s.CR0}, {"cr2", r.CR2, s.CR2}, {"cr3", r.CR3, s.CR3}, {"cr4", r.CR4, s.CR4},
		{"dr7", r.DR7, s.DR7},
		{"cs_sel", u(r.CSSel), u(s.CSSel)}, {"ss_sel", u(r.SSSel), u(s.SSSel)}, {"tr_sel", u(r.TRSel), u(s.TRSel)},
		{"cs_arbytes", u(r.CSArbytes), u(s.CSArbytes)}, {"tr_limit", u(r.TRLimit), u(s.TRLimit)},
		{"gdtr_base", r.GDTRBase, s.GDTRBase}, {"gdtr_limit", u(r.GDTRLimit), u(s.GDTRLimit)},
		{"idtr_base", r.IDTRBase, s.IDTRBase}, {"idtr_limit", u(r.IDTRLimit), u(s.IDTRLimit)},
		{"fs_base", r.FSBase, s.FSBase}, {"gs_base", r.GSBase, s.GSBase}, {"tr_base", r.TRBase, s.TRBase},
		{"shadow_gs", r.ShadowGS, s.ShadowGS}, {"sysenter_eip", r.SysenterEIP, s.SysenterEIP},
		{"msr_lstar", r.MSRLSTAR, s.MSRLSTAR}, {"msr_star", r.MSRSTAR, s.MSRSTAR}, {"msr_cstar", r.MSRCSTAR, s.MSRCSTAR},
		{"msr_syscall_mask", r.MSRSyscallMask, s.MSRSyscallMask}, {"msr_efer", r.MSREFER, s.MSREFER},
		{"msr_tsc_aux", r.MSRTSCAux, s.MSRTSCAux}, {"flags", u(r.Flags), u(s.Flags)},
	}
	sl, rl := saved.LAPIC(0), restored.LAPIC(0)
	fields = append(fields,
		pair{"apic_base_msr", rl.APICBaseMSR, sl.APICBaseMSR}, pair{"lapic disabled", u(rl.Disabled), u(sl.Disabled)},
		pair{"timer_divisor", u(rl.TimerDivisor), u(sl.TimerDivisor)})
	sr := saved.Find(hvm.TypeLAPICRegs, 0).Record.(*hvm.LAPICRegs)
	rr := restored.Find(hvm.TypeLAPICRegs, 0).Record.(*hvm.LAPICRegs)
	for _, reg := range []struct {
		name string
		off  int
	}{{"apic id", 0x20}, {"apic tpr", 0x80}, {"apic ldr", 0xd0}, {"apic svr", 0xf0}, {"apic lvt timer", 0x320}, {"apic lvt lint0", 0x350}, {"apic timer divide", 0x3e0}} {
		fields = append(fields, pair{reg.name, u(rr.Reg(reg.off)), u(sr.Reg(reg.off))})
	}
	sm := saved.Find(hvm.TypeMTRR, 0).Record.(*hvm.MTRR)
	rm := restored.Find(hvm.TypeMTRR, 0).Record.(*hvm.MTRR)
	fields = append(fields, pair{"pat", rm.PAT, sm.PAT}, pair{"mtrr def_type", rm.DefType, sm.DefType}, pair{"mtrr cap", rm.Cap, sm.Cap})
	for i := range sm.Var {
		fields = append(fields, pair{"mtrr var " + strconv.Itoa(i), rm.Var[i], sm.Var[i]})
	}
	for _, p := range fields {
		if p.got != p.want {
			t.Errorf("%s: Xen reports %#x for the restored guest, our decode of the saved record %#x", p.name, p.got, p.want)
		}
	}
	if !bytes.Equal(s.FPURegs[:], r.FPURegs[:]) {
		t.Errorf("fpu_regs differ")
	}
	t.Logf("vCPU0 as saved and as Xen reports it after restore: rip %#x rsp %#x cr0 %#x cr3 %#x cr4 %#x efer %#x; %d fields agree; LAPIC entry %d bytes (Xen 4.17: %v)",
		s.RIP, s.RSP, s.CR0, s.CR3, s.CR4, s.MSREFER, len(fields), saved.Find(hvm.TypeLAPIC, 0).Length, saved.Find(hvm.TypeLAPIC, 0).Short())

	// An independent source: Xen's vcpu_guest_context of the restored
	// vCPU (XEN_DOMCTL_getvcpucontext, another layout and another path in
	// Xen), decoded by package pv, against our decode of the saved record.
	vb, err := x.GetVCPUContext(dom, 0)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := pv.Decode(vb, pv.Width64)
	if err != nil {
		t.Fatal(err)
	}
	g := vc.(*pv.Context64)
	ur := g.UserRegs
	indep := []pair{
		{"rip", ur.RIP, s.RIP}, {"rsp", ur.RSP, s.RSP}, {"rflags", ur.RFLAGS, s.RFLAGS},
		{"rax", ur.RAX, s.RAX}, {"rbx", ur.RBX, s.RBX}, {"rcx", ur.RCX, s.RCX}, {"rdx", ur.RDX, s.RDX},
		{"rsi", ur.RSI, s.RSI}, {"rdi", ur.RDI, s.RDI}, {"rbp", ur.RBP, s.RBP},
		{"r8", ur.R8, s.R8}, {"r12", ur.R12, s.R12}, {"r15", ur.R15, s.R15},
		{"cr0", g.CtrlReg[0], s.CR0}, {"cr2", g.CtrlReg[2], s.CR2}, {"cr3", g.CtrlReg[3], s.CR3}, {"cr4", g.CtrlReg[4], s.CR4},
		{"cs", uint64(ur.CS), u(s.CSSel)}, {"ss", uint64(ur.SS), u(s.SSSel)}, {"fs_base", g.FSBase, s.FSBase},
	}
	for _, p := range indep {
		if p.got != p.want {
			t.Errorf("%s: getvcpucontext reports %#x, our decode of the saved HVM record %#x", p.name, p.got, p.want)
		}
	}
	if !(g.GSBaseKernel == s.GSBase && g.GSBaseUser == s.ShadowGS) && !(g.GSBaseKernel == s.ShadowGS && g.GSBaseUser == s.GSBase) {
		t.Errorf("gs bases: getvcpucontext kernel %#x user %#x, HVM record gs_base %#x shadow_gs %#x", g.GSBaseKernel, g.GSBaseUser, s.GSBase, s.ShadowGS)
	}
	t.Logf("getvcpucontext of the restored vCPU0 (a different layout, decoded by stream/pv) agrees on %d registers and the gs bases", len(indep))

	// The guest goes on from where it was saved.
	before := labtest.Counter(name)
	labtest.Run(t, "xl", "unpause", name)
	labtest.WaitCounter(t, name, before, 2*time.Minute)
}
