package libxc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xensr/xensr/internal/xentools"
	"pgregory.net/rapid"
)

// verifier skips unless Xen's own stream verifier is installed.
func verifier(t testing.TB) {
	if !xentools.HaveVerifier() {
		t.Skipf("SKIP-NEEDS-XEN-TOOLS: %s missing (apt-get install xen-utils-4.17; scripts/test.sh does)", xentools.VerifyStreamV2)
	}
}

func runVerifier(t testing.TB, format string, stream []byte) (string, error) {
	f := filepath.Join(t.TempDir(), "stream")
	if err := os.WriteFile(f, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	return xentools.Verify(format, f)
}

// TestXenVerifierAcceptsWriter runs Xen's verify-stream-v2 on streams our
// Writer produced: hand-made ones and generated ones without the records
// the verifier is known to mishandle (optional types, TOOLSTACK,
// CHECKPOINT_DIRTY_PFN_LIST; see shared/docs/stream-validation.md).
func TestXenVerifierAcceptsWriter(t *testing.T) {
	verifier(t)
	for name, b := range map[string][]byte{
		"pv":     encode(t, 3, DomainX86PV, validPV()...),
		"hvm":    encode(t, 3, DomainX86HVM, validHVM()...),
		"hvm v2": encode(t, 2, DomainX86HVM, validHVM()[3:]...),
	} {
		if out, err := runVerifier(t, "libxc", b); err != nil {
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
		if out, err := runVerifier(t, "libxc", b); err != nil {
			rt.Fatalf("verify-stream-v2 rejects a stream our Reader accepts: %v\n%s", err, out)
		}
		n++
	})
	t.Logf("verify-stream-v2 accepted %d generated streams", n)
}

// TestXenVerifierRejectsWhatWeReject checks a few broken streams against the
// verifier: where its rules and ours overlap, both reject.
func TestXenVerifierRejectsWhatWeReject(t *testing.T) {
	verifier(t)
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
		if out, err := runVerifier(t, "libxc", b); err == nil {
			t.Errorf("%s: verify-stream-v2 accepts it:\n%s", name, out)
		}
	}
}
