package migrate

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/xensr/xensr/hypercall"
)

// DomainConfig is the part of libxl's domain configuration (the JSON in
// the xl header and in libxl's userdata file) that Restore builds a PVH
// domain from. Absent fields take libxl's defaults.
type DomainConfig struct {
	Type              string   // c_info.type: "pvh" (Restore refuses others)
	Name              string   // c_info.name
	UUID              [16]byte // c_info.uuid
	SSIDRef           uint32
	PoolID            uint32
	HAP               bool // c_info.hap (default true)
	OOS               bool // c_info.oos (default true)
	MaxVCPUs          uint32
	AvailVCPUs        []bool // b_info.avail_vcpus, one per vCPU
	MaxMemKB          uint64
	TargetMemKB       uint64
	VideoMemKB        uint64
	ShadowMemKB       uint64
	EventChannels     uint32
	MaxGrantFrames    int32
	MaxMaptrackFrames int32
	MaxGrantVersion   uint32
	TSCMode           uint32 // 0 default, 1 always_emulate, 2 native
	TimerMode         uint64 // HVM_PARAM_TIMER_MODE
	Altp2m            uint64 // HVM_PARAM_ALTP2M
	NestedHVM         bool
	VPMU              bool
	MSRRelaxed        bool
	VMTraceBufKB      uint32
	// VCPUHardAffinity and VCPUSoftAffinity are b_info.vcpu_hard_affinity
	// and vcpu_soft_affinity: per vCPU, the physical CPUs it may run on
	// and the ones it prefers (xl's cpus= and cpus_soft=). Restore sets
	// them before the domain first runs, as libxl__build_pre does; a vCPU
	// past the end of a list keeps Xen's default.
	VCPUHardAffinity [][]int
	VCPUSoftAffinity [][]int
	// JSON is the configuration as given (without trailing NULs).
	JSON []byte
}

// ErrConfig marks a domain configuration Restore cannot use.
var ErrConfig = errors.New("migrate: unusable domain configuration")

// libxl's JSON: defbools are "True"/"False"/"<default>", enums are strings.
type jsonConfig struct {
	CInfo struct {
		Type    string `json:"type"`
		Name    string `json:"name"`
		UUID    string `json:"uuid"`
		SSIDRef uint32 `json:"ssidref"`
		PoolID  uint32 `json:"poolid"`
		HAP     string `json:"hap"`
		OOS     string `json:"oos"`
	} `json:"c_info"`
	BInfo struct {
		MaxVCPUs          *uint32  `json:"max_vcpus"`
		AvailVCPUs        []int    `json:"avail_vcpus"`
		MaxMemKB          *kbValue `json:"max_memkb"`
		TargetMemKB       *kbValue `json:"target_memkb"`
		VideoMemKB        *kbValue `json:"video_memkb"`
		ShadowMemKB       *kbValue `json:"shadow_memkb"`
		EventChannels     *uint32  `json:"event_channels"`
		MaxGrantFrames    *int32   `json:"max_grant_frames"`
		MaxMaptrackFrames *int32   `json:"max_maptrack_frames"`
		MaxGrantVersion   *int32   `json:"max_grant_version"`
		TSCMode           string   `json:"tsc_mode"`
		TimerMode         string   `json:"timer_mode"`
		Altp2m            string   `json:"altp2m"`
		NestedHVM         string   `json:"nested_hvm"`
		VPMU              string   `json:"vpmu"`
		VMTraceBufKB      uint32   `json:"vmtrace_buf_kb"`
		// A libxl_bitmap is a JSON list of the numbers of its set bits.
		VCPUHardAffinity [][]int `json:"vcpu_hard_affinity"`
		VCPUSoftAffinity [][]int `json:"vcpu_soft_affinity"`
		ArchX86          struct {
			MSRRelaxed string `json:"msr_relaxed"`
		} `json:"arch_x86"`
	} `json:"b_info"`
}

// kbValue is a libxl MemKB: a number, where libxl's "default" (all ones,
// or -1) reads as -1.
type kbValue int64

// UnmarshalJSON implements json.Unmarshaler.
func (k *kbValue) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	v, err := n.Int64()
	if err != nil || v < 0 {
		*k = -1
		return nil
	}
	*k = kbValue(v)
	return nil
}

func defbool(s string, def bool) bool {
	switch strings.ToLower(s) {
	case "true":
		return true
	case "false":
		return false
	}
	return def
}

// ParseDomainConfig reads libxl's JSON domain configuration.
func ParseDomainConfig(b []byte) (*DomainConfig, error) {
	b = bytes.TrimRight(b, "\x00 \n")
	var j jsonConfig
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c := &DomainConfig{Type: j.CInfo.Type, Name: j.CInfo.Name, SSIDRef: j.CInfo.SSIDRef, PoolID: j.CInfo.PoolID,
		HAP: defbool(j.CInfo.HAP, true), OOS: defbool(j.CInfo.OOS, true),
		NestedHVM: defbool(j.BInfo.NestedHVM, false), VPMU: defbool(j.BInfo.VPMU, false),
		MSRRelaxed: defbool(j.BInfo.ArchX86.MSRRelaxed, false), VMTraceBufKB: j.BInfo.VMTraceBufKB,
		JSON: append([]byte(nil), b...)}
	if j.CInfo.UUID != "" {
		u, err := ParseUUID(j.CInfo.UUID)
		if err != nil {
			return nil, fmt.Errorf("%w: c_info.uuid: %v", ErrConfig, err)
		}
		c.UUID = u
	}
	c.MaxVCPUs = 1
	if p := j.BInfo.MaxVCPUs; p != nil && *p > 0 {
		c.MaxVCPUs = *p
	}
	if c.MaxVCPUs > 4096 {
		return nil, fmt.Errorf("%w: b_info.max_vcpus %d", ErrConfig, c.MaxVCPUs)
	}
	for _, a := range []struct {
		name string
		maps [][]int
		dst  *[][]int
	}{{"vcpu_hard_affinity", j.BInfo.VCPUHardAffinity, &c.VCPUHardAffinity}, {"vcpu_soft_affinity", j.BInfo.VCPUSoftAffinity, &c.VCPUSoftAffinity}} {
		// libxl sets one map per entry, and Xen refuses a vCPU at or
		// past max_vcpus: say so before a domain is made.
		if len(a.maps) > int(c.MaxVCPUs) {
			return nil, fmt.Errorf("%w: b_info.%s has %d entries for %d vCPUs", ErrConfig, a.name, len(a.maps), c.MaxVCPUs)
		}
		for v, cpus := range a.maps {
			if _, err := hypercall.CPUMapOf(cpus...); err != nil {
				return nil, fmt.Errorf("%w: b_info.%s[%d]: %v", ErrConfig, a.name, v, err)
			}
		}
		*a.dst = a.maps
	}
	c.AvailVCPUs = make([]bool, c.MaxVCPUs)
	if j.BInfo.AvailVCPUs == nil {
		for i := range c.AvailVCPUs {
			c.AvailVCPUs[i] = true
		}
	}
	for _, v := range j.BInfo.AvailVCPUs {
		if v >= 0 && v < len(c.AvailVCPUs) {
			c.AvailVCPUs[v] = true
		}
	}
	kb := func(p *kbValue, def uint64) uint64 {
		if p == nil || *p < 0 {
			return def
		}
		return uint64(*p)
	}
	c.MaxMemKB = kb(j.BInfo.MaxMemKB, 0)
	c.TargetMemKB = kb(j.BInfo.TargetMemKB, c.MaxMemKB)
	if c.MaxMemKB == 0 {
		c.MaxMemKB = c.TargetMemKB
	}
	if c.MaxMemKB == 0 || c.TargetMemKB > c.MaxMemKB {
		return nil, fmt.Errorf("%w: b_info.max_memkb %d, target_memkb %d", ErrConfig, c.MaxMemKB, c.TargetMemKB)
	}
	c.VideoMemKB = kb(j.BInfo.VideoMemKB, 0)
	// libxl_get_required_shadow_memory: 4 KiB per (256 per vCPU + 2 per
	// MiB of memory).
	c.ShadowMemKB = kb(j.BInfo.ShadowMemKB, 4*(256*uint64(c.MaxVCPUs)+2*(c.MaxMemKB/1024)))
	c.EventChannels = 1023
	if p := j.BInfo.EventChannels; p != nil && *p > 0 {
		c.EventChannels = *p
	}
	c.MaxGrantFrames, c.MaxMaptrackFrames = -1, -1
	if p := j.BInfo.MaxGrantFrames; p != nil {
		c.MaxGrantFrames = *p
	}
	if p := j.BInfo.MaxMaptrackFrames; p != nil {
		c.MaxMaptrackFrames = *p
	}
	c.MaxGrantVersion = 1
	if p := j.BInfo.MaxGrantVersion; p != nil && *p > 0 {
		c.MaxGrantVersion = uint32(*p)
	}
	var ok bool
	if c.TSCMode, ok = map[string]uint32{"": 0, "default": 0, "always_emulate": 1, "native": 2}[j.BInfo.TSCMode]; !ok {
		return nil, fmt.Errorf("%w: b_info.tsc_mode %q", ErrConfig, j.BInfo.TSCMode)
	}
	// LIBXL_TIMER_MODE_*: the default is no_delay_for_missed_ticks.
	if c.TimerMode, ok = map[string]uint64{"": 1, "default": 1, "delay_for_missed_ticks": 0, "no_delay_for_missed_ticks": 1,
		"no_missed_ticks_pending": 2, "one_missed_tick_pending": 3}[j.BInfo.TimerMode]; !ok {
		return nil, fmt.Errorf("%w: b_info.timer_mode %q", ErrConfig, j.BInfo.TimerMode)
	}
	if c.Altp2m, ok = map[string]uint64{"": 0, "disabled": 0, "mixed": 1, "external": 2, "limited": 3}[j.BInfo.Altp2m]; !ok {
		return nil, fmt.Errorf("%w: b_info.altp2m %q", ErrConfig, j.BInfo.Altp2m)
	}
	return c, nil
}

// createDomain returns the createdomain parameters libxl uses for c (a
// PVH guest: an HVM container with the local APIC emulated only).
func (c *DomainConfig) createDomain() hypercall.CreateDomain {
	cd := hypercall.CreateDomain{
		SSIDRef: c.SSIDRef, Handle: c.UUID, Flags: hypercall.CreateHVM,
		MaxVCPUs: c.MaxVCPUs, MaxEvtchnPort: c.EventChannels,
		MaxGrantFrames: c.MaxGrantFrames, MaxMaptrackFrames: c.MaxMaptrackFrames,
		GrantOpts: c.MaxGrantVersion & 0xf, VMTraceSize: (c.VMTraceBufKB<<10 + PageSize - 1) &^ (PageSize - 1),
		CPUPoolID: c.PoolID, EmulationFlags: hypercall.EmuLAPIC,
	}
	if c.Type == "pv" {
		// A PV guest: no HVM container, nothing emulated.
		cd.Flags, cd.EmulationFlags = 0, 0
	} else {
		if c.HAP {
			cd.Flags |= hypercall.CreateHAP
		}
		if !c.OOS {
			cd.Flags |= hypercall.CreateOOSOff
		}
	}
	if c.NestedHVM {
		cd.Flags |= hypercall.CreateNestedVirt
	}
	if c.VPMU {
		cd.Flags |= hypercall.CreateVPMU
	}
	if c.MSRRelaxed {
		cd.MiscFlags |= hypercall.MiscMSRRelaxed
	}
	return cd
}

// ParseUUID reads a UUID as xl prints it.
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return u, fmt.Errorf("uuid %q is not 32 hex digits", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("uuid %q: %v", s, err)
	}
	return u, nil
}

// FormatUUID formats a domain handle as xl does.
func FormatUUID(h [16]byte) string {
	d := hypercall.DomainInfo{Handle: h}
	return d.UUID()
}

// withName returns the JSON configuration with c_info.name set to name
// (libxl keeps the final name in its userdata file after a rename).
func withName(b []byte, name string) ([]byte, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimRight(b, "\x00 \n")))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, err
	}
	var cinfo map[string]json.RawMessage
	if err := json.Unmarshal(top["c_info"], &cinfo); err != nil {
		return nil, err
	}
	if cinfo == nil {
		cinfo = map[string]json.RawMessage{}
	}
	nb, _ := json.Marshal(name)
	cinfo["name"] = nb
	ci, err := json.Marshal(cinfo)
	if err != nil {
		return nil, err
	}
	top["c_info"] = ci
	return json.MarshalIndent(top, "", "    ")
}
