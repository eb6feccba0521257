package pack

import "encoding/binary"

// pageBlocks holds page blocks (raw layout, see format.go: first id u32,
// count u32, the pages, their transform codes), oldest first: the pages a
// reference may still name. Pack compares new pages with them; Unpack
// copies pages out of them.
type pageBlocks struct{ raw [][]byte }

// blockIDs returns the first id and the page count of a page block.
func blockIDs(raw []byte) (first, count uint32) {
	return binary.LittleEndian.Uint32(raw), binary.LittleEndian.Uint32(raw[4:])
}

func (s *pageBlocks) push(raw []byte) { s.raw = append(s.raw, raw) }

// run returns pages id, id+1, ... (at most n of them) that lie one after
// another in one block, or nil if page id is not held.
func (s *pageBlocks) run(id, n uint32) []byte {
	for i := len(s.raw) - 1; i >= 0; i-- {
		first, count := blockIDs(s.raw[i])
		if id < first {
			continue
		}
		if k := id - first; k < count {
			n = min(n, count-k)
			return s.raw[i][8+int(k)*pageSize : 8+int(k+n)*pageSize]
		}
		return nil
	}
	return nil
}

// dropBelow lets go of the oldest blocks whose pages all have ids below id,
// handing each to free (when not nil).
func (s *pageBlocks) dropBelow(id uint32, free func(raw []byte)) {
	for len(s.raw) > 0 {
		if first, count := blockIDs(s.raw[0]); uint64(first)+uint64(count) > uint64(id) {
			return
		}
		if free != nil {
			free(s.raw[0])
		}
		s.raw[0] = nil
		s.raw = s.raw[1:]
	}
}
