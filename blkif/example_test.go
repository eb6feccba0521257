package blkif_test

import (
	"fmt"

	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/ring"
)

// A frontend puts a read and a request with 12 segments on a one-page
// ring; the backend copies each out, checks it, and answers.
func Example() {
	page := make([]byte, blkif.PageSize) // the page the frontend grants
	front, _ := ring.NewFront(page, blkif.EntrySize)
	back, _ := ring.NewBack(page, blkif.EntrySize)

	for _, r := range []blkif.Request{
		{Operation: blkif.OpRead, NrSegments: 1, ID: 1, Sector: 8, Seg: [blkif.MaxSegments]blkif.Segment{{Gref: 10, LastSect: 7}}},
		{Operation: blkif.OpWrite, NrSegments: 12, ID: 2},
	} {
		blkif.EncodeRequest(front.Request(), &r)
		front.CommitRequest()
	}
	fmt.Println("notify backend:", front.PushRequests())

	disk := blkif.Disk{Sectors: 1 << 20}
	slot := make([]byte, blkif.EntrySize)
	for back.Unconsumed() > 0 {
		idx, off := back.ReqCons, back.SlotOffset(back.ReqCons)
		slot = back.NextRequest(slot)
		var r blkif.Request
		blkif.DecodeRequest(slot, &r)
		err := r.Check(disk, idx, off)
		if err != nil {
			fmt.Println(err)
		}
		blkif.EncodeResponse(back.Response(), blkif.Response{ID: r.ID, Operation: r.Operation, Status: blkif.StatusFor(err)})
		back.CommitResponse()
	}
	fmt.Println("notify frontend:", back.PushResponses())
	for front.Unconsumed() > 0 {
		fmt.Printf("%+v\n", blkif.DecodeResponse(front.NextResponse(nil)))
	}
	// Output:
	// notify backend: true
	// blkif: record 1 (write) at offset 176, field nr_segments: invalid field value: 12 segments, want at most 11
	// notify frontend: true
	// {ID:1 Operation:0 Status:0}
	// {ID:2 Operation:1 Status:-1}
}
