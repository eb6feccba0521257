// Package examples holds the example commands, one per directory, and the
// test that they all follow one convention (see internal/cli): flags parsed
// before any device is opened, -h exits 0 with a usage line, usage errors
// exit 2, runtime errors exit 1, all reported on stderr.
package examples
