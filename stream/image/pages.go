package image

import (
	"bytes"
	"encoding/json"

	"github.com/xensr/xensr/stream/libxc"
)

// PageStats summarises PAGE_DATA records.
type PageStats struct {
	Records   int   `json:"records"`    // PAGE_DATA records
	Pages     int64 `json:"pages"`      // PFN entries
	DataPages int64 `json:"data_pages"` // entries carrying a page of data
	ZeroPages int64 `json:"zero_pages"` // data pages whose bytes are all zero (of those read)
	// Unread counts data pages whose bytes were not read (Options.SkipPages):
	// they are in DataPages, and ZeroPages cannot say whether they are zero.
	Unread int64     `json:"unread_pages,omitempty"`
	MinPFN uint64    `json:"min_pfn"`
	MaxPFN uint64    `json:"max_pfn"`
	ByType [16]int64 `json:"-"` // entries per libxc.PageType
}

// Types returns the non-zero per-type counts keyed by the page type's name.
func (s *PageStats) Types() map[string]int64 {
	m := map[string]int64{}
	for t, n := range s.ByType {
		if n > 0 {
			m[libxc.PageType(t).String()] = n
		}
	}
	return m
}

// MarshalJSON encodes the statistics with the per-type counts by name.
func (s PageStats) MarshalJSON() ([]byte, error) {
	type plain PageStats
	return json.Marshal(struct {
		plain
		Types map[string]int64 `json:"types"`
	}{plain(s), s.Types()})
}

func (s *PageStats) add(o *PageStats) {
	if o.Pages > 0 {
		if s.Pages == 0 || o.MinPFN < s.MinPFN {
			s.MinPFN = o.MinPFN
		}
		if o.MaxPFN > s.MaxPFN {
			s.MaxPFN = o.MaxPFN
		}
	}
	s.Records += o.Records
	s.Pages += o.Pages
	s.DataPages += o.DataPages
	s.ZeroPages += o.ZeroPages
	s.Unread += o.Unread
	for t, n := range o.ByType {
		s.ByType[t] += n
	}
}

// pageStats computes the statistics of one decoded PAGE_DATA record; unread
// says its page contents were not read (they are zeros in p.Data).
func pageStats(p *libxc.PageData, unread bool) PageStats {
	st := PageStats{Records: 1}
	for i := range p.Entries {
		pfn, t := p.PFN(i), p.PageType(i)
		if st.Pages == 0 || pfn < st.MinPFN {
			st.MinPFN = pfn
		}
		if pfn > st.MaxPFN {
			st.MaxPFN = pfn
		}
		st.Pages++
		st.ByType[t&0xf]++
	}
	data := p.Data
	if unread {
		st.DataPages = int64(len(data) / libxc.PageSize)
		st.Unread = st.DataPages
		return st
	}
	for len(data) >= libxc.PageSize {
		st.DataPages++
		if allZero(data[:libxc.PageSize]) {
			st.ZeroPages++
		}
		data = data[libxc.PageSize:]
	}
	return st
}

var zeroPage [libxc.PageSize]byte

// allZero reports whether a page holds only zero bytes (bytes.Equal
// compares with vector instructions).
func allZero(b []byte) bool {
	for len(b) > len(zeroPage) {
		if !bytes.Equal(b[:len(zeroPage)], zeroPage[:]) {
			return false
		}
		b = b[len(zeroPage):]
	}
	return bytes.Equal(b, zeroPage[:len(b)])
}
