package xentools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyRejectsGarbage(t *testing.T) {
	if !HaveVerifier() {
		t.Skipf("SKIP-NEEDS-XEN-TOOLS: %s missing (scripts/test.sh installs xen-utils-4.17)", VerifyStreamV2)
	}
	p := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(p, []byte(strings.Repeat("not a stream", 8)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Verify("libxc", p)
	if err == nil {
		t.Fatalf("verify-stream-v2 accepted garbage:\n%s", out)
	}
}
