package image

import (
	"encoding/binary"
	"io"
	"os"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// A skipReader serves a random-access input to the layers' readers as a
// plain io.Reader, and passes over the page contents of PAGE_DATA records
// without reading them: the Walker arms it at the start of each libxc
// record (arm), and when that record is a PAGE_DATA record whose page data
// lies wholly inside the input, the bytes from the end of its PFN array to
// the end of its body are not read. Every other byte (record headers, the
// count, reserved field and PFN entries, padding, every other record) is
// read from the input, so the layers check exactly what they check on a
// stream; only the page contents, which no check looks at, are not read.
//
// It reads with ReadAt at its own position and keeps no buffer beyond the
// record head it peeked at; the input's own offset is not used.
type skipReader struct {
	ra   io.ReaderAt
	base int64 // the input's offset at NewWalker: the Walker's offset 0
	pos  int64 // offset in the input of the next byte handed out
	size int64 // the input's size: a window must end within it

	// The armed window [from, to): served as zeros.
	from, to int64
	// skipped counts the bytes served without reading.
	skipped int64

	// head holds the bytes at [headOff, headOff+len(head)) peeked by arm.
	head    []byte
	headOff int64
	hbuf    [4096]byte
}

// RandomAccess returns r as an io.ReaderAt, with r's current offset (base)
// and its size, when r can be read at any offset and has a size: an
// *os.File of a regular file (not a pipe, terminal or device, which have no
// size to bound reads by and may not answer pread), or anything else that
// is an io.ReaderAt and an io.Seeker (*bytes.Reader, *io.SectionReader). A
// value that has a Stat method, as *os.File and types embedding it do, must
// be a regular file. It leaves r's offset where it was.
func RandomAccess(r io.Reader) (ra io.ReaderAt, base, size int64, ok bool) {
	ra, ok = r.(io.ReaderAt)
	if !ok {
		return nil, 0, 0, false
	}
	sk, ok := r.(io.Seeker)
	if !ok {
		return nil, 0, 0, false
	}
	if f, ok := r.(interface{ Stat() (os.FileInfo, error) }); ok {
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
			return nil, 0, 0, false
		}
	}
	base, err := sk.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, 0, 0, false
	}
	size, err = sk.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, 0, false
	}
	if _, err := sk.Seek(base, io.SeekStart); err != nil {
		return nil, 0, 0, false
	}
	return ra, base, size, true
}

// newSkipReader returns a skipReader for r when RandomAccess accepts it, or
// nil. Its base is r's current offset: the Walker's offsets count from it.
func newSkipReader(r io.Reader) *skipReader {
	ra, base, size, ok := RandomAccess(r)
	if !ok {
		return nil
	}
	return &skipReader{ra: ra, base: base, pos: base, size: size, from: -1, to: -1}
}

// arm is called with the offset in the input at which
// the next libxc record starts, before the libxc reader reads it. It reports
// whether the record's page contents will be served without reading. A
// record whose head cannot be read, or whose lengths do not describe page
// data inside the input, is read in full, so the libxc reader reports its
// faults exactly as on a stream.
func (s *skipReader) arm(off int64) bool {
	s.from, s.to = -1, -1
	if off != s.pos {
		return false
	}
	s.peek()
	if len(s.head) < stream.HeaderSize+8 {
		return false
	}
	le := binary.LittleEndian
	if le.Uint32(s.head[0:]) != uint32(libxc.TypePageData) {
		return false
	}
	length := int64(le.Uint32(s.head[4:]))
	count := int64(le.Uint32(s.head[stream.HeaderSize:]))
	from := off + stream.HeaderSize + 8 + 8*count // after the PFN array
	to := off + stream.HeaderSize + length        // the end of the body
	if from >= to || to > s.size {
		return false
	}
	s.from, s.to = from, to
	return true
}

// peek reads the head of what follows s.pos into s.head.
func (s *skipReader) peek() {
	n, _ := s.ra.ReadAt(s.hbuf[:], s.pos)
	s.head, s.headOff = s.hbuf[:n], s.pos
}

// Read hands out the next bytes: the input's bytes, except inside the armed
// window, where it counts the bytes as read but leaves p as it was (not
// even clearing it: on this machine's kind, touching the pages of a record
// buffer costs more than the rest of a verify). The libxc reader keeps them
// as the record's page data, which Options.SkipPages documents as not the
// guest's.
func (s *skipReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.pos >= s.from && s.pos < s.to {
		n := int(min(int64(len(p)), s.to-s.pos))
		s.pos += int64(n)
		s.skipped += int64(n)
		return n, nil
	}
	if s.pos < s.from {
		p = p[:min(int64(len(p)), s.from-s.pos)]
	}
	if i := s.pos - s.headOff; i >= 0 && i < int64(len(s.head)) {
		n := copy(p, s.head[i:])
		s.pos += int64(n)
		return n, nil
	}
	n, err := s.ra.ReadAt(p, s.pos)
	s.pos += int64(n)
	if n > 0 && err == io.EOF {
		err = nil // the next Read reports it
	}
	return n, err
}
