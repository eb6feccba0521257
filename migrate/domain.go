package migrate

import (
	"errors"
	"fmt"

	"github.com/xensr/xensr/hypercall"
)

// PageSize is the x86 guest page size the streams carry.
const PageSize = 4096

// PageMap is a batch of guest pages mapped for reading (a save) or writing
// (a restore).
type PageMap interface {
	// Page returns the i-th mapped page (4096 bytes, valid until Unmap) or
	// the error the hypervisor gave for that page.
	Page(i int) ([]byte, error)
	// Unmap releases the mapping.
	Unmap() error
}

// Domain is everything Save asks of the hypervisor about one domain. The
// Linux implementation (OpenDomain) talks to Xen through /dev/xen/privcmd
// and xenstore; the tests use a fake.
type Domain interface {
	// Info returns the domain's current state.
	Info() (hypercall.DomainInfo, error)
	// MaxGPFN returns the highest guest frame number (XENMEM_maximum_gpfn).
	MaxGPFN() (uint64, error)
	// Suspend asks the guest to suspend itself and waits until it has shut
	// down with reason suspend.
	Suspend() error
	// Resume resumes a suspended domain on the spot, telling the guest its
	// suspend was cancelled (so it keeps its event channels and rings).
	Resume() error
	// EnableLogDirty switches log-dirty mode on; DisableLogDirty off.
	EnableLogDirty() error
	DisableLogDirty() error
	// CleanDirty fills bm with the pages dirtied since the last call (or
	// since EnableLogDirty), clears Xen's copy, and returns the count.
	CleanDirty(bm *hypercall.DirtyBitmap) (uint64, error)
	// PageTypes fills types[i] with the type (hypercall.PageType*) of
	// pfns[i].
	PageTypes(pfns []uint64, types []uint32) error
	// MapPages maps the pages pfns read-only.
	MapPages(pfns []uint64) (PageMap, error)
	// HVMContext returns the domain's whole HVM context blob.
	HVMContext() ([]byte, error)
	// HVMParam returns one HVM parameter (hypercall.HVMParam*).
	HVMParam(index uint32) (uint64, error)
	// CPUPolicy returns the serialised CPUID leaves (24 bytes each) and MSR
	// entries (16 bytes each) of the domain.
	CPUPolicy() (cpuid, msr []byte, err error)
	// TSCInfo returns the domain's TSC mode and frequency.
	TSCInfo() (hypercall.TSCInfo, error)
	// Destroy destroys the domain.
	Destroy() error
}

// Sentinel errors of the save engine.
var (
	// ErrNotHVM: the domain is PV; Save saves HVM/PVH domains only.
	ErrNotHVM = errors.New("migrate: domain is not an HVM/PVH domain")
	// ErrNotSuspended: the domain did not reach the suspended state.
	ErrNotSuspended = errors.New("migrate: domain has not been suspended")
	// ErrTooBig: the guest's physical address space is beyond what a
	// restore accepts.
	ErrTooBig = errors.New("migrate: guest p2m too large")
)

// SaveError says in which step of the save a failure happened, and whether
// the domain was left running.
type SaveError struct {
	Step    string // e.g. "suspend", "page data", "hvm context"
	Round   int    // log-dirty round (0 = first full pass), -1 if not in memory transfer
	PFN     uint64 // the page concerned, when Step is about a page
	HasPFN  bool
	Resumed bool  // the domain was resumed or never stopped: it is running
	Err     error // the cause
}

func (e *SaveError) Error() string {
	s := "migrate: save: " + e.Step
	if e.Round >= 0 {
		s += fmt.Sprintf(" (round %d)", e.Round)
	}
	if e.HasPFN {
		s += fmt.Sprintf(" pfn %#x", e.PFN)
	}
	s += ": " + e.Err.Error()
	if e.Resumed {
		s += " [domain left running]"
	} else {
		s += " [domain NOT resumed]"
	}
	return s
}

// Unwrap returns the cause.
func (e *SaveError) Unwrap() error { return e.Err }
