package libxc

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"
)

// verifier returns the command line of Xen's own stream verifier, or skips.
func verifier(t testing.TB) []string {
	const bin = "/usr/lib/xen-4.17/bin/verify-stream-v2"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("SKIP-NEEDS-XEN-TOOLS: %s missing (apt-get install xen-utils-4.17; scripts/test.sh does)", bin)
	}
	return []string{"python3", bin}
}

func runVerifier(t testing.TB, cmdline []string, format string, stream []byte) (string, error) {
	f := filepath.Join(t.TempDir(), "stream")
	if err := os.WriteFile(f, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cmdline[0], append(cmdline[1:], "-f", format, "-i", f)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH=/usr/lib/xen-4.17/lib/python")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestXenVerifierAcceptsWriter runs Xen's verify-stream-v2 on streams our
// Writer produced: hand-made ones and generated ones without the records
// the verifier is known to mishandle (optional types, TOOLSTACK,
// CHECKPOINT_DIRTY_PFN_LIST; see shared/docs/stream-validation.md).
func TestXenVerifierAcceptsWriter(t *testing.T) {
	v := verifier(t)
	for name, b := range map[string][]byte{
		"pv":     encode(t, 3, DomainX86PV, validPV()...),
		"hvm":    encode(t, 3, DomainX86HVM, validHVM()...),
		"hvm v2": encode(t, 2, DomainX86HVM, validHVM()[3:]...),
	} {
		if out, err := runVerifier(t, v, "libxc", b); err != nil {
			t.Errorf("%s: verify-stream-v2: %v\n%s", name, err, out)
		}
	}
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		version, dom, _, recs := genStream(rt)
		var keep []Record
		for _, r := range recs {
			switch r.(type) {
			case *Raw, *Toolstack, *Checkpoint, *CheckpointDirtyPFNList:
				continue
			}
			keep = append(keep, r)
		}
		b := encode(rt, version, dom, keep...)
		if err := readAll(b, false); err != nil {
			rt.Fatalf("our reader rejects it: %v", err)
		}
		if out, err := runVerifier(t, v, "libxc", b); err != nil {
			rt.Fatalf("verify-stream-v2 rejects a stream our Reader accepts: %v\n%s", err, out)
		}
		n++
	})
	t.Logf("verify-stream-v2 accepted %d generated streams", n)
}

// TestXenVerifierRejectsWhatWeReject checks a few broken streams against the
// verifier: where its rules and ours overlap, both reject.
func TestXenVerifierRejectsWhatWeReject(t *testing.T) {
	v := verifier(t)
	hvm := validHVM()
	for name, b := range map[string][]byte{
		"page type 6":        encode(t, 3, DomainX86HVM, append(hvm[:3:3], &PageData{Entries: []uint64{6 << 60}})...),
		"pfn reserved bits":  encode(t, 3, DomainX86HVM, append(hvm[:3:3], &PageData{Entries: []uint64{1<<53 | 0xf<<60}})...),
		"STATIC_DATA_END v2": encode(t, 2, DomainX86HVM, hvm...),
		"unknown type":       encode(t, 3, DomainX86HVM, append(hvm[:3:3], &Raw{RecType: 0x55})...),
	} {
		if readAll(b, false) == nil {
			t.Errorf("%s: our reader accepts it", name)
		}
		if out, err := runVerifier(t, v, "libxc", b); err == nil {
			t.Errorf("%s: verify-stream-v2 accepts it:\n%s", name, out)
		}
	}
}
