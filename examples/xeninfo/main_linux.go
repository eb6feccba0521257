//go:build linux

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/xenstore"
)

func start(out io.Writer, asJSON bool) error {
	ctx := context.Background()
	x, err := hypercall.Open()
	if err != nil {
		return err
	}
	defer x.Close()
	xs, err := xenstore.Dial(ctx)
	namer := func(context.Context, uint32) string { return "-" }
	if err == nil {
		defer xs.Close()
		namer = func(ctx context.Context, domid uint32) string {
			if domid == 0 {
				return "Domain-0"
			}
			n, err := xs.Read(ctx, fmt.Sprintf("/local/domain/%d/name", domid))
			if err != nil {
				return "-"
			}
			return string(n)
		}
	}
	return run(ctx, x, namer, out, asJSON)
}
