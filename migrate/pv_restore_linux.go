//go:build linux

package migrate

import "github.com/xensr/xensr/hypercall"

var _ PVBuilder = (*xenBuilder)(nil)

// SetAddressSize implements PVBuilder.
func (b *xenBuilder) SetAddressSize(dom, bits uint32) error { return b.h.X.SetAddressSize(dom, bits) }

// PopulatePV implements PVBuilder.
func (b *xenBuilder) PopulatePV(dom uint32, pfns []uint64) ([]uint64, error) {
	return b.h.X.PopulatePhysmapPV(dom, pfns)
}

// SharedInfoFrame implements PVBuilder.
func (b *xenBuilder) SharedInfoFrame(dom uint32) (uint64, error) {
	i, err := b.h.X.GetDomainInfo(dom)
	return i.SharedInfoFrame, err
}

// SetVCPUContext implements PVBuilder.
func (b *xenBuilder) SetVCPUContext(dom, vcpu uint32, ctx []byte) error {
	return b.h.X.SetVCPUContext(dom, vcpu, ctx)
}

// SetExtVCPUContext implements PVBuilder.
func (b *xenBuilder) SetExtVCPUContext(dom uint32, ctx []byte) error {
	return b.h.X.SetExtVCPUContext(dom, ctx)
}

// SetVCPUExtState implements PVBuilder.
func (b *xenBuilder) SetVCPUExtState(dom, vcpu uint32, s []byte) error {
	return b.h.X.SetVCPUExtState(dom, vcpu, s)
}

// SetVCPUMSRs implements PVBuilder.
func (b *xenBuilder) SetVCPUMSRs(dom, vcpu uint32, m []byte) error {
	return b.h.X.SetVCPUMSRs(dom, vcpu, m)
}

// PinTables implements PVBuilder.
func (b *xenBuilder) PinTables(dom uint32, ops []hypercall.MMUExtOp) error {
	return b.h.X.MMUExtOps(dom, ops)
}
