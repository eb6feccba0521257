// Package xentools runs Xen's own tools that the tests use as independent
// oracles, from Debian's xen-utils-4.17 package: verify-stream-v2, Xen's
// stream verifier. One place knows where the tool lives and how to start it.
package xentools

import (
	"os"
	"os/exec"
)

// VerifyStreamV2 is where xen-utils-4.17 installs Xen's stream verifier.
const VerifyStreamV2 = "/usr/lib/xen-4.17/bin/verify-stream-v2"

// pythonPath is where its Python modules (xen.migration) live.
const pythonPath = "/usr/lib/xen-4.17/lib/python"

// HaveVerifier reports whether verify-stream-v2 is installed.
func HaveVerifier() bool {
	_, err := os.Stat(VerifyStreamV2)
	return err == nil
}

// Verify runs verify-stream-v2 on the file at path holding a stream of the
// given format ("xl", "libxl" or "libxc") and returns what it printed; the
// error is non-nil when it rejects the stream. The script is run directly,
// so its own interpreter line picks Debian's python3 rather than whatever
// python3 comes first on the PATH (a version manager's shim there costs a
// second a call).
func Verify(format, path string, extra ...string) (string, error) {
	cmd := exec.Command(VerifyStreamV2, append([]string{"-f", format, "-i", path}, extra...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pythonPath)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
