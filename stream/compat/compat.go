// Package compat says, before anything is created, whether a saved image or
// migration stream can be restored on a given Xen.
//
// The stream formats (xl, libxl, libxc v3) are the same from Xen 4.17 to
// 4.22, and a Xen restores streams of older releases. What does not go
// backwards is the HVM context of HVM and PVH guests: Xen's loader accepts
// a save record shorter than its own layout (zero-extending it where the
// type allows) but refuses a longer one, and refuses typecodes it does not
// know. Xen 4.21 grew the LAPIC record from 24 to 32 bytes (pending_esr),
// and the stable branches took the change in 4.18.5, 4.19.2 and 4.20.1
// (4.17 never did), so an HVM or PVH image written by one of those cannot
// be restored on 4.17.x or an older point release. The lab found it: Debian
// 13's Xen 4.20.4 writes 32-byte LAPIC records. Check walks an image (package stream/image), reads the Xen
// version that wrote it from the libxc domain header, and checks every HVM
// context entry against the record sizes of the target release.
package compat

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/stream/hvm"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
)

// A Version is a Xen release, major.minor.patch. Images record only
// major.minor (the libxc domain header); the running Xen's patch level
// comes from XENVER_extraversion (".5-pre" counts as 5).
type Version struct{ Major, Minor, Patch uint32 }

// String returns "4.20" or "4.20.4".
func (v Version) String() string {
	if v.Patch == 0 {
		return fmt.Sprintf("%d.%d", v.Major, v.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// Less reports whether v is an older release than o (major.minor only).
func (v Version) Less(o Version) bool {
	return v.Major < o.Major || v.Major == o.Major && v.Minor < o.Minor
}

// ParseExtraVersion returns v with its patch level taken from an
// XENVER_extraversion string such as ".4" or ".5-pre".
func ParseExtraVersion(v Version, extra string) Version {
	s := strings.TrimPrefix(extra, ".")
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	var p uint32
	fmt.Sscan(s[:n], &p)
	v.Patch = p
	return v
}

// lapicGrew is the first release whose LAPIC save record is 32 bytes.
var lapicGrew = Version{4, 21, 0}

// lapic32 reports whether Xen v writes and loads 32-byte LAPIC records:
// 4.21 on, and the stable point releases that took pending_esr (4.18.5,
// 4.19.2, 4.20.1; checked at each RELEASE tag of xen.git).
func lapic32(v Version) bool {
	if !v.Less(lapicGrew) {
		return true
	}
	first := map[Version]uint32{{4, 18, 0}: 5, {4, 19, 0}: 2, {4, 20, 0}: 1}
	p, ok := first[Version{v.Major, v.Minor, 0}]
	return ok && v.Patch >= p
}

// known reports whether the release tables (hypercall.Releases) cover v.
func known(v Version) bool {
	_, ok := hypercall.FindRelease(v.Major, v.Minor)
	return ok
}

// HVMRecordSize returns the body size of an HVM save record of typecode tc
// in Xen v's layout (its HVM_SAVE_LENGTH), which is the most v's loader
// accepts; fixed is false for the variable-length records (CPU_XSAVE,
// CPU_MSR) and ok false for a typecode v does not know. The sizes are
// package stream/hvm's; every release from 4.17 to 4.22 knows the same
// typecodes, and only LAPIC differs (24 bytes before 4.21).
func HVMRecordSize(v Version, tc hvm.Typecode) (size int, fixed, ok bool) {
	if !tc.Known() {
		return 0, false, false
	}
	switch tc {
	case hvm.TypeEnd:
		return 0, true, true
	case hvm.TypeCPUXSave, hvm.TypeCPUMSR:
		return 0, false, true
	case hvm.TypeLAPIC:
		if !lapic32(v) {
			return hvm.LAPICSizeLegacy, true, true
		}
		return hvm.LAPICSize, true, true
	}
	size, ok = fixedSizes[tc]
	return size, ok, ok
}

var fixedSizes = map[hvm.Typecode]int{
	hvm.TypeHeader: hvm.HeaderSize, hvm.TypeCPU: hvm.CPUSize, hvm.TypePIC: hvm.PICSize,
	hvm.TypeIOAPIC: hvm.IOAPICSize, hvm.TypeLAPICRegs: hvm.LAPICRegsSize, hvm.TypePCIIRQ: hvm.PCIIRQSize,
	hvm.TypeISAIRQ: hvm.ISAIRQSize, hvm.TypePCILink: hvm.PCILinkSize, hvm.TypePIT: hvm.PITSize,
	hvm.TypeRTC: hvm.RTCSize, hvm.TypeHPET: hvm.HPETSize, hvm.TypePMTimer: hvm.PMTimerSize,
	hvm.TypeMTRR: hvm.MTRRSize, hvm.TypeViridianDomain: hvm.ViridianDomainSize,
	hvm.TypeViridianVCPU: hvm.ViridianVCPUSize, hvm.TypeVMCEVCPU: hvm.VMCEVCPUSize, hvm.TypeTSCAdjust: hvm.TSCAdjustSize,
}

// A Problem is one reason an image cannot be restored on the target.
type Problem struct {
	Offset int64  // absolute offset of the HVM save descriptor (or record)
	What   string // e.g. "HVM LAPIC instance 0"
	Reason string
}

// String describes the problem.
func (p Problem) String() string {
	return fmt.Sprintf("%s at offset %d: %s", p.What, p.Offset, p.Reason)
}

// A Report is what Check found.
type Report struct {
	Target Version
	Writer Version // from the libxc domain header: the Xen that wrote the image
	// DomainType is the libxc domain type (x86 PV or x86 HVM; PVH guests
	// are HVM).
	DomainType string
	Problems   []Problem
	// Notes are caveats that do not stop a restore: an image from a newer
	// Xen, a release missing from the tables.
	Notes []string
}

// Err returns nil when the image can be restored on the target, else an
// *Error listing every problem.
func (r *Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return &Error{Target: r.Target, Writer: r.Writer, Problems: r.Problems}
}

// ErrIncompatible matches every *Error.
var ErrIncompatible = errors.New("image cannot be restored on this Xen")

// An Error says why an image cannot be restored on a Xen.
type Error struct {
	Target, Writer Version
	Problems       []Problem
}

// Error names both versions and every problem.
func (e *Error) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return fmt.Sprintf("compat: image written by Xen %s cannot be restored on Xen %s: %s", e.Writer, e.Target, strings.Join(s, "; "))
}

// Is makes errors.Is(err, ErrIncompatible) true.
func (e *Error) Is(target error) bool { return target == ErrIncompatible }

// CheckHVMContext checks an HVM context blob (an HVM_CONTEXT record's body,
// starting at absolute offset off) against Xen target's record sizes. A
// malformed context is an error (a *stream.FormatError from stream/hvm).
func CheckHVMContext(data []byte, off int64, target Version) ([]Problem, error) {
	ctx, err := hvm.DecodeOptions(data, hvm.Options{Relaxed: true, Offset: off})
	if err != nil {
		return nil, err
	}
	var ps []Problem
	for _, e := range ctx.Entries {
		what := fmt.Sprintf("HVM %s instance %d", e.Typecode, e.Instance)
		size, fixed, ok := HVMRecordSize(target, e.Typecode)
		switch {
		case !ok:
			ps = append(ps, Problem{e.Offset, what, fmt.Sprintf("typecode %d is unknown to Xen %s", uint16(e.Typecode), target)})
		case fixed && int(e.Length) > size:
			ps = append(ps, Problem{e.Offset, what, fmt.Sprintf("%d-byte record, Xen %s loads at most %d", e.Length, target, size)})
		}
	}
	return ps, nil
}

// Check reads a whole image (any format image.Walker reads, opt.Format
// detects it by default) and reports whether it can be restored on Xen
// target. It creates nothing; a malformed image is an error.
func Check(r io.Reader, opt image.Options, target Version) (*Report, error) {
	rep := &Report{Target: target}
	sawDomain := false
	_, err := image.Walk(r, opt, func(it *image.Item) error {
		if d := it.LibxcDomain; d != nil {
			sawDomain = true
			rep.Writer = Version{d.XenMajor, d.XenMinor, 0}
			rep.DomainType = d.Type.String()
		}
		if hc, ok := it.Libxc.(*libxc.HVMContext); ok {
			ps, err := CheckHVMContext(hc.Data, it.Offset+8, target) // body after the 8-byte record header
			if err != nil {
				return err
			}
			rep.Problems = append(rep.Problems, ps...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawDomain {
		return nil, fmt.Errorf("compat: no libxc domain header in the image")
	}
	if target.Less(rep.Writer) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("written by a newer Xen (%s) than the target (%s): Xen supports restoring older streams only; the record checks passed", rep.Writer, target))
	}
	for _, v := range []Version{target, rep.Writer} {
		if !known(v) {
			rep.Notes = append(rep.Notes, fmt.Sprintf("Xen %s is not in the release tables (%s to %s): record sizes of the nearest known release assumed", v, first(), last()))
		}
	}
	return rep, nil
}

func first() Version { r := hypercall.Releases[0]; return Version{r.Major, r.Minor, 0} }
func last() Version {
	r := hypercall.Releases[len(hypercall.Releases)-1]
	return Version{r.Major, r.Minor, 0}
}
