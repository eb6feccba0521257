package blkback

import (
	"context"

	"github.com/xensr/xensr/xenbus"
	"github.com/xensr/xensr/xenstore"
)

// Attach sets the disk up as a toolstack does and serves it: it writes the
// backend's and the frontend's nodes for cfg.Device (DiskEntries, one
// transaction), calls started (if set) with the Backend, runs it until the
// frontend closes the device or ctx ends, and removes the nodes. vdev is the
// guest's name for the disk (xvda...), params the backing file's name,
// backendType the "type" node.
//
// Attach is also the receiving side of a live migration: the restored
// domain, still paused, gets its disk by an Attach with cfg.Device.FrontDomid
// set to the new domain id (the nodes must exist before the guest runs:
// blkfront reconnects on resume and queues again the requests the source
// did not answer); the source's Backend, quiesced by the save
// (Backend.Quiesce), is stopped once the source is destroyed.
func Attach(ctx context.Context, cfg Config, vdev, params, backendType string, started func(*Backend)) (*Backend, error) {
	d := cfg.Device
	back, front := DiskEntries(d, vdev, params, backendType, cfg.ReadOnly)
	if err := cfg.Store.Transaction(ctx, func(tx *xenstore.Tx) error { return xenbus.Add(ctx, tx, d, back, front) }); err != nil {
		return nil, err
	}
	defer xenbus.Remove(context.WithoutCancel(ctx), cfg.Store, d)
	b := New(cfg)
	if started != nil {
		started(b)
	}
	return b, b.Run(ctx)
}
