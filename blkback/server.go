// Package blkback is a userspace Xen block backend: it serves a file (any
// Disk) to a guest's blkfront. Every grant it maps, the shared ring and
// each request's data pages, goes through a grant.Tracker, so a save or
// migration can quiesce it before the last dirty-bitmap pass: Quiesce stops
// taking requests, lets the one in flight complete and answers it, and the
// Tracker unmaps everything and reports the frames that were mapped
// writable (the ring page), which the save sends again.
//
// Server handles one ring (package ring, package blkif); Backend does the
// xenbus handshake with the frontend (package xenbus) and runs a Server
// from the frontend's event channel. Both are portable: the event channel
// and the grant mapper are interfaces (evtchn.Device and grant.Device on
// Linux, fakes in tests).
package blkback

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/xensr/xensr/blkif"
	"github.com/xensr/xensr/grant"
	"github.com/xensr/xensr/ring"
)

// A Disk is what a Server reads and writes: an *os.File will do.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Stats counts what a Server did.
type Stats struct {
	Requests     uint64 // requests answered
	Errors       uint64 // answered with an error status
	Reads        uint64 // read requests answered okay
	Writes       uint64 // write requests (and flushes with data) answered okay
	Flushes      uint64 // flush requests answered okay
	BytesRead    uint64 // bytes copied from the disk to the guest
	BytesWritten uint64 // bytes copied from the guest to the disk
	LastError    error  // the last request refused, for diagnostics
}

// A Server answers the requests of one blkif ring. Not safe for concurrent
// use, except Stats.
type Server struct {
	tr    *grant.Tracker
	dom   uint32
	disk  Disk
	info  blkif.Disk
	ringM *grant.Tracked
	back  *ring.Back
	slot  []byte
	req   blkif.Request

	mu    sync.Mutex
	stats Stats
}

// NewServer maps the ring page ringRef of domain dom through tr (writable,
// persistent: it stays mapped until Close or the Tracker's Quiesce) and
// returns a Server for it. ringFrame is the guest frame behind ringRef, the
// one a Quiesce reports (0 when unknown: then the Tracker's own Resolver,
// if any, is asked).
func NewServer(tr *grant.Tracker, dom uint32, ringRef grant.Ref, ringFrame uint64, disk Disk, info blkif.Disk) (*Server, error) {
	req := grant.Request{Grants: []grant.Grant{{Domid: dom, Ref: ringRef}}, Writable: true, Persistent: true, Holder: "blkback ring"}
	if ringFrame != 0 {
		req.Frames = []uint64{ringFrame}
	}
	m, err := tr.Map(req)
	if err != nil {
		return nil, fmt.Errorf("blkback: mapping ring ref %d of dom%d: %w", ringRef, dom, err)
	}
	b, err := ring.NewBack(m.Mapping.Mem, blkif.EntrySize)
	if err != nil {
		tr.Unmap(m)
		return nil, err
	}
	return &Server{tr: tr, dom: dom, disk: disk, info: info, ringM: m, back: b,
		slot: make([]byte, blkif.EntrySize)}, nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Serve answers every request waiting on the ring, until the final check
// finds none, and reports whether the frontend asked to be notified. A
// request that fails its checks, names a grant that cannot be mapped, or
// whose disk I/O fails gets an error response; Serve itself fails only
// when it cannot go on (the Tracker is quiesced: the requests not consumed
// stay on the ring for whoever serves it next).
func (s *Server) Serve() (notify bool, err error) {
	for {
		for s.back.Unconsumed() > 0 {
			idx := s.back.ReqCons
			off := s.back.SlotOffset(idx)
			s.slot = s.back.NextRequest(s.slot)
			rsp, err := s.handle(idx, off)
			if err != nil {
				s.back.ReqCons = idx // left on the ring, unanswered
				return notify, err
			}
			blkif.EncodeResponse(s.back.Response(), rsp)
			s.back.CommitResponse()
			if s.back.PushResponses() {
				notify = true
			}
		}
		if !s.back.FinalCheckForRequests() {
			return notify, nil
		}
	}
}

// handle answers one request (decoded from the private copy in s.slot);
// it fails only when the Tracker refuses to map because it is quiesced.
func (s *Server) handle(idx uint32, off int64) (blkif.Response, error) {
	r := &s.req
	blkif.DecodeRequest(s.slot, r) // a full slot always decodes
	err := r.Check(s.info, idx, off)
	if err == nil {
		err = s.do(r)
		if errors.Is(err, grant.ErrQuiesced) {
			return blkif.Response{}, err
		}
	}
	s.mu.Lock()
	s.stats.Requests++
	if err != nil {
		s.stats.Errors++
		s.stats.LastError = err
	}
	s.mu.Unlock()
	return blkif.Response{ID: r.ID, Operation: r.Operation, Status: blkif.StatusFor(err)}, nil
}

// do performs a checked request.
func (s *Server) do(r *blkif.Request) error {
	n := int(r.NrSegments)
	if r.Operation == blkif.OpFlushDiskcache && n == 0 {
		if err := s.disk.Sync(); err != nil {
			return fmt.Errorf("blkback: flush: %w", err)
		}
		s.mu.Lock()
		s.stats.Flushes++
		s.mu.Unlock()
		return nil
	}
	toGuest := r.Operation == blkif.OpRead
	gs := make([]grant.Grant, n)
	for i := range gs {
		gs[i] = grant.Grant{Domid: s.dom, Ref: r.Seg[i].Gref}
	}
	m, err := s.tr.Map(grant.Request{Grants: gs, Writable: toGuest, Holder: "blkback " + blkif.OpName(r.Operation)})
	if err != nil {
		return fmt.Errorf("blkback: mapping %d data grants: %w", n, err)
	}
	defer s.tr.Unmap(m)
	if r.Operation == blkif.OpFlushDiskcache {
		// A write with a preflush or FUA: what was written before reaches
		// the disk first, and this write before the answer.
		if err := s.disk.Sync(); err != nil {
			return fmt.Errorf("blkback: flush before write: %w", err)
		}
	}
	pos := int64(r.Sector) * blkif.SectorSize
	total := 0
	for i := 0; i < n; i++ {
		sg := r.Seg[i]
		page := m.Mapping.Mem[i*blkif.PageSize : (i+1)*blkif.PageSize]
		data := page[int(sg.FirstSect)*blkif.SectorSize : (int(sg.LastSect)+1)*blkif.SectorSize]
		if toGuest {
			k, err := s.disk.ReadAt(data, pos)
			if err != nil && err != io.EOF {
				return fmt.Errorf("blkback: read at %d: %w", pos, err)
			}
			clear(data[k:]) // past the end of a short file: zeros

		} else if _, err := s.disk.WriteAt(data, pos); err != nil {
			return fmt.Errorf("blkback: write at %d: %w", pos, err)
		}
		pos += int64(len(data))
		total += len(data)
	}
	if r.Operation == blkif.OpFlushDiskcache {
		if err := s.disk.Sync(); err != nil {
			return fmt.Errorf("blkback: flush after write: %w", err)
		}
	}
	s.mu.Lock()
	if toGuest {
		s.stats.Reads++
		s.stats.BytesRead += uint64(total)
	} else {
		s.stats.Writes++
		s.stats.BytesWritten += uint64(total)
	}
	s.mu.Unlock()
	return nil
}

// Close unmaps the ring (if the Tracker still holds it).
func (s *Server) Close() error {
	err := s.tr.Unmap(s.ringM)
	if err == grant.ErrUnknownMapping {
		return nil // a Quiesce unmapped it
	}
	return err
}
