package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xensr/xensr/stream/xl"
)

// IncomingSuffix is the suffix a migration receiver gives the domain until
// the sender gives up the name (xl's "--incoming").
const IncomingSuffix = "--incoming"

// Receive is the receiving half of xl's migration protocol (what `xl
// migrate-receive` does): it sends the banner on out, restores the stream
// from in as NAME--incoming, paused, reports "ready", waits for the
// sender's permission, renames the domain to NAME, unpauses it (unless
// opt.Paused) and reports the result.
//
// A failure before the domain is complete returns the error without a
// report: the sender sees the protocol end and resumes its copy. A failure
// after the permission destroys our copy, reports it and hands the domain
// back to the sender.
func Receive(ctx context.Context, b Builder, ts Toolstack, in io.Reader, out io.Writer, opt RestoreOptions) (*Restored, error) {
	if _, err := io.WriteString(out, xl.MigrateBanner); err != nil {
		return nil, fmt.Errorf("migration receiver: banner: %w", err)
	}
	br := bufio.NewReaderSize(in, 1<<20)
	paused := opt.Paused
	ropt := opt
	ropt.Paused = true
	ropt.Suffix = IncomingSuffix
	r, err := Restore(ctx, b, ts, br, ropt)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(out, xl.MigrateReady); err != nil {
		return nil, errors.Join(fmt.Errorf("migration receiver: ready: %w", err), r.Destroy())
	}
	err = expect(br, xl.MigratePermission)
	if err == nil {
		err = r.Rename(strings.TrimSuffix(r.Name, IncomingSuffix))
	}
	if err == nil && !paused {
		err = r.Unpause()
	}
	var status byte
	if err != nil {
		status = 1
	}
	if _, werr := io.WriteString(out, xl.MigrateReport); werr == nil {
		out.Write([]byte{status})
	}
	if err != nil {
		derr := r.Destroy()
		if derr == nil {
			io.WriteString(out, xl.MigratePermission)
		}
		return nil, errors.Join(fmt.Errorf("migration receiver: %w [our copy destroyed]", err), derr)
	}
	return r, nil
}
