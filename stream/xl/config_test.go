package xl

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/xensr/xensr/internal/fixture"
	"github.com/xensr/xensr/stream"
)

// fixtureHeader reads the xl header of stream/testdata/NAME.zst.
func fixtureHeader(t *testing.T, name string) *Header {
	t.Helper()
	h, err := ReadHeader(bytes.NewReader(fixture.Load(t, name)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// jsonEqual reports whether two JSON texts hold the same values.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(bytes.TrimRight(a, "\x00"), &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(bytes.TrimRight(b, "\x00"), &vb); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(va, vb)
}

// TestConfigFixtures decodes the domain configurations of the real Xen 4.17
// save images and re-encodes them without losing a value.
func TestConfigFixtures(t *testing.T) {
	for _, tc := range []struct {
		file, typ, name, uuid string
	}{
		{"guest1-pv.xl", "pv", "guest1", "12f9adbc-e790-11f1-b017-9db32232f3f8"},
		{"guest3-pvh.xl", "pvh", "guest3", "30403c35-c2b0-4973-9f06-b6503ddf3f51"},
		{"guest3-pvh-migrate.xl", "pvh", "guest3", "30403c35-c2b0-4973-9f06-b6503ddf3f51"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			h := fixtureHeader(t, tc.file)
			c, err := h.DomainConfig()
			if err != nil {
				t.Fatal(err)
			}
			b := c.BInfo
			if c.CInfo.Type != tc.typ || c.CInfo.Name != tc.name || c.CInfo.UUID != tc.uuid {
				t.Errorf("c_info %+v", c.CInfo)
			}
			if b.MaxMemKB != 131072 || b.TargetMemKB != 131072 || b.MaxVCPUs != 1 || !reflect.DeepEqual(b.AvailVCPUs, []int{0}) {
				t.Errorf("b_info memory/vcpus: %+v", b)
			}
			if b.KernelPath() != "/lab/vmlinuz" || b.RamdiskPath() != "/lab/domU.cpio.gz" || b.CommandLine() != "console=hvc0 quiet loglevel=3" {
				t.Errorf("kernel %q ramdisk %q cmdline %q", b.KernelPath(), b.RamdiskPath(), b.CommandLine())
			}
			if (b.PV != nil) != (tc.typ == "pv") || (b.PVH != nil) != (tc.typ == "pvh") || b.HVM != nil {
				t.Errorf("type members pv %v pvh %v hvm %v", b.PV, b.PVH, b.HVM)
			}
			if c.OnCrash != "preserve" || c.OnReboot != "restart" {
				t.Errorf("on_crash %q on_reboot %q", c.OnCrash, c.OnReboot)
			}
			// Fields the structs do not name are kept, at every level.
			if _, ok := c.CInfo.Unknown["run_hotplug_scripts"]; !ok {
				t.Errorf("c_info unknowns %v", c.CInfo.Unknown)
			}
			if _, ok := b.Unknown["sched_params"]; !ok {
				t.Errorf("b_info unknowns %v", b.Unknown)
			}
			out, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, out, h.Config) {
				t.Errorf("re-encoded config differs:\n%s\nwas\n%s", out, h.ConfigText())
			}
			// Through the header: a NUL-terminated JSON text like xl's.
			h2 := *h
			if err := h2.SetDomainConfig(c); err != nil {
				t.Fatal(err)
			}
			if h2.Config[len(h2.Config)-1] != 0 || !jsonEqual(t, h2.Config, h.Config) {
				t.Errorf("SetDomainConfig: %q", h2.Config)
			}
		})
	}
}

// A configuration with devices, zero-valued fields and fields no struct
// names, in the shape libxl writes.
const devicesConfig = `{
    "c_info": {"type": "hvm", "name": "win", "uuid": "6a8e7a64-3c51-4b4e-9c56-0ad8b0b6c7a1", "hap": "True"},
    "b_info": {
        "max_vcpus": 2, "avail_vcpus": [0, 1], "max_memkb": 2097152, "target_memkb": 1048576,
        "video_memkb": 0,
        "type.hvm": {"firmware": "", "bios": "seabios", "boot": "cd", "acpi": "True", "vga": {"kind": "std"}},
        "arch_x86": {"msr_relaxed": "False"}
    },
    "disks": [
        {"backend_domid": 0, "pdev_path": "/dev/vg0/win", "vdev": "hda", "backend": "phy", "format": "raw",
         "removable": 0, "readwrite": 1, "is_cdrom": 0, "colo_enable": "False"},
        {"pdev_path": "/iso/w.iso", "vdev": "hdc", "backend": "qdisk", "format": "raw", "removable": 1, "is_cdrom": 1}
    ],
    "nics": [
        {"devid": 0, "mac": "00:16:3e:11:22:33", "bridge": "xenbr0", "model": "e1000", "nictype": "vif_ioemu",
         "rate_bytes_per_interval": 0, "gatewaydev": null}
    ],
    "vfbs": [{"vnc": {"enable": "True"}}],
    "on_poweroff": "destroy"
}`

func TestConfigDevices(t *testing.T) {
	c, err := ParseConfig([]byte(devicesConfig + "\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Disks) != 2 || c.Disks[0].PDevPath != "/dev/vg0/win" || c.Disks[0].Readwrite != 1 || c.Disks[1].IsCDROM != 1 || c.Disks[1].Backend != "qdisk" {
		t.Errorf("disks %+v", c.Disks)
	}
	if len(c.NICs) != 1 || c.NICs[0].MAC != "00:16:3e:11:22:33" || c.NICs[0].Bridge != "xenbr0" || c.NICs[0].NICType != "vif_ioemu" {
		t.Errorf("nics %+v", c.NICs)
	}
	if c.BInfo.HVM == nil || c.BInfo.HVM.BIOS != "seabios" || c.BInfo.HVM.Unknown["vga"] == nil || c.BInfo.AvailVCPUs[1] != 1 {
		t.Errorf("b_info %+v", c.BInfo)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, out, []byte(devicesConfig)) {
		t.Fatalf("round trip differs:\n%s", out)
	}
	// An edit shows up; what the structs do not name stays.
	c.Disks[0].PDevPath = "/dev/vg1/win"
	c.BInfo.TargetMemKB = 2097152
	c.NICs[0].Devid = 4
	out, _ = c.Marshal()
	var m map[string]any
	json.Unmarshal(out, &m)
	disk0 := m["disks"].([]any)[0].(map[string]any)
	nic0 := m["nics"].([]any)[0].(map[string]any)
	if disk0["pdev_path"] != "/dev/vg1/win" || disk0["colo_enable"] != "False" || disk0["removable"] != 0.0 ||
		m["b_info"].(map[string]any)["target_memkb"] != 2097152.0 || nic0["devid"] != 4.0 || m["vfbs"] == nil {
		t.Errorf("edited config:\n%s", out)
	}
	if _, ok := nic0["gatewaydev"]; !ok {
		t.Errorf("null-valued unknown field lost")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		in    string
		off   int64
		field string
	}{
		{`{"c_info": {"name": "x"},}`, 26, "config"},
		{`{"b_info": {"max_memkb": "lots"}}`, 0, "config.b_info.max_memkb"},
		{`{"disks": {"vdev": "xvda"}}`, 0, "config.disks"},
	} {
		_, err := ParseConfig([]byte(tc.in))
		var fe *stream.FormatError
		if !errors.As(err, &fe) || fe.Layer != Layer || fe.Field != tc.field || fe.Offset != tc.off || !errors.Is(err, stream.ErrValue) {
			t.Errorf("%s: %v (%+v)", tc.in, err, fe)
		}
	}
	_, err := ParseConfig([]byte(`{"b_info": {"max_vcpus": "two"}}`))
	if want := "xl: at offset 0, field config.b_info.max_vcpus: invalid field value: expected int, got JSON string"; err == nil || err.Error() != want {
		t.Errorf("error text %v", err)
	}
	h := &Header{Config: []byte("name = 'x'\n")}
	if _, err := h.DomainConfig(); !errors.Is(err, ErrNotJSON) {
		t.Errorf("text config: %v", err)
	}
	h.Mandatory = FlagJSON
	var fe *stream.FormatError
	if _, err := h.DomainConfig(); !errors.As(err, &fe) || fe.Offset != HeaderSize+4+2 {
		t.Errorf("bad JSON in a header: %v", err)
	}
}

// FuzzConfig: whatever ParseConfig accepts marshals to JSON holding the
// same values, and parses again; nothing panics.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(devicesConfig))
	f.Add([]byte(`{"c_info": {"name": "a", "type": "pv"}, "b_info": {"type.pv": {"kernel": "/k", "cmdline": ""}}, "x": [1, {"y": null}]}`))
	f.Add([]byte(`{"b_info": null, "disks": [], "nics": [{}]}`))
	f.Add([]byte(`{"B_Info":{"":{}}}`)) // found by fuzzing: a key differing only in case
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("parsed config does not marshal: %v", err)
		}
		var orig any
		if json.Unmarshal(bytes.TrimRight(b, "\x00"), &orig) != nil {
			return // json.Unmarshal into structs accepts some texts into any it rejects? keep going only if both decode
		}
		var again any
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("Marshal output is not JSON: %v\n%s", err, out)
		}
		if _, isObj := orig.(map[string]any); isObj && !reflect.DeepEqual(orig, again) {
			t.Fatalf("values differ:\n%s\n%s", b, out)
		}
		if _, err := ParseConfig(out); err != nil {
			t.Fatalf("Marshal output does not parse: %v", err)
		}
	})
}
