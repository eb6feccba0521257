package migrate

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"

	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/hypercall"
)

// fakeBuilt is one domain in the fake hypervisor.
type fakeBuilt struct {
	create    hypercall.CreateDomain
	maxVCPUs  uint32
	affinity  map[uint32][2][]int // vCPU -> hard, soft CPUs (absent: never set)
	maxMemKB  uint64
	pool      uint64
	tsc       []hypercall.TSCInfo // every settscinfo, in order
	cpuid     []byte
	msr       []byte
	params    map[uint32]uint64
	ctx       []byte
	mem       map[uint64][]byte
	ports     map[uint32]uint32 // port -> remote domain
	gnt       [2]grant.EntryV1
	seeded    bool
	paused    bool
	destroyed bool
}

// fakeBuilder is an in-memory hypervisor for Restore's tests.
type fakeBuilder struct {
	next    uint32
	doms    map[uint32]*fakeBuilt
	creates int
	failOp  string // the operation that fails with EINVAL
	ops     []string
}

func newFakeBuilder() *fakeBuilder {
	return &fakeBuilder{next: 5, doms: map[uint32]*fakeBuilt{}}
}

func (f *fakeBuilder) op(name string, dom uint32) (*fakeBuilt, error) {
	f.ops = append(f.ops, name)
	if f.failOp == name {
		return nil, &hypercall.Error{Op: name, Domain: dom, Err: syscall.EINVAL}
	}
	d := f.doms[dom]
	if d == nil || d.destroyed {
		return nil, &hypercall.Error{Op: name, Domain: dom, Err: syscall.ESRCH}
	}
	return d, nil
}

// live returns the domains not destroyed.
func (f *fakeBuilder) live() []uint32 {
	var ids []uint32
	for id, d := range f.doms {
		if !d.destroyed {
			ids = append(ids, id)
		}
	}
	return ids
}

func (f *fakeBuilder) CreateDomain(c hypercall.CreateDomain) (uint32, error) {
	f.ops = append(f.ops, "createdomain")
	if f.failOp == "createdomain" {
		return 0, &hypercall.Error{Op: "createdomain", Err: syscall.EINVAL}
	}
	f.creates++
	id := f.next
	f.next++
	f.doms[id] = &fakeBuilt{create: c, params: map[uint32]uint64{}, mem: map[uint64][]byte{}, ports: map[uint32]uint32{}, paused: true}
	return id, nil
}

func (f *fakeBuilder) SetMaxVCPUs(dom, n uint32) error {
	d, err := f.op("max_vcpus", dom)
	if err == nil {
		d.maxVCPUs = n
	}
	return err
}

func (f *fakeBuilder) SetVCPUAffinity(dom, vcpu uint32, hard, soft hypercall.CPUMap) error {
	d, err := f.op("setvcpuaffinity", dom)
	if err != nil {
		return err
	}
	if vcpu >= d.maxVCPUs {
		return &hypercall.Error{Op: "setvcpuaffinity", Domain: dom, Err: syscall.EINVAL}
	}
	if d.affinity == nil {
		d.affinity = map[uint32][2][]int{}
	}
	a := d.affinity[vcpu]
	if hard != nil {
		a[0] = hard.CPUs()
	}
	if soft != nil {
		a[1] = soft.CPUs()
	}
	d.affinity[vcpu] = a
	return nil
}

func (f *fakeBuilder) SetMaxMem(dom uint32, kib uint64) error {
	d, err := f.op("max_mem", dom)
	if err == nil {
		d.maxMemKB = kib
	}
	return err
}

func (f *fakeBuilder) SetPagingMempoolSize(dom uint32, n uint64) error {
	d, err := f.op("set_paging_mempool_size", dom)
	if err == nil {
		d.pool = n
	}
	return err
}

func (f *fakeBuilder) SetTSCInfo(dom uint32, t hypercall.TSCInfo) error {
	d, err := f.op("settscinfo", dom)
	if err == nil {
		d.tsc = append(d.tsc, t)
	}
	return err
}

func (f *fakeBuilder) SetCPUPolicy(dom uint32, cpuid, msr []byte) error {
	d, err := f.op("set_cpu_policy", dom)
	if err == nil {
		d.cpuid, d.msr = append([]byte(nil), cpuid...), append([]byte(nil), msr...)
	}
	return err
}

func (f *fakeBuilder) SetHVMParam(dom, index uint32, v uint64) error {
	d, err := f.op("set_param", dom)
	if err == nil {
		d.params[index] = v
	}
	return err
}

func (f *fakeBuilder) SetHVMContext(dom uint32, ctx []byte) error {
	d, err := f.op("sethvmcontext", dom)
	if err == nil {
		d.ctx = append([]byte(nil), ctx...)
	}
	return err
}

func (f *fakeBuilder) PopulatePhysmap(dom uint32, gfns []uint64) error {
	d, err := f.op("populate_physmap", dom)
	if err != nil {
		return err
	}
	if uint64(len(d.mem)+len(gfns))*4 > d.maxMemKB {
		return &hypercall.Error{Op: "populate_physmap", Domain: dom, Err: syscall.ENOMEM}
	}
	for _, g := range gfns {
		if d.mem[g] != nil {
			return fmt.Errorf("fake: gfn %#x populated twice", g)
		}
		// Xen hands out scrubbed (zero) pages: what XALLOC relies on.
		d.mem[g] = make([]byte, PageSize)
	}
	return nil
}

func (f *fakeBuilder) MapWritable(dom uint32, gfns []uint64) (PageMap, error) {
	d, err := f.op("map", dom)
	if err != nil {
		return nil, err
	}
	m := &fakeMap{pages: make([][]byte, len(gfns)), errs: make([]error, len(gfns)), f: &fakeDomain{}}
	for i, g := range gfns {
		if d.mem[g] == nil {
			m.errs[i] = fmt.Errorf("fake: gfn %#x not populated", g)
		}
		m.pages[i] = d.mem[g]
	}
	return m, nil
}

func (f *fakeBuilder) AllocUnbound(dom, remote uint32) (uint32, error) {
	d, err := f.op("alloc_unbound", dom)
	if err != nil {
		return 0, err
	}
	p := uint32(len(d.ports) + 1)
	d.ports[p] = remote
	return p, nil
}

func (f *fakeBuilder) SeedGrantTable(dom uint32, console, store grant.EntryV1) error {
	d, err := f.op("gnttab_seed", dom)
	if err == nil {
		d.gnt, d.seeded = [2]grant.EntryV1{console, store}, true
	}
	return err
}

func (f *fakeBuilder) Unpause(dom uint32) error {
	d, err := f.op("unpause", dom)
	if err == nil {
		d.paused = false
	}
	return err
}

func (f *fakeBuilder) DestroyDomain(dom uint32) error {
	d := f.doms[dom]
	if d == nil || d.destroyed {
		return &hypercall.Error{Op: "destroydomain", Domain: dom, Err: syscall.ESRCH}
	}
	d.destroyed = true
	return nil
}

// fakeToolstack is an in-memory xenstore and userdata directory.
type fakeToolstack struct {
	names      map[uint32]string
	nodes      map[string]string
	userdata   map[string][]byte
	introduced map[uint32][2]uint64
	failWrite  bool
}

func newFakeToolstack() *fakeToolstack {
	return &fakeToolstack{names: map[uint32]string{0: "Domain-0"}, nodes: map[string]string{},
		userdata: map[string][]byte{}, introduced: map[uint32][2]uint64{}}
}

func (t *fakeToolstack) DomainNames() (map[uint32]string, error) {
	m := map[uint32]string{}
	for k, v := range t.names {
		m[k] = v
	}
	for p, v := range t.nodes {
		var id uint32
		if n, _ := fmt.Sscanf(p, "/local/domain/%d/name", &id); n == 1 && strings.HasSuffix(p, "/name") {
			m[id] = v
		}
	}
	return m, nil
}

func (t *fakeToolstack) ServiceDomains() (uint32, uint32, error) { return 0, 0, nil }

func (t *fakeToolstack) WriteNodes(nodes []Node) error {
	if t.failWrite {
		return errors.New("fake: xenstore transaction failed")
	}
	for _, n := range nodes {
		t.nodes[n.Path] = n.Value
	}
	return nil
}

func (t *fakeToolstack) Introduce(dom uint32, gfn uint64, port uint32) error {
	t.introduced[dom] = [2]uint64{gfn, uint64(port)}
	return nil
}

func (t *fakeToolstack) WriteUserdata(dom uint32, uuid [16]byte, config []byte) error {
	t.userdata[UserdataPath(dom, FormatUUID(uuid))] = append([]byte(nil), config...)
	return nil
}

func (t *fakeToolstack) Cleanup(dom uint32, uuid [16]byte, roots []string) error {
	for p := range t.nodes {
		for _, r := range roots {
			if p == r || strings.HasPrefix(p, r+"/") {
				delete(t.nodes, p)
			}
		}
	}
	delete(t.userdata, UserdataPath(dom, FormatUUID(uuid)))
	delete(t.introduced, dom)
	return nil
}

// leftovers describes what a failed restore left behind ("" if nothing).
func leftovers(b *fakeBuilder, t *fakeToolstack) string {
	var s []string
	if ids := b.live(); len(ids) > 0 {
		s = append(s, fmt.Sprintf("live domains %v", ids))
	}
	var paths []string
	for p := range t.nodes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if len(paths) > 0 {
		s = append(s, fmt.Sprintf("%d xenstore nodes (%s...)", len(paths), paths[0]))
	}
	if len(t.userdata) > 0 {
		s = append(s, fmt.Sprintf("%d userdata files", len(t.userdata)))
	}
	if len(t.introduced) > 0 {
		s = append(s, "introduced domains")
	}
	return strings.Join(s, ", ")
}
