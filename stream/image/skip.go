package image

import (
	"bufio"
	"encoding/binary"
	"io"
	"os"

	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/libxc"
)

// A skipReader serves the input to the layers' readers as a plain
// io.Reader, and keeps the page contents of PAGE_DATA records out of their
// record buffers: the Walker arms it at the start of each libxc record
// (arm), and when that record is a PAGE_DATA record, the bytes from the end
// of its PFN array to the end of its body (the window) are counted as read
// but not written into the caller's buffer. Every other byte (record
// headers, the count, reserved field and PFN entries, padding, every other
// record) is handed out, so the layers check exactly what they check
// without it; only the page contents, which no check looks at, are kept
// out.
//
// A random-access input (RandomAccess) is read with ReadAt at the reader's
// own position, and a window that ends inside the input is not read at all
// (one that runs past its end is read, so truncation is reported as
// without it). A stream is read through a 64 KiB buffer and every byte of
// a window is read from it into a small scratch buffer, where whole zero
// pages are counted: the record buffer's pages are never written. On
// Linux, a pipe's window bytes are spliced to /dev/null instead (the bytes
// the buffer already holds are passed over first): they are never copied
// into the process, and its zero pages are not counted.
//
// Leaving the caller's buffer unwritten matters: on some virtual machines
// the first touch of a page of fresh memory costs more than the rest of a
// verify.
type skipReader struct {
	ra   io.ReaderAt   // a random-access input, or nil
	br   *bufio.Reader // a stream
	base int64         // the input's offset at NewWalker: the Walker's offset 0
	pos  int64         // offset in the input of the next byte handed out
	size int64         // a random-access input's size: a window must end within it

	// The armed window [from, to).
	from, to int64
	// skipped counts the window bytes handed out as read.
	skipped int64
	// sp passes over a pipe's window bytes in the kernel (Linux), or is
	// nil; spliced counts the bytes it passed over.
	sp      *splicer
	spliced int64

	// A stream's window is read into scratch; zero counts its whole zero
	// pages, pageZero says whether the page being read is zero so far.
	scratch  []byte
	zero     int64
	pageZero bool

	// head holds the bytes at [headOff, headOff+len(head)) peeked by arm
	// (random-access input).
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

// newSkipReader returns a skipReader for r: one that reads r at offsets
// when RandomAccess accepts it (its base is then r's current offset: the
// Walker's offsets count from it), a buffered one otherwise.
func newSkipReader(r io.Reader) *skipReader {
	s := &skipReader{from: -1, to: -1}
	if ra, base, size, ok := RandomAccess(r); ok {
		s.ra, s.base, s.pos, s.size = ra, base, base, size
	} else {
		s.br = bufio.NewReaderSize(r, 64<<10)
		if s.sp = newSplicer(r); s.sp == nil {
			// Larger than the buffer, so that bufio reads window
			// bytes straight into it rather than copying them
			// through its own.
			s.scratch = make([]byte, 256<<10)
		}
	}
	return s
}

// counted reports whether the pages of a window are read and their zero
// pages counted (a stream not spliced), rather than not read at all.
func (s *skipReader) counted() bool { return s.br != nil && s.sp == nil }

// arm is called with the offset in the input at which the next libxc
// record starts, before the libxc reader reads it. It reports whether the
// record's page contents will be kept out of the record buffer. A record
// whose head cannot be read, or whose lengths describe no page data (or,
// in a random-access input, page data past its end), is handed out whole,
// so the libxc reader reports its faults exactly as without a skipReader.
func (s *skipReader) arm(off int64) bool {
	s.from, s.to, s.zero, s.pageZero = -1, -1, 0, true
	if off != s.pos {
		return false
	}
	var head []byte
	if s.br != nil {
		// Wait only for bytes the libxc reader reads next anyway: the
		// header, and the count of a PAGE_DATA record that has one (a
		// live stream's sender may wait for an answer after a short
		// record).
		head, _ = s.br.Peek(stream.HeaderSize)
		le := binary.LittleEndian
		if len(head) == stream.HeaderSize && le.Uint32(head) == uint32(libxc.TypePageData) && le.Uint32(head[4:]) >= 8 {
			head, _ = s.br.Peek(stream.HeaderSize + 8)
		}
	} else {
		n, _ := s.ra.ReadAt(s.hbuf[:], s.pos)
		s.head, s.headOff = s.hbuf[:n], s.pos
		head = s.head
	}
	if len(head) < stream.HeaderSize+8 {
		return false
	}
	le := binary.LittleEndian
	if le.Uint32(head[0:]) != uint32(libxc.TypePageData) {
		return false
	}
	length := int64(le.Uint32(head[4:]))
	count := int64(le.Uint32(head[stream.HeaderSize:]))
	from := off + stream.HeaderSize + 8 + 8*count // after the PFN array
	to := off + stream.HeaderSize + length        // the end of the body
	if from >= to || (s.ra != nil && to > s.size) {
		return false
	}
	s.from, s.to = from, to
	return true
}

// Read hands out the next bytes of the input; inside the armed window it
// counts them as read but leaves p as it was (the libxc reader keeps them
// as the record's page data, which Options.SkipPages documents as not the
// guest's).
func (s *skipReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.pos >= s.from && s.pos < s.to {
		n := int(min(int64(len(p)), s.to-s.pos))
		if s.sp != nil {
			return s.splice(n)
		}
		if s.br != nil {
			m, err := s.br.Read(s.scratch[:min(n, len(s.scratch))])
			s.countZero(s.scratch[:m])
			s.pos += int64(m)
			s.skipped += int64(m)
			return m, err
		}
		s.pos += int64(n)
		s.skipped += int64(n)
		return n, nil
	}
	if s.pos < s.from {
		p = p[:min(int64(len(p)), s.from-s.pos)]
	}
	if s.br != nil {
		n, err := s.br.Read(p)
		s.pos += int64(n)
		return n, err
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

// countZero counts the whole zero pages among window bytes b, which follow
// the window bytes read before (s.pos is still b's first offset).
func (s *skipReader) countZero(b []byte) {
	at := (s.pos - s.from) % libxc.PageSize
	for len(b) > 0 {
		k := min(int64(len(b)), libxc.PageSize-at)
		if s.pageZero && !allZero(b[:k]) {
			s.pageZero = false
		}
		b = b[k:]
		at += k
		if at == libxc.PageSize {
			if s.pageZero {
				s.zero++
			}
			s.pageZero, at = true, 0
		}
	}
}

// splice passes over the next n window bytes of a pipe: those the buffer
// holds first, the rest spliced to /dev/null.
func (s *skipReader) splice(n int) (int, error) {
	if b := s.br.Buffered(); b > 0 {
		m, _ := s.br.Discard(min(n, b))
		s.pos += int64(m)
		s.skipped += int64(m)
		return m, nil
	}
	m, err := s.sp.discard(n)
	s.pos += int64(m)
	s.skipped += int64(m)
	s.spliced += int64(m)
	if m > 0 && err == io.EOF {
		err = nil // the next Read reports it
	}
	return m, err
}
