package pv

import (
	"encoding/binary"
	"fmt"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// SharedInfoArch64 is where struct arch_shared_info starts in a 64-bit
// guest's shared info page (struct shared_info_x86_64): after 32 vcpu_info
// slots of 64 bytes, the pending and mask bitmaps (512 bytes each) and
// the wallclock (16 bytes).
const SharedInfoArch64 = 3088

// Offsets of a 64-bit guest's shared info page.
const (
	SharedInfoVCPUInfo64      = 0    // vcpu_info[32], 64 bytes each
	SharedInfoEvtchnPending64 = 2048 // evtchn_pending[64]
	SharedInfoEvtchnMask64    = 2560 // evtchn_mask[64]
	SharedInfoWallclock64     = 3072 // wc_version, wc_sec, wc_nsec, wc_sec_hi
	VCPUInfoSize              = 64
	LegacyMaxVCPUs            = 32
)

// FirstReservedGDTEntry is FIRST_RESERVED_GDT_ENTRY: a PV vCPU's GDT holds
// at most this many guest entries (the frames above are Xen's).
const FirstReservedGDTEntry = 14 * 4096 / 8

// ArchSharedInfo is struct arch_shared_info of a 64-bit guest: where the
// guest keeps its P2M (pfn -> mfn) table for the toolstack. The guest
// writes it; the save reads it to find the P2M.
type ArchSharedInfo struct {
	MaxPFN        uint64 `c:"max_pfn"`                    // the P2M's length in entries
	FrameListList uint64 `c:"pfn_to_mfn_frame_list_list"` // MFN of the 3-level tree's top
	NMIReason     uint64 `c:"nmi_reason"`
	P2MCR3        uint64 `c:"p2m_cr3"`        // CR3 (MFN form) of the linear P2M's page tables; 0: no linear list
	P2MVaddr      uint64 `c:"p2m_vaddr"`      // the linear P2M's virtual address
	P2MGeneration uint64 `c:"p2m_generation"` // bumped by the guest around every P2M change
}

// DecodeArchSharedInfo decodes the arch part of a 64-bit guest's shared
// info page (a SHARED_INFO record's body).
func DecodeArchSharedInfo(page []byte) (*ArchSharedInfo, error) {
	if len(page) != libxc.PageSize {
		return nil, &stream.FormatError{Layer: Layer, Index: -1, Type: uint32(libxc.TypeSharedInfo), TypeName: libxc.TypeSharedInfo.String(),
			Field: "length", Err: stream.ErrLength, Expected: stream.Bytes(libxc.PageSize), Actual: stream.Bytes(len(page))}
	}
	var a ArchSharedInfo
	if _, err := binary.Decode(page[SharedInfoArch64:], binary.LittleEndian, &a); err != nil {
		return nil, fmt.Errorf("pv: shared info: %w", err)
	}
	return &a, nil
}

// Offsets in a 64-bit guest's start info page (struct start_info). On
// suspend the guest rewrites the store and console frames as PFNs, which
// is how a saved stream carries them; a restore writes the new MFNs back.
const (
	StartInfoNrPages       = 32 // nr_pages
	StartInfoSharedInfo    = 40 // shared_info: machine address
	StartInfoFlags         = 48
	StartInfoStoreMFN      = 56 // store_mfn
	StartInfoStoreEvtchn   = 64 // store_evtchn
	StartInfoConsoleMFN    = 72 // console.domU.mfn
	StartInfoConsoleEvtchn = 80 // console.domU.evtchn
)
