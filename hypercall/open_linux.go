//go:build linux

package hypercall

import (
	"errors"
	"io/fs"

	"github.com/xensr/xensr/privcmd"
)

// Open opens /dev/xen/privcmd and a buffer pool from /dev/xen/hypercall,
// falling back to mlock()ed memory (and EFAULT retries of safe calls) on
// kernels without that device, and probes the hypervisor's interface
// versions (Probe): a Xen whose domctl or sysctl version is not in Releases
// fails here with an *InterfaceError. Close releases them.
func Open() (*Xen, error) {
	dev, err := privcmd.Open()
	if err != nil {
		return nil, err
	}
	var alloc Allocator = privcmd.LockedMemory{}
	bd, err := privcmd.OpenBuffers()
	switch {
	case err == nil:
		alloc = bd
	case !errors.Is(err, fs.ErrNotExist):
		dev.Close()
		return nil, err
	}
	x := New(dev, NewPool(alloc))
	x.closer = func() error {
		err := x.Pool.Close()
		if bd != nil {
			bd.Close()
		}
		return errors.Join(err, dev.Close())
	}
	if _, err := x.Probe(); err != nil {
		x.Close()
		return nil, err
	}
	return x, nil
}
