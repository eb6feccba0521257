//go:build linux

package migrate

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/privcmd"
)

var _ PVDomain = (*XenDomain)(nil)

// GuestWidth implements PVDomain (XEN_DOMCTL_get_address_size).
func (d *XenDomain) GuestWidth() (int, error) {
	bits, err := d.x.GetAddressSize(d.id)
	return int(bits / 8), err
}

// MachToPhys implements PVDomain: the chunks XENMEM_machphys_mfn_list
// names, 512 frames each, mapped read-only from DOMID_XEN.
func (d *XenDomain) MachToPhys() (*MachToPhys, error) {
	maxMFN, err := d.x.MaximumRAMPage()
	if err != nil {
		return nil, err
	}
	const chunk = 1 << hypercall.M2PChunkShift
	size := (maxMFN*8 + chunk - 1) / chunk * chunk
	n := int(size / chunk)
	starts, err := d.x.MachphysMFNList(n)
	if err != nil {
		return nil, err
	}
	if len(starts) < n {
		return nil, fmt.Errorf("machphys_mfn_list: %d chunks for max mfn %#x, want %d", len(starts), maxMFN, n)
	}
	per := chunk / PageSize
	mfns := make([]uint64, 0, n*per)
	for _, s := range starts {
		for j := 0; j < per; j++ {
			mfns = append(mfns, s+uint64(j))
		}
	}
	errs := make([]int32, len(mfns))
	mem, err := d.dev.MmapBatchV2(hypercall.DomidXen, mfns, errs, unix.PROT_READ)
	if err != nil {
		if mem != nil {
			privcmd.Munmap(mem)
		}
		return nil, fmt.Errorf("map the m2p (%d frames of DOMID_XEN): %w", len(mfns), err)
	}
	return &MachToPhys{Table: mem, MaxMFN: maxMFN, Release: func() error { return privcmd.Munmap(mem) }}, nil
}

// VCPUOnline implements PVDomain.
func (d *XenDomain) VCPUOnline(vcpu uint32) (bool, error) { return d.x.VCPUOnline(d.id, vcpu) }

// VCPUContext implements PVDomain.
func (d *XenDomain) VCPUContext(vcpu uint32) ([]byte, error) { return d.x.GetVCPUContext(d.id, vcpu) }

// VCPUExtended implements PVDomain.
func (d *XenDomain) VCPUExtended(vcpu uint32) ([]byte, error) {
	return d.x.GetExtVCPUContext(d.id, vcpu)
}

// VCPUXSave implements PVDomain.
func (d *XenDomain) VCPUXSave(vcpu uint32) ([]byte, error) { return d.x.GetVCPUExtState(d.id, vcpu) }

// VCPUMSRs implements PVDomain.
func (d *XenDomain) VCPUMSRs(vcpu uint32) ([]byte, error) { return d.x.GetVCPUMSRs(d.id, vcpu) }
