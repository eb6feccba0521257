package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/xensr/xensr/stream"
)

func FuzzDecodeHello(f *testing.F) {
	for _, h := range []Hello{
		{Version: 1, Encodings: []string{"zstd", "pack", "raw"}, Name: "guest3"},
		{Version: 1, Flags: FlagLive, Encodings: []string{"raw"}, Name: "a"},
	} {
		b, _ := h.AppendBinary(nil)
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := DecodeHello(p)
		if err != nil {
			var fe *stream.FormatError
			if !errors.As(err, &fe) || fe.Layer != Layer || fe.TypeName != "HELLO" {
				t.Fatalf("error %v is not a HELLO FormatError", err)
			}
			return
		}
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded hello %+v does not encode: %v", h, err)
		}
		if !bytes.Equal(b, p) {
			t.Fatalf("round trip: %x -> %+v -> %x", p, h, b)
		}
	})
}

// FuzzFrames reads arbitrary bytes as frames: every frame is within its
// kind's limit, and the reading ends in io.EOF or a FormatError.
func FuzzFrames(f *testing.F) {
	hello, _ := Hello{Version: 1, Encodings: []string{"raw"}, Name: "g"}.AppendBinary(nil)
	f.Add(appendFrame(appendFrame(nil, KindHello, hello), KindData, []byte("abc")))
	f.Add(appendFrame(appendFrame(nil, KindStop, nil), KindEnd, nil))
	f.Add([]byte{'D', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		fr := &frameReader{r: bufio.NewReader(bytes.NewReader(p))}
		for {
			fm, err := fr.next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var fe *stream.FormatError
				if !errors.As(err, &fe) || fe.Layer != Layer {
					t.Fatalf("error %v is not a FormatError", err)
				}
				return
			}
			if len(fm.payload) > fm.kind.maxPayload() {
				t.Fatalf("%v frame of %d bytes", fm.kind, len(fm.payload))
			}
			switch fm.kind {
			case KindHello:
				DecodeHello(fm.payload)
			case KindWelcome:
				decodeWelcome(fm.payload, fm.off, fm.index)
			case KindRefuse, KindAbort, KindFailed:
				decodeReason(fm.payload, fm.off, fm.index, fm.kind)
			}
		}
	})
}
