package xl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/xensr/xensr/stream"
)

// A DomainConfig is the libxl domain configuration (libxl_domain_config) as
// xl stores it in the header of a save file when FlagJSON is set: the JSON
// libxl_domain_config_to_json writes.
//
// The structs name the fields a toolstack reads; every other field of each
// JSON object is kept in its Unknown map, and a field that was present with
// a zero value stays present, so Marshal loses nothing: decoding its output
// gives the same JSON values as the original. It does not keep the
// original's key order or white space (libxl's parser depends on neither):
// known fields come first in libxl's order, unknown ones after them sorted.
type DomainConfig struct {
	CInfo       CreateInfo `json:"c_info"`
	BInfo       BuildInfo  `json:"b_info"`
	Disks       []Disk     `json:"disks,omitempty"`
	NICs        []NIC      `json:"nics,omitempty"`
	OnPoweroff  string     `json:"on_poweroff,omitempty"`   // destroy, restart, preserve, ...
	OnReboot    string     `json:"on_reboot,omitempty"`     // ditto
	OnWatchdog  string     `json:"on_watchdog,omitempty"`   // ditto
	OnCrash     string     `json:"on_crash,omitempty"`      // ditto
	OnSoftReset string     `json:"on_soft_reset,omitempty"` // ditto
	Unknowns
}

// Unknowns holds the fields of a JSON object that its Go struct does not
// name, by key, as raw JSON. Structs of this file embed it.
type Unknowns struct {
	Unknown map[string]json.RawMessage `json:"-"`
	// zero holds the known fields present in the input with a zero
	// value, re-emitted while the field stays zero.
	zero map[string]json.RawMessage
}

// CreateInfo is libxl_domain_create_info, "c_info".
type CreateInfo struct {
	Type     string `json:"type,omitempty"` // "pv", "hvm" or "pvh"
	Name     string `json:"name,omitempty"`
	UUID     string `json:"uuid,omitempty"` // canonical text form
	PoolName string `json:"pool_name,omitempty"`
	Unknowns
}

// BuildInfo is libxl_domain_build_info, "b_info".
type BuildInfo struct {
	MaxVCPUs    int      `json:"max_vcpus,omitempty"`
	AvailVCPUs  []int    `json:"avail_vcpus,omitempty"` // the vCPUs online at start, by id
	MaxMemKB    uint64   `json:"max_memkb,omitempty"`
	TargetMemKB uint64   `json:"target_memkb,omitempty"`
	VideoMemKB  uint64   `json:"video_memkb,omitempty"`
	ShadowMemKB uint64   `json:"shadow_memkb,omitempty"`
	Kernel      string   `json:"kernel,omitempty"`
	Cmdline     string   `json:"cmdline,omitempty"`
	Ramdisk     string   `json:"ramdisk,omitempty"`
	DeviceTree  string   `json:"device_tree,omitempty"`
	Bootloader  string   `json:"bootloader,omitempty"`
	HVM         *HVMInfo `json:"type.hvm,omitempty"` // set for c_info.type "hvm"
	PV          *PVInfo  `json:"type.pv,omitempty"`  // set for "pv"
	PVH         *PVHInfo `json:"type.pvh,omitempty"` // set for "pvh"
	Unknowns
}

// HVMInfo is the "type.hvm" member of b_info.
type HVMInfo struct {
	Firmware string `json:"firmware,omitempty"`
	BIOS     string `json:"bios,omitempty"` // rombios, seabios, ovmf
	Boot     string `json:"boot,omitempty"`
	Unknowns
}

// PVInfo is the "type.pv" member of b_info. Before Xen 4.10 the kernel,
// ramdisk and command line lived here.
type PVInfo struct {
	Kernel         string   `json:"kernel,omitempty"`
	SlackMemKB     uint64   `json:"slack_memkb,omitempty"`
	Bootloader     string   `json:"bootloader,omitempty"`
	BootloaderArgs []string `json:"bootloader_args,omitempty"`
	Cmdline        string   `json:"cmdline,omitempty"`
	Ramdisk        string   `json:"ramdisk,omitempty"`
	Unknowns
}

// PVHInfo is the "type.pvh" member of b_info.
type PVHInfo struct {
	PVShim        string `json:"pvshim,omitempty"` // a libxl defbool: "True" or "False"
	PVShimPath    string `json:"pvshim_path,omitempty"`
	PVShimCmdline string `json:"pvshim_cmdline,omitempty"`
	Unknowns
}

// Disk is libxl_device_disk, one element of "disks".
type Disk struct {
	BackendDomid   uint32 `json:"backend_domid,omitempty"`
	BackendDomname string `json:"backend_domname,omitempty"`
	PDevPath       string `json:"pdev_path,omitempty"` // the backing file or device
	VDev           string `json:"vdev,omitempty"`      // the guest's name for it, e.g. xvda
	Backend        string `json:"backend,omitempty"`   // phy, tap, qdisk, standalone
	Format         string `json:"format,omitempty"`    // raw, qcow, qcow2, vhd, empty
	Script         string `json:"script,omitempty"`
	Removable      int    `json:"removable,omitempty"`
	Readwrite      int    `json:"readwrite,omitempty"`
	IsCDROM        int    `json:"is_cdrom,omitempty"`
	Unknowns
}

// NIC is libxl_device_nic, one element of "nics".
type NIC struct {
	BackendDomid   uint32 `json:"backend_domid,omitempty"`
	BackendDomname string `json:"backend_domname,omitempty"`
	Devid          int    `json:"devid,omitempty"`
	MTU            int    `json:"mtu,omitempty"`
	Model          string `json:"model,omitempty"`
	MAC            string `json:"mac,omitempty"` // aa:bb:cc:dd:ee:ff
	IP             string `json:"ip,omitempty"`
	Bridge         string `json:"bridge,omitempty"`
	Ifname         string `json:"ifname,omitempty"`
	Script         string `json:"script,omitempty"`
	NICType        string `json:"nictype,omitempty"` // vif, vif_ioemu
	Unknowns
}

// KernelPath returns the kernel to boot: b_info's kernel, or for older PV
// configurations type.pv's.
func (b *BuildInfo) KernelPath() string {
	if b.Kernel == "" && b.PV != nil {
		return b.PV.Kernel
	}
	return b.Kernel
}

// RamdiskPath returns the initial ramdisk, like KernelPath.
func (b *BuildInfo) RamdiskPath() string {
	if b.Ramdisk == "" && b.PV != nil {
		return b.PV.Ramdisk
	}
	return b.Ramdisk
}

// CommandLine returns the kernel command line, like KernelPath.
func (b *BuildInfo) CommandLine() string {
	if b.Cmdline == "" && b.PV != nil {
		return b.PV.Cmdline
	}
	return b.Cmdline
}

// ErrNotJSON reports a header whose configuration is not libxl JSON (no
// FlagJSON: the old xl configuration-file text).
var ErrNotJSON = errors.New("the configuration is not libxl JSON")

// ParseConfig decodes a libxl JSON domain configuration; trailing NUL bytes
// (xl stores one) are ignored. A syntax or type error is a
// *stream.FormatError of layer "xl", field "config", whose offset is the
// byte of the configuration where decoding failed.
func ParseConfig(b []byte) (*DomainConfig, error) {
	b = bytes.TrimRight(b, "\x00")
	var c DomainConfig
	if err := json.Unmarshal(b, &c); err != nil {
		fe := &stream.FormatError{Layer: Layer, Index: -1, Field: "config", Err: fmt.Errorf("%w: %v", stream.ErrValue, err)}
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			fe.Offset = se.Offset
		case errors.As(err, &te):
			fe.Field, fe.Err, fe.Expected, fe.Actual = "config."+te.Field, stream.ErrValue, te.Type.String(), "JSON "+te.Value
		}
		return nil, fe
	}
	return &c, nil
}

// Marshal encodes the configuration as libxl JSON, indented by four spaces
// as libxl writes it, without a trailing NUL.
func (c *DomainConfig) Marshal() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "    "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// DomainConfig decodes the header's configuration. The offset of a
// FormatError is made absolute: the configuration starts after the fixed
// header and its 4-byte length.
func (h *Header) DomainConfig() (*DomainConfig, error) {
	if h.Mandatory&FlagJSON == 0 {
		return nil, &stream.FormatError{Layer: Layer, Index: -1, Field: "mandatory_flags", Err: ErrNotJSON}
	}
	c, err := ParseConfig(h.Config)
	var fe *stream.FormatError
	if errors.As(err, &fe) {
		fe.Offset += HeaderSize + 4
	}
	return c, err
}

// SetDomainConfig replaces the header's configuration with c, marshalled,
// ending with a NUL as xl writes it, and sets FlagJSON.
func (h *Header) SetDomainConfig(c *DomainConfig) error {
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	h.Config = append(b, 0)
	h.Mandatory |= FlagJSON
	return nil
}

// The JSON methods of the config structs: each decodes into a method-less
// copy of its type and keeps what the struct does not name.

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *DomainConfig) UnmarshalJSON(b []byte) error {
	type plain DomainConfig
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c DomainConfig) MarshalJSON() ([]byte, error) {
	type plain DomainConfig
	return encodeObject(plain(c), &c.Unknowns)
}

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *CreateInfo) UnmarshalJSON(b []byte) error {
	type plain CreateInfo
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c CreateInfo) MarshalJSON() ([]byte, error) {
	type plain CreateInfo
	return encodeObject(plain(c), &c.Unknowns)
}

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *BuildInfo) UnmarshalJSON(b []byte) error {
	type plain BuildInfo
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c BuildInfo) MarshalJSON() ([]byte, error) {
	type plain BuildInfo
	return encodeObject(plain(c), &c.Unknowns)
}

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *HVMInfo) UnmarshalJSON(b []byte) error {
	type plain HVMInfo
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c HVMInfo) MarshalJSON() ([]byte, error) {
	type plain HVMInfo
	return encodeObject(plain(c), &c.Unknowns)
}

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *PVInfo) UnmarshalJSON(b []byte) error {
	type plain PVInfo
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c PVInfo) MarshalJSON() ([]byte, error) {
	type plain PVInfo
	return encodeObject(plain(c), &c.Unknowns)
}

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *PVHInfo) UnmarshalJSON(b []byte) error {
	type plain PVHInfo
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c PVHInfo) MarshalJSON() ([]byte, error) {
	type plain PVHInfo
	return encodeObject(plain(c), &c.Unknowns)
}

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *Disk) UnmarshalJSON(b []byte) error {
	type plain Disk
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c Disk) MarshalJSON() ([]byte, error) {
	type plain Disk
	return encodeObject(plain(c), &c.Unknowns)
}

// UnmarshalJSON decodes the object, keeping unknown fields.
func (c *NIC) UnmarshalJSON(b []byte) error {
	type plain NIC
	return decodeObject(b, (*plain)(c), &c.Unknowns)
}

// MarshalJSON encodes the object with its unknown fields.
func (c NIC) MarshalJSON() ([]byte, error) {
	type plain NIC
	return encodeObject(plain(c), &c.Unknowns)
}

// jsonName returns the JSON key of a struct field, or "" for none.
func jsonName(f reflect.StructField) string {
	if f.Anonymous || !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

// decodeObject decodes the JSON object b into the struct v points to, field
// by field with exact key matches (libxl compares keys exactly; plain
// encoding/json would also match keys differing in case), and keeps in u
// the keys v does not name and the named keys whose values are zero.
func decodeObject(b []byte, v any, u *Unknowns) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	if all == nil { // JSON null
		return nil
	}
	rv := reflect.ValueOf(v).Elem()
	u.Unknown, u.zero = nil, nil
	known := map[string]bool{}
	for i := range rv.NumField() {
		name := jsonName(rv.Type().Field(i))
		if name == "" {
			continue
		}
		known[name] = true
		raw, ok := all[name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, rv.Field(i).Addr().Interface()); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				if te.Field == "" {
					te.Field = name
				} else {
					te.Field = name + "." + te.Field
				}
			}
			return err
		}
		if rv.Field(i).IsZero() {
			if u.zero == nil {
				u.zero = map[string]json.RawMessage{}
			}
			u.zero[name] = raw
		}
	}
	for k, raw := range all {
		if !known[k] {
			if u.Unknown == nil {
				u.Unknown = map[string]json.RawMessage{}
			}
			u.Unknown[k] = raw
		}
	}
	return nil
}

// encodeObject encodes the struct v: the named fields in order (zero ones
// only if the input had them), then the unknown keys sorted.
func encodeObject(v any, u *Unknowns) ([]byte, error) {
	rv := reflect.ValueOf(v)
	var b bytes.Buffer
	b.WriteByte('{')
	n := 0
	put := func(k string, raw []byte) {
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(raw)
	}
	for i := range rv.NumField() {
		name := jsonName(rv.Type().Field(i))
		if name == "" {
			continue
		}
		f := rv.Field(i)
		if f.IsZero() {
			if raw, ok := u.zero[name]; ok {
				put(name, raw)
			}
			continue
		}
		raw, err := json.Marshal(f.Interface())
		if err != nil {
			return nil, err
		}
		put(name, raw)
	}
	keys := make([]string, 0, len(u.Unknown))
	for k := range u.Unknown {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, dup := u.zero[k]; dup {
			continue
		}
		put(k, u.Unknown[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
