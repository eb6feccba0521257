package migration

import (
	"bytes"
	"io"

	"github.com/xensr/xensr/stream"
)

// A State is a whole stream: its header and records, END last.
type State struct {
	Header  Header
	Records []Record
}

// ReadState reads a whole stream: the header, every record up to END, and
// then refuses any byte after END (stream.ErrOrder, field "after END"). It
// keeps every record, so its memory is about the size of the stream.
func ReadState(r io.Reader) (*State, error) {
	rd := NewReader(r)
	h, err := rd.Header()
	if err != nil {
		return nil, err
	}
	s := &State{Header: h}
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		s.Records = append(s.Records, rec)
	}
	var one [1]byte
	if n, _ := io.ReadFull(r, one[:]); n > 0 {
		return nil, &stream.FormatError{Layer: Layer, Offset: rd.Offset(), Index: len(s.Records), Field: "after END", Err: stream.ErrOrder}
	}
	return s, nil
}

// Write encodes the state: the header and every record, in order. A State
// read by ReadState is written back byte for byte.
func (s *State) Write(w io.Writer) error {
	wr := NewWriter(w)
	if err := wr.WriteHeader(s.Header); err != nil {
		return err
	}
	for _, rec := range s.Records {
		if err := wr.WriteRecord(rec); err != nil {
			return err
		}
	}
	return nil
}

// Bytes returns the encoding of the state.
func (s *State) Bytes() ([]byte, error) {
	var b bytes.Buffer
	err := s.Write(&b)
	return b.Bytes(), err
}

// Connections returns the CONNECTION_DATA records' bodies.
func (s *State) Connections() []*Connection { return bodies[*Connection](s) }

// Watches returns the WATCH_DATA and WATCH_DATA_EXTENDED records' bodies.
func (s *State) Watches() []*Watch { return bodies[*Watch](s) }

// Transactions returns the TRANSACTION_DATA records' bodies.
func (s *State) Transactions() []*Transaction { return bodies[*Transaction](s) }

// Nodes returns the NODE_DATA records' bodies, committed and pending.
func (s *State) Nodes() []*Node { return bodies[*Node](s) }

// Domains returns the DOMAIN_DATA records' bodies.
func (s *State) Domains() []*Domain { return bodies[*Domain](s) }

func bodies[T Body](s *State) []T {
	var out []T
	for _, r := range s.Records {
		if b, ok := r.Body.(T); ok {
			out = append(out, b)
		}
	}
	return out
}
