package hypercall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
)

// A Caller issues raw hypercalls: privcmd.Device on Linux, a fake in tests.
type Caller interface {
	Hypercall(op uint64, args [5]uint64) (uint64, error)
}

// Hypercall numbers (public/xen.h).
const (
	OpMemory     = 12
	OpXenVersion = 17
	OpEvtchn     = 32
	OpHVM        = 34
	OpSysctl     = 35
	OpDomctl     = 36
)

// Interface versions of Xen 4.17 (public/domctl.h, public/sysctl.h), what a
// Xen made by New speaks until Probe (which Open calls) or SetInterface; see
// Releases for the others. Xen rejects a domctl or sysctl of another
// version with EACCES.
const (
	DomctlInterfaceVersion = 0x15
	SysctlInterfaceVersion = 0x15
)

// Safety says whether a hypercall may be issued again after EFAULT.
type Safety bool

// Safe marks read-only queries, which can be repeated; Unsafe marks
// hypercalls that change state (or consume state, like log-dirty CLEAN),
// which must not be: their EFAULT goes back to the caller.
const (
	Safe   Safety = true
	Unsafe Safety = false
)

// MaxFaultRetries bounds the EFAULT retries of a safe hypercall.
const MaxFaultRetries = 5

// A Xen issues typed hypercalls with buffers from its Pool.
type Xen struct {
	C    Caller
	Pool *Pool

	// Stats count what happened, for tests and stress reports.
	Stats struct {
		Calls, Faults, Retries atomic.Uint64
	}
	closer func() error
	iface  Interface // zero: Xen 4.17's (defaultInterface)
}

// Close releases what Open opened; for a Xen made by New it closes the Pool.
func (x *Xen) Close() error {
	if x.closer != nil {
		return x.closer()
	}
	return x.Pool.Close()
}

// New returns a Xen calling through c with buffers from pool.
func New(c Caller, pool *Pool) *Xen { return &Xen{C: c, Pool: pool} }

// Call issues one hypercall. On EFAULT a Safe call is repeated (at most
// MaxFaultRetries times) when the pool's memory is not pinned: only there
// can a page move under the hypervisor. Pinned memory makes EFAULT a real
// error, and an Unsafe call may already have had effects.
func (x *Xen) Call(op uint64, args [5]uint64, safe Safety) (uint64, error) {
	for attempt := 0; ; attempt++ {
		x.Stats.Calls.Add(1)
		r, err := x.C.Hypercall(op, args)
		if err == nil || !errors.Is(err, syscall.EFAULT) {
			return r, err
		}
		x.Stats.Faults.Add(1)
		if safe == Unsafe || x.Pool.Pinned() || attempt >= MaxFaultRetries {
			return r, err
		}
		x.Stats.Retries.Add(1)
	}
}

var le = binary.LittleEndian

// An Error is a failed domctl, sysctl or other hypercall: which operation,
// which domain, and the errno.
type Error struct {
	Op     string
	Domain uint32
	Err    error
}

// Error describes the failure.
func (e *Error) Error() string {
	return fmt.Sprintf("hypercall %s (domain %d): %v", e.Op, e.Domain, e.Err)
}

// Unwrap returns the errno.
func (e *Error) Unwrap() error { return e.Err }

// ErrInterfaceVersion reports a hypervisor that refused the domctl/sysctl
// interface version x speaks (see Interface and Probe).
var ErrInterfaceVersion = errors.New("hypercall: hypervisor refused the domctl/sysctl interface version")

// domctl issues XEN_DOMCTL cmd for domain dom; fill writes the union (128
// bytes) first; read sees the union after the call.
func (x *Xen) domctl(name string, cmd uint32, dom uint32, safe Safety, fill func(u []byte), read func(u []byte)) error {
	_, err := x.domctlDom(name, cmd, dom, safe, fill, read)
	return err
}

// readsOnError lists the domctls whose answer matters on failure too:
// set_cpu_policy names the leaf or MSR it refused.
var readsOnError = map[uint32]bool{domctlSetCPUPolicy: true}

// domctlDom is domctl that also returns the domain field of the struct as
// Xen left it (createdomain writes the new domain's id there).
func (x *Xen) domctlDom(name string, cmd uint32, dom uint32, safe Safety, fill func(u []byte), read func(u []byte)) (uint32, error) {
	b, err := x.Pool.Get(domctlSize, InOut)
	if err != nil {
		return 0, err
	}
	defer b.Free()
	m := b.Bytes()
	le.PutUint32(m[0:], cmd)
	le.PutUint32(m[4:], x.Interface().Domctl)
	le.PutUint16(m[8:], uint16(dom))
	if fill != nil {
		fill(m[domctlUnion:])
	}
	if _, err := x.Call(OpDomctl, [5]uint64{b.Addr()}, safe); err != nil {
		if errors.Is(err, syscall.EACCES) && cmd == domctlGetDomainInfo {
			err = fmt.Errorf("%w (%w)", ErrInterfaceVersion, err)
		}
		if read != nil && readsOnError[cmd] {
			read(m[domctlUnion:])
		}
		return 0, &Error{Op: name, Domain: dom, Err: err}
	}
	if read != nil {
		read(m[domctlUnion:])
	}
	return uint32(le.Uint16(m[8:])), nil
}

func (x *Xen) sysctl(name string, cmd uint32, safe Safety, fill func(u []byte), read func(u []byte)) error {
	b, err := x.Pool.Get(sysctlSize, InOut)
	if err != nil {
		return err
	}
	defer b.Free()
	m := b.Bytes()
	le.PutUint32(m[0:], cmd)
	le.PutUint32(m[4:], x.Interface().Sysctl)
	fill(m[sysctlUnion:])
	if _, err := x.Call(OpSysctl, [5]uint64{b.Addr()}, safe); err != nil {
		if errors.Is(err, syscall.EACCES) {
			err = fmt.Errorf("%w (%w)", ErrInterfaceVersion, err)
		}
		return &Error{Op: name, Err: err}
	}
	read(m[sysctlUnion:])
	return nil
}
