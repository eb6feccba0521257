package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/xensr/xensr/hypercall"
)

type fakeSource struct{ doms []hypercall.DomainInfo }

func (fakeSource) Version() (uint32, uint32, error) { return 4, 17, nil }
func (fakeSource) ExtraVersion() (string, error)    { return ".7", nil }
func (fakeSource) Capabilities() (string, error)    { return "xen-3.0-x86_64 hvm-3.0-x86_64 ", nil }
func (f fakeSource) GetDomainInfoList(first uint32, max int) ([]hypercall.DomainInfo, error) {
	var out []hypercall.DomainInfo
	for _, d := range f.doms {
		if d.Domain >= first && len(out) < max {
			out = append(out, d)
		}
	}
	return out, nil
}

func TestList(t *testing.T) {
	var doms []hypercall.DomainInfo
	for i := uint32(0); i < 70; i++ { // more than one 64-domain batch
		doms = append(doms, hypercall.DomainInfo{Domain: i, TotPages: 32768, OnlineVCPUs: 1, Flags: hypercall.DomainBlocked, CPUTime: 2e9})
	}
	var out bytes.Buffer
	err := run(context.Background(), fakeSource{doms}, func(_ context.Context, d uint32) string {
		if d == 0 {
			return "Domain-0"
		}
		return "guest"
	}, &out, false)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3+70 || !strings.Contains(lines[0], "4.17.7") || !strings.HasPrefix(lines[3], "Domain-0") {
		t.Fatalf("output:\n%s", out.String())
	}
	if f := strings.Fields(lines[72]); f[1] != "69" || f[2] != "128" || f[4] != "-b----" || f[5] != "2.0" {
		t.Fatalf("last line %q", lines[72])
	}
}
