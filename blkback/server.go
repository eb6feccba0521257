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

	copier Copier              // nil: map the data pages
	buf    []byte              // grant copy's local buffer
	segs   []grant.CopySegment // grant copy's segments

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

// UseCopy makes the Server move data by grant copy through c instead of
// mapping the data pages (the ring stays mapped).
func (s *Server) UseCopy(c Copier) {
	s.copier = c
	s.buf = make([]byte, blkif.MaxSegments*blkif.PageSize)
	s.segs = make([]grant.CopySegment, 0, blkif.MaxSegments)
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
	if r.Operation == blkif.OpFlushDiskcache {
		// A write with a preflush or FUA: what was written before reaches
		// the disk first, and this write before the answer.
		if err := s.disk.Sync(); err != nil {
			return fmt.Errorf("blkback: flush before write: %w", err)
		}
	}
	transfer := s.mapped
	if s.copier != nil {
		transfer = s.copied
	}
	total, err := transfer(r, toGuest)
	if err != nil {
		return err
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

// mapped moves a checked request's data through a mapping of its grants
// (writable when the guest reads), unmapped before the answer.
func (s *Server) mapped(r *blkif.Request, toGuest bool) (int, error) {
	n := int(r.NrSegments)
	gs := make([]grant.Grant, n)
	for i := range gs {
		gs[i] = grant.Grant{Domid: s.dom, Ref: r.Seg[i].Gref}
	}
	m, err := s.tr.Map(grant.Request{Grants: gs, Writable: toGuest, Holder: "blkback " + blkif.OpName(r.Operation)})
	if err != nil {
		return 0, fmt.Errorf("blkback: mapping %d data grants: %w", n, err)
	}
	defer s.tr.Unmap(m)
	pos := int64(r.Sector) * blkif.SectorSize
	total := 0
	for i := 0; i < n; i++ {
		sg := r.Seg[i]
		page := m.Mapping.Mem[i*blkif.PageSize : (i+1)*blkif.PageSize]
		data := page[int(sg.FirstSect)*blkif.SectorSize : (int(sg.LastSect)+1)*blkif.SectorSize]
		if toGuest {
			if err := s.readAt(data, pos); err != nil {
				return 0, err
			}
		} else if _, err := s.disk.WriteAt(data, pos); err != nil {
			return 0, fmt.Errorf("blkback: write at %d: %w", pos, err)
		}
		pos += int64(len(data))
		total += len(data)
	}
	return total, nil
}

// readAt reads the disk, zeros past the end of a short file.
func (s *Server) readAt(data []byte, pos int64) error {
	k, err := s.disk.ReadAt(data, pos)
	if err != nil && err != io.EOF {
		return fmt.Errorf("blkback: read at %d: %w", pos, err)
	}
	clear(data[k:])
	return nil
}

// A Copier runs grant copies (grant.Device has this method): Xen copies
// between local memory and the guest's granted pages, with no mapping to
// hold or tear down, and marks the guest pages it writes dirty itself.
type Copier interface {
	Copy(segs []grant.CopySegment) error
}

// copied moves a checked request's data by grant copy through a local
// buffer, as a Tracker operation (Quiesce waits for it).
func (s *Server) copied(r *blkif.Request, toGuest bool) (int, error) {
	n := int(r.NrSegments)
	segs := s.segs[:0]
	total := 0
	for i := 0; i < n; i++ {
		sg := r.Seg[i]
		l := (int(sg.LastSect) - int(sg.FirstSect) + 1) * blkif.SectorSize
		local := s.buf[total : total+l]
		g := grant.Grant{Domid: s.dom, Ref: sg.Gref}
		off := uint16(sg.FirstSect) * blkif.SectorSize
		if toGuest {
			segs = append(segs, grant.CopySegment{SrcLocal: local, DstGrant: g, DstOffset: off, Len: uint16(l)})
		} else {
			segs = append(segs, grant.CopySegment{SrcGrant: g, SrcOffset: off, DstLocal: local, Len: uint16(l)})
		}
		total += l
	}
	s.segs = segs
	pos := int64(r.Sector) * blkif.SectorSize
	if toGuest {
		if err := s.readAt(s.buf[:total], pos); err != nil {
			return 0, err
		}
	}
	if err := s.tr.Do(func() error { return s.copier.Copy(segs) }); err != nil {
		return 0, fmt.Errorf("blkback: grant copy of %d segments: %w", n, err)
	}
	for i, sg := range segs {
		if sg.Status != 0 {
			return 0, fmt.Errorf("blkback: grant copy of segment %d (ref %d): status %d", i, r.Seg[i].Gref, sg.Status)
		}
	}
	if !toGuest {
		if _, err := s.disk.WriteAt(s.buf[:total], pos); err != nil {
			return 0, fmt.Errorf("blkback: write at %d: %w", pos, err)
		}
	}
	return total, nil
}
