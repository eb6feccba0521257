//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/xensr/xensr/internal/labtest"
)

// TestLabAgreesWithXl runs xeninfo in dom0 with a guest up and compares its
// domain list with `xl list` (name, id, memory, vCPUs) and its version with
// `xl info`.
func TestLabAgreesWithXl(t *testing.T) {
	labtest.Require(t)
	labtest.CreateGuest(t, labtest.GuestPV2)
	var out bytes.Buffer
	if err := start(&out, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("xeninfo:\n%s", out.String())
	ours := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n")[3:] {
		if f := strings.Fields(line); len(f) == 6 {
			ours[f[0]] = f[1:4]
		}
	}
	xl := labtest.Run(t, "xl", "list")
	n := 0
	for _, line := range strings.Split(xl, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		n++
		got, ok := ours[f[0]]
		if !ok {
			t.Errorf("xl lists %s, xeninfo does not", f[0])
			continue
		}
		if got[0] != f[1] || got[2] != f[3] {
			t.Errorf("%s: xeninfo id/vcpus %v, xl %v", f[0], got, f[1:4])
		}
		// xl's Mem column rounds differently for dom0; the guest must agree.
		if f[0] != "Domain-0" && got[1] != f[2] {
			t.Errorf("%s: xeninfo %s MiB, xl %s MiB", f[0], got[1], f[2])
		}
	}
	if n < 2 || len(ours) != n {
		t.Fatalf("xl lists %d domains, xeninfo %d", n, len(ours))
	}
	info := labtest.Run(t, "xl", "info")
	field := func(k string) string {
		for _, l := range strings.Split(info, "\n") {
			if f := strings.SplitN(l, ":", 2); len(f) == 2 && strings.TrimSpace(f[0]) == k {
				return strings.TrimSpace(f[1])
			}
		}
		t.Fatalf("xl info has no %s:\n%s", k, info)
		return ""
	}
	want := field("xen_major") + "." + field("xen_minor") + field("xen_extra")
	first := strings.Fields(strings.Split(out.String(), "\n")[0])
	if first[2] != want {
		t.Fatalf("version line %q, xl info says %s", first, want)
	}
	// The -json form holds the same domains.
	var jout bytes.Buffer
	if err := start(&jout, true); err != nil {
		t.Fatal(err)
	}
	var j Info
	if err := json.Unmarshal(jout.Bytes(), &j); err != nil {
		t.Fatalf("-json output: %v\n%s", err, jout.String())
	}
	if j.XenVersion != want || len(j.Domains) != n {
		t.Fatalf("-json: version %q, %d domains; want %s, %d", j.XenVersion, len(j.Domains), want, n)
	}
}
