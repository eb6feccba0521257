package image

import (
	"io"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/pv"
	"github.com/xensr/xensr/stream/xl"
)

// A Report is what Verify found in a valid image: the walk's summary and
// the typed state it decoded on the way.
type Report struct {
	Summary
	// Config is the domain configuration of an xl image with a JSON
	// configuration; nil otherwise.
	Config *xl.DomainConfig
	// HVM is the last HVM context (the final checkpoint round's), nil for
	// a PV guest.
	HVM *hvm.Context
	// VCPUs holds the last X86_PV_VCPU_BASIC context of each vCPU of a PV
	// guest, by vCPU id.
	VCPUs map[uint32]pv.Context
}

// Verify reads a whole image and checks everything this SDK knows how to
// check: the strict rules of every layer (as Walk with Options.Relaxed
// false, which Verify forces), the xl header's JSON domain configuration,
// every HVM context entry by entry (package hvm) and every PV vCPU's basic
// context (package pv). A nil error means the image is valid; the error is
// the first problem, a *stream.FormatError naming where.
func Verify(r io.Reader, opt Options) (*Report, error) {
	opt.Relaxed = false
	rep := &Report{}
	var info libxc.X86PVInfo
	sum, err := Walk(r, opt, func(it *Item) error {
		if it.XL != nil && it.XL.Mandatory&xl.FlagJSON != 0 {
			c, err := it.XL.DomainConfig()
			if err != nil {
				return err
			}
			rep.Config = c
		}
		switch rec := it.Libxc.(type) {
		case *libxc.HVMContext:
			c, err := hvm.DecodeOptions(rec.Data, hvm.Options{Offset: it.Offset + stream.HeaderSize})
			if err != nil {
				return err
			}
			rep.HVM = c
		case *libxc.X86PVInfo:
			info = *rec
		case *libxc.VCPUContext:
			if rec.Kind != libxc.TypeX86PVVCPUBasic {
				return nil
			}
			c, err := pv.DecodeRecord(&info, rec, it.Offset)
			if err != nil {
				return err
			}
			if rep.VCPUs == nil {
				rep.VCPUs = map[uint32]pv.Context{}
			}
			rep.VCPUs[rec.VCPU] = c
		}
		return nil
	})
	rep.Summary = sum
	if err != nil {
		return rep, err
	}
	return rep, nil
}
