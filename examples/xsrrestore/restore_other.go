//go:build !linux

package main

import (
	"context"
	"errors"
	"io"

	"github.com/xensr/xensr/migrate"
)

func restore(ctx context.Context, a *args, in io.Reader, out, stderr io.Writer, opt migrate.RestoreOptions) error {
	return errors.New("restoring a domain needs Linux with /dev/xen/privcmd")
}

func listen(ctx context.Context, a *args, stderr io.Writer) error {
	return errors.New("receiving a domain needs Linux with /dev/xen/privcmd")
}
