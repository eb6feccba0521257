package migrate

import "errors"

// PVDomain is what the save of a PV domain asks of the hypervisor beyond
// Domain. A PV guest names machine frames (MFNs) in its page tables and
// P2M, so for a PV domain Domain.PageTypes and Domain.MapPages take MFNs,
// not PFNs. XenDomain implements it; Save uses it for a domain whose
// Info says it is not HVM.
type PVDomain interface {
	Domain
	// GuestWidth returns the guest's word size in bytes: 8 (64-bit) or 4.
	GuestWidth() (int, error)
	// MachToPhys maps Xen's machine-to-physical table read-only.
	MachToPhys() (*MachToPhys, error)
	// VCPUOnline reports whether a vCPU is up.
	VCPUOnline(vcpu uint32) (bool, error)
	// VCPUContext returns a vCPU's vcpu_guest_context (MFN form).
	VCPUContext(vcpu uint32) ([]byte, error)
	// VCPUExtended returns the extended context (empty: none).
	VCPUExtended(vcpu uint32) ([]byte, error)
	// VCPUXSave returns the XSAVE state (empty: none).
	VCPUXSave(vcpu uint32) ([]byte, error)
	// VCPUMSRs returns the MSRs in use, 16 bytes each (empty: none).
	VCPUMSRs(vcpu uint32) ([]byte, error)
}

// MachToPhys is the host's machine-to-physical table: for every machine
// frame up to MaxMFN, the PFN its owner gave it, 8 bytes little-endian.
type MachToPhys struct {
	Table  []byte
	MaxMFN uint64
	// Release unmaps the table; nil when there is nothing to release.
	Release func() error
}

// Lookup returns the PFN the table holds for mfn, and false for an MFN
// past the table.
func (m *MachToPhys) Lookup(mfn uint64) (uint64, bool) {
	if mfn > m.MaxMFN || (mfn+1)*8 > uint64(len(m.Table)) {
		return 0, false
	}
	return le.Uint64(m.Table[mfn*8:]), true
}

// Sentinel errors of the PV save.
var (
	// ErrPVLogDirty: a live save of a PV domain needs log-dirty mode, which
	// Xen refused (a Xen built without shadow paging refuses it for PV
	// guests). The save stopped before suspending: the guest runs on.
	ErrPVLogDirty = errors.New("migrate: Xen refused log-dirty mode for this PV domain, so it cannot be saved live (a non-live save works)")
	// ErrPV32: 32-bit PV guests are not saved yet.
	ErrPV32 = errors.New("migrate: 32-bit PV guests are not supported")
	// ErrPVP2M: the guest's P2M, as its shared info describes it, is not
	// usable (bad frame, address or size).
	ErrPVP2M = errors.New("migrate: bad guest P2M")
	// ErrPVFrame: a frame the guest names (in a page table, its P2M or a
	// vCPU's state) is not one of its own pages.
	ErrPVFrame = errors.New("migrate: frame not in the guest's pseudo-physical map")
	// ErrPVSuperpage: a guest page table maps a superpage, which a PV
	// save cannot carry.
	ErrPVSuperpage = errors.New("migrate: guest page table maps a superpage")
)
