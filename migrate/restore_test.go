package migrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/xl"
)

// restoreConfig is a PVH configuration big enough for newFakeDomain(n) with
// n up to 4000 pages (RAM plus the special pages at the top).
const restoreConfig = `{"c_info":{"type":"pvh","name":"guest3","uuid":"6a1b7c2d-0e3f-4a5b-8c9d-aabbccddeeff","hap":"True"},
 "b_info":{"max_vcpus":2,"avail_vcpus":[0],"max_memkb":20480,"target_memkb":16384,"shadow_memkb":2048,
 "event_channels":1023,"max_grant_frames":64,"max_maptrack_frames":1024,"max_grant_version":1,"tsc_mode":"default",
 "vcpu_hard_affinity":[[1],[0,1]],"vcpu_soft_affinity":[[1]]}}`

func restoreImage(t *testing.T, pages int, live bool) (*fakeDomain, []byte) {
	t.Helper()
	f := newFakeDomain(pages)
	if live {
		f.onClean = func(f *fakeDomain, call int) {
			for i := 0; i < 50*(3-min(call, 3)); i++ {
				f.setPage(uint64(i*7), 0x77, uint32(call+1))
			}
		}
	}
	img, _, _ := saveFake(t, f, SaveOptions{Live: live, Config: []byte(restoreConfig)})
	return f, img
}

// checkRestored compares the restored domain with the saved one.
func checkRestored(t *testing.T, f *fakeDomain, b *fakeBuilder, ts *fakeToolstack, r *Restored) {
	t.Helper()
	d := b.doms[r.Domid]
	if d == nil || d.destroyed || d.paused {
		t.Fatalf("domain %d: exists %v, destroyed or paused", r.Domid, d != nil)
	}
	if len(d.mem) != len(f.mem) {
		t.Errorf("%d frames populated, the source has %d", len(d.mem), len(f.mem))
	}
	rings := map[uint64]bool{f.params[hypercall.HVMParamStorePFN]: true, f.params[hypercall.HVMParamConsolePFN]: true}
	for p, pg := range f.mem {
		got := d.mem[p]
		switch {
		case got == nil:
			t.Errorf("pfn %#x not populated", p)
		case rings[p]:
			if !bytes.Equal(got, make([]byte, PageSize)) {
				t.Errorf("ring page %#x not cleared", p)
			}
		case !bytes.Equal(got, pg):
			t.Errorf("pfn %#x differs", p)
		}
	}
	c := d.create
	if c.Flags != hypercall.CreateHVM|hypercall.CreateHAP || c.EmulationFlags != hypercall.EmuLAPIC || c.MaxVCPUs != 2 ||
		c.MaxEvtchnPort != 1023 || c.MaxGrantFrames != 64 || c.GrantOpts != 1 || FormatUUID(c.Handle) != "6a1b7c2d-0e3f-4a5b-8c9d-aabbccddeeff" {
		t.Errorf("createdomain %+v", c)
	}
	if d.maxVCPUs != 2 || d.maxMemKB != 16384+1024 || d.pool != 2048<<10 {
		t.Errorf("max_vcpus %d max_mem %d pool %d", d.maxVCPUs, d.maxMemKB, d.pool)
	}
	if want := map[uint32][2][]int{0: {{1}, {1}}, 1: {{0, 1}, nil}}; !reflect.DeepEqual(d.affinity, want) {
		t.Errorf("vcpu affinity (hard, soft) %v, want %v", d.affinity, want)
	}
	if !bytes.Equal(d.ctx, f.ctx) || !bytes.Equal(d.cpuid, f.cpuid) || !bytes.Equal(d.msr, f.msr) {
		t.Error("HVM context or CPU policy not loaded verbatim")
	}
	if n := len(d.tsc); n != 2 || d.tsc[1].KHz != f.tsc.KHz || d.tsc[1].ElapsedNsec != f.tsc.ElapsedNsec {
		t.Errorf("tsc %+v", d.tsc)
	}
	for _, idx := range []uint32{hypercall.HVMParamStorePFN, hypercall.HVMParamConsolePFN, hypercall.HVMParamIdentPT} {
		if d.params[idx] != f.params[idx] {
			t.Errorf("hvm param %d = %#x, source %#x", idx, d.params[idx], f.params[idx])
		}
	}
	sp, cp := uint32(d.params[hypercall.HVMParamStoreEvtchn]), uint32(d.params[hypercall.HVMParamConsoleEvtchn])
	if _, ok := d.ports[sp]; !ok || sp == cp {
		t.Errorf("store port %d console port %d, allocated %v", sp, cp, d.ports)
	}
	if !d.seeded || d.gnt[0].Frame != uint32(f.params[hypercall.HVMParamConsolePFN]) || d.gnt[1].Frame != uint32(f.params[hypercall.HVMParamStorePFN]) ||
		d.gnt[0].Flags != grant.TypePermitAccess {
		t.Errorf("grant table %+v", d.gnt)
	}
	dom := fmt.Sprintf("/local/domain/%d", r.Domid)
	for p, want := range map[string]string{
		dom + "/name": r.Name, dom + "/store/port": fmt.Sprint(sp), dom + "/console/port": fmt.Sprint(cp),
		dom + "/store/ring-ref": fmt.Sprint(f.params[hypercall.HVMParamStorePFN]), dom + "/console/type": "xenconsoled",
		dom + "/memory/target": "16384", dom + "/cpu/0/availability": "online", dom + "/cpu/1/availability": "offline",
		fmt.Sprintf("/libxl/%d/type", r.Domid): "pvh", "/vm/6a1b7c2d-0e3f-4a5b-8c9d-aabbccddeeff/name": r.Name,
	} {
		if got, ok := ts.nodes[p]; !ok || got != want {
			t.Errorf("xenstore %s = %q (present %v), want %q", p, got, ok, want)
		}
	}
	if in := ts.introduced[r.Domid]; in != [2]uint64{f.params[hypercall.HVMParamStorePFN], uint64(sp)} {
		t.Errorf("introduce %v", in)
	}
	u := ts.userdata[UserdataPath(r.Domid, "6a1b7c2d-0e3f-4a5b-8c9d-aabbccddeeff")]
	if cfg, err := ParseDomainConfig(u); err != nil || cfg.Name != r.Name {
		t.Errorf("userdata file: %v %q", err, u)
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(fmt.Sprintf("live=%v", live), func(t *testing.T) {
			f, img := restoreImage(t, 3000, live)
			b, ts := newFakeBuilder(), newFakeToolstack()
			var progress []Progress
			r, err := Restore(context.Background(), b, ts, bytes.NewReader(img), RestoreOptions{OnProgress: func(p Progress) { progress = append(progress, p) }})
			if err != nil {
				t.Fatal(err)
			}
			if r.Name != "guest3" || r.Stats.Bytes != int64(len(img)) {
				t.Errorf("restored %+v (image %d bytes)", r, len(img))
			}
			checkRestored(t, f, b, ts, r)
			if len(progress) == 0 || progress[len(progress)-1].Done != r.Stats.Pages {
				t.Errorf("progress %v, pages %d", progress, r.Stats.Pages)
			}
		})
	}
}

// layers splits an xl image into its bare libxl stream and bare libxc
// stream.
func layers(t *testing.T, img []byte) (libxlStream, libxcStream []byte) {
	t.Helper()
	h, err := xl.ReadHeader(bytes.NewReader(img), xl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	libxlStream = img[h.Size():]
	// libxl header (16 bytes), LIBXC_CONTEXT record (8), ..., libxl END (8).
	libxcStream = libxlStream[16+8 : len(libxlStream)-8]
	return
}

func TestRestoreBareStreams(t *testing.T) {
	f, img := restoreImage(t, 1500, false)
	lx, lc := layers(t, img)
	for name, s := range map[string][]byte{"libxl": lx, "libxc": lc} {
		t.Run(name, func(t *testing.T) {
			b, ts := newFakeBuilder(), newFakeToolstack()
			if _, err := Restore(context.Background(), b, ts, bytes.NewReader(s), RestoreOptions{}); !errors.Is(err, ErrNoConfig) || b.creates != 0 {
				t.Fatalf("without a configuration: %v (%d created)", err, b.creates)
			}
			r, err := Restore(context.Background(), b, ts, bytes.NewReader(s), RestoreOptions{Config: []byte(restoreConfig), Name: "bare-" + name})
			if err != nil {
				t.Fatal(err)
			}
			checkRestored(t, f, b, ts, r)
		})
	}
}

// cutReader returns io.ErrClosedPipe after n bytes, like a sender that
// died.
type cutReader struct {
	r io.Reader
	n int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.ErrClosedPipe
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// TestRestoreCutLeavesNothing cuts the stream after the headers, in the
// middle of PAGE_DATA, just before the libxc END and just before the
// libxl END, both as a short file and as a broken pipe: the restore fails
// with the layer and offset, and nothing of the domain is left.
func TestRestoreCutLeavesNothing(t *testing.T) {
	_, img := restoreImage(t, 3000, false)
	h, _ := xl.ReadHeader(bytes.NewReader(img), xl.Options{})
	cuts := map[string]int{
		"after headers":      h.Size() + 16 + 8 + 24 + 16,
		"mid PAGE_DATA":      len(img) / 2,
		"before libxc END":   len(img) - 16,
		"before libxl END":   len(img) - 8,
		"one byte short":     len(img) - 1,
		"inside the xl head": 20,
	}
	for what, n := range cuts {
		for _, pipe := range []bool{false, true} {
			b, ts := newFakeBuilder(), newFakeToolstack()
			var r io.Reader = bytes.NewReader(img[:n])
			if pipe {
				r = &cutReader{r: bytes.NewReader(img), n: n}
			}
			_, err := Restore(context.Background(), b, ts, r, RestoreOptions{})
			var re *RestoreError
			if !errors.As(err, &re) {
				t.Fatalf("%s (pipe %v): err %v", what, pipe, err)
			}
			var fe *stream.FormatError
			if !pipe && !errors.As(err, &fe) {
				t.Errorf("%s: %v is not a stream.FormatError", what, err)
			}
			if pipe && !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("%s (pipe): %v does not wrap the read error", what, err)
			}
			if l := leftovers(b, ts); l != "" || (b.creates > 0 && !re.Cleaned) {
				t.Errorf("%s (pipe %v): left %s (%v)", what, pipe, l, err)
			}
		}
	}
}

func TestRestoreCancelLeavesNothing(t *testing.T) {
	_, img := restoreImage(t, 3000, false)
	b, ts := newFakeBuilder(), newFakeToolstack()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Restore(ctx, b, ts, bytes.NewReader(img), RestoreOptions{OnProgress: func(Progress) { cancel() }})
	if !errors.Is(err, context.Canceled) || b.creates != 1 {
		t.Fatalf("err %v, %d created", err, b.creates)
	}
	if l := leftovers(b, ts); l != "" {
		t.Fatalf("left %s", l)
	}
}

// TestRestoreHypercallFailure: each hypercall failing in turn names itself
// and its errno, and leaves nothing.
func TestRestoreHypercallFailure(t *testing.T) {
	_, img := restoreImage(t, 1200, false)
	for _, op := range []string{"createdomain", "max_vcpus", "setvcpuaffinity", "max_mem", "alloc_unbound", "settscinfo", "set_paging_mempool_size",
		"set_cpu_policy", "populate_physmap", "map", "set_param", "sethvmcontext", "gnttab_seed", "unpause"} {
		b, ts := newFakeBuilder(), newFakeToolstack()
		b.failOp = op
		_, err := Restore(context.Background(), b, ts, bytes.NewReader(img), RestoreOptions{})
		var he *hypercall.Error
		if !errors.As(err, &he) || he.Op != op || !strings.Contains(err.Error(), "invalid argument") {
			t.Errorf("%s failing: %v", op, err)
		}
		if l := leftovers(b, ts); l != "" {
			t.Errorf("%s failing: left %s", op, l)
		}
	}
	b, ts := newFakeBuilder(), newFakeToolstack()
	ts.failWrite = true
	if _, err := Restore(context.Background(), b, ts, bytes.NewReader(img), RestoreOptions{}); err == nil || leftovers(b, ts) != "" {
		t.Errorf("xenstore failing: %v, left %s", err, leftovers(b, ts))
	}
}

// TestRestoreRefusesBeforeCreating: a PV stream, a PV configuration and a
// name in use are refused before createdomain.
func TestRestoreRefusesBeforeCreating(t *testing.T) {
	_, img := restoreImage(t, 1000, false)
	h, _ := xl.ReadHeader(bytes.NewReader(img), xl.Options{})
	pv := bytes.Clone(img)
	// The libxc domain header follows the libxl header, the LIBXC_CONTEXT
	// record and the 24-byte libxc image header; its type is the first u32.
	binary.LittleEndian.PutUint32(pv[h.Size()+16+8+24:], uint32(libxc.DomainX86PV))
	pvConfig := strings.Replace(restoreConfig, `"type":"pvh"`, `"type":"pv"`, 1)
	cases := []struct {
		name string
		img  []byte
		opt  RestoreOptions
		ts   func(*fakeToolstack)
		want error
	}{
		{"PV stream", pv, RestoreOptions{}, nil, ErrNotPVH},
		{"PV config", img, RestoreOptions{Config: []byte(pvConfig)}, nil, ErrNotPVH},
		{"name in use", img, RestoreOptions{}, func(t *fakeToolstack) { t.names[3] = "guest3" }, ErrNameExists},
		{"renamed into use", img, RestoreOptions{Name: "Domain-0"}, nil, ErrNameExists},
	}
	for _, c := range cases {
		b, ts := newFakeBuilder(), newFakeToolstack()
		if c.ts != nil {
			c.ts(ts)
		}
		_, err := Restore(context.Background(), b, ts, bytes.NewReader(c.img), c.opt)
		if !errors.Is(err, c.want) || b.creates != 0 || len(b.ops) != 0 {
			t.Errorf("%s: err %v, %d created, ops %v", c.name, err, b.creates, b.ops)
		}
	}
}

func TestRestoreTooManyPages(t *testing.T) {
	_, img := restoreImage(t, 3000, false)
	small := strings.NewReplacer(`"max_memkb":20480`, `"max_memkb":4096`, `"target_memkb":16384`, `"target_memkb":4096`).Replace(restoreConfig)
	b, ts := newFakeBuilder(), newFakeToolstack()
	_, err := Restore(context.Background(), b, ts, bytes.NewReader(img), RestoreOptions{Config: []byte(small)})
	if !errors.Is(err, ErrTooManyPages) || leftovers(b, ts) != "" {
		t.Fatalf("err %v, left %s", err, leftovers(b, ts))
	}
	for _, op := range b.ops {
		if op == "populate_physmap" && len(b.doms[5].mem) > (4096+1024)/4 {
			t.Fatalf("populated %d frames beyond the limit", len(b.doms[5].mem))
		}
	}
}

func TestRestorePaused(t *testing.T) {
	f, img := restoreImage(t, 1000, false)
	b, ts := newFakeBuilder(), newFakeToolstack()
	r, err := Restore(context.Background(), b, ts, bytes.NewReader(img), RestoreOptions{Paused: true, Name: "guest3--incoming"})
	if err != nil || !b.doms[r.Domid].paused {
		t.Fatalf("paused restore: %v", err)
	}
	if err := r.Rename("guest3"); err != nil {
		t.Fatal(err)
	}
	if err := r.Unpause(); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, f, b, ts, r)
	if err := r.Destroy(); err != nil || leftovers(b, ts) != "" {
		t.Fatalf("Destroy: %v, left %s", err, leftovers(b, ts))
	}
}

func TestParseDomainConfigDefaults(t *testing.T) {
	c, err := ParseDomainConfig([]byte(`{"c_info":{"type":"pvh","name":"g"},"b_info":{"max_memkb":131072,"shadow_memkb":18446744073709551615,"video_memkb":-1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxVCPUs != 1 || c.TargetMemKB != 131072 || c.ShadowMemKB != 4*(256+2*128) || c.VideoMemKB != 0 || !c.HAP || c.TimerMode != 1 || c.EventChannels != 1023 || c.MaxGrantFrames != -1 {
		t.Errorf("defaults: %+v", c)
	}
	// At the limits: as many maps as vCPUs, the highest CPU Xen has.
	c, err = ParseDomainConfig([]byte(`{"b_info":{"max_memkb":1024,"max_vcpus":2,"vcpu_hard_affinity":[[0],[16383]],"vcpu_soft_affinity":[]}}`))
	if err != nil || len(c.VCPUHardAffinity) != 2 || c.VCPUHardAffinity[1][0] != hypercall.MaxCPUMapCPU || len(c.VCPUSoftAffinity) != 0 {
		t.Errorf("affinity at the limits: %v %+v", err, c)
	}
	for _, bad := range []string{`{`, `{"c_info":{"uuid":"xyz"}}`, `{"b_info":{"max_memkb":0}}`, `{"b_info":{"max_memkb":1024,"tsc_mode":"bogus"}}`,
		// Affinity: more maps than vCPUs, CPUs outside Xen's range, not a list.
		`{"b_info":{"max_memkb":1024,"max_vcpus":2,"vcpu_hard_affinity":[[0],[1],[0]]}}`,
		`{"b_info":{"max_memkb":1024,"vcpu_soft_affinity":[[1,16384]]}}`, `{"b_info":{"max_memkb":1024,"vcpu_hard_affinity":[[-1]]}}`,
		`{"b_info":{"max_memkb":1024,"vcpu_hard_affinity":"1"}}`} {
		if _, err := ParseDomainConfig([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
