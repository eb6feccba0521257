package migrate

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// UserdataPath is where libxl keeps a domain's configuration (JSON):
// /var/lib/xen/userdata-d.DOMID.UUID.libxl-json. xl reads it to treat a
// domain as its own (xl save, xl list -l, xl migrate).
func UserdataPath(domid uint32, uuid string) string {
	return fmt.Sprintf("/var/lib/xen/userdata-d.%d.%s.libxl-json", domid, uuid)
}

// PrepareConfig turns the libxl JSON xl keeps for a running domain into
// what `xl save` puts in its header: the same configuration without a
// requested domid (c_info.domid), so the restore picks a fresh one as after
// a plain `xl save`, and without trailing NULs.
func PrepareConfig(b []byte) ([]byte, error) {
	b = bytes.TrimRight(b, "\x00 \n")
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("domain configuration is not JSON: %w", err)
	}
	ci, ok := top["c_info"]
	if !ok {
		return nil, fmt.Errorf("domain configuration has no c_info")
	}
	var cinfo map[string]json.RawMessage
	if err := json.Unmarshal(ci, &cinfo); err != nil {
		return nil, fmt.Errorf("c_info: %w", err)
	}
	if _, ok := cinfo["domid"]; !ok {
		return b, nil // nothing to change: keep the bytes as xl wrote them
	}
	delete(cinfo, "domid")
	nb, err := json.Marshal(cinfo)
	if err != nil {
		return nil, err
	}
	top["c_info"] = nb
	return json.MarshalIndent(top, "", "    ")
}

// ConfigName returns c_info.name of a libxl JSON configuration ("" if
// there is none).
func ConfigName(b []byte) string {
	var c struct {
		CInfo struct {
			Name string `json:"name"`
		} `json:"c_info"`
	}
	json.Unmarshal(bytes.TrimRight(b, "\x00"), &c)
	return c.CInfo.Name
}
