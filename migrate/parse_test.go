package migrate

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/xensr/xensr/stream/xl"
)

// parsedImage is what the tests read back from a save image: an independent
// decoder written from the specifications, strict about framing.
type parsedImage struct {
	config     []byte
	libxcTypes []uint32 // record types in order, PAGE_DATA collapsed to one entry per run
	pages      map[uint64][]byte
	pageRecs   int
	dupPages   int // frames sent more than once (live rounds)
	xalloc     int // XALLOC entries
	tsc        []byte
	hvmCtx     []byte
	params     map[uint64]uint64
	paramOrder []uint64
	cpuid, msr []byte
	libxlTypes []uint32
}

func parseImage(b []byte) (*parsedImage, error) {
	le, be := binary.LittleEndian, binary.BigEndian
	im := &parsedImage{pages: map[uint64][]byte{}, params: map[uint64]uint64{}}
	off := 0
	need := func(n int, what string) error {
		if len(b)-off < n {
			return fmt.Errorf("offset %d: truncated %s", off, what)
		}
		return nil
	}
	if err := need(48, "xl header"); err != nil {
		return nil, err
	}
	if string(b[:32]) != "Xen saved domain, xl format\n \x00 \r" {
		return nil, fmt.Errorf("bad xl magic %q", b[:32])
	}
	if le.Uint32(b[32:]) != 0x01020304 || le.Uint32(b[36:]) != 3 || le.Uint32(b[40:]) != 0 {
		return nil, fmt.Errorf("bad xl header fields % x", b[32:48])
	}
	optLen := int(le.Uint32(b[44:]))
	off = 48
	if err := need(optLen, "xl optional data"); err != nil {
		return nil, err
	}
	if optLen < 4 || int(le.Uint32(b[off:]))+4 != optLen {
		return nil, fmt.Errorf("xl optional data: chunk length mismatch")
	}
	cfg := b[off+4 : off+optLen]
	if len(cfg) == 0 || cfg[len(cfg)-1] != 0 {
		return nil, fmt.Errorf("xl config not NUL-terminated")
	}
	im.config = cfg[:len(cfg)-1]
	off += optLen
	// Cross-check with package stream/xl's reader.
	xh, err := xl.ReadHeader(bytes.NewReader(b), xl.Options{})
	if err != nil {
		return nil, fmt.Errorf("stream/xl: %w", err)
	}
	if !bytes.Equal(xh.ConfigText(), im.config) || xh.Size() != off {
		return nil, fmt.Errorf("stream/xl reads the header differently: %d bytes", xh.Size())
	}
	if err := need(16, "libxl header"); err != nil {
		return nil, err
	}
	if string(b[off:off+8]) != "LibxlFmt" || be.Uint32(b[off+8:]) != 2 || be.Uint32(b[off+12:]) != 0 {
		return nil, fmt.Errorf("bad libxl header % x", b[off:off+16])
	}
	off += 16
	rec := func() (uint32, []byte, error) {
		if err := need(8, "record header"); err != nil {
			return 0, nil, err
		}
		t, n := le.Uint32(b[off:]), int(le.Uint32(b[off+4:]))
		padded := (n + 7) &^ 7
		if err := need(8+padded, fmt.Sprintf("record type %d", t)); err != nil {
			return 0, nil, err
		}
		body := b[off+8 : off+8+n]
		for _, c := range b[off+8+n : off+8+padded] {
			if c != 0 {
				return 0, nil, fmt.Errorf("offset %d: non-zero padding", off)
			}
		}
		off += 8 + padded
		return t, body, nil
	}
	t, body, err := rec()
	if err != nil {
		return nil, err
	}
	if t != 1 || len(body) != 0 {
		return nil, fmt.Errorf("first libxl record: type %d len %d, want LIBXC_CONTEXT", t, len(body))
	}
	im.libxlTypes = append(im.libxlTypes, t)
	if err := need(40, "libxc headers"); err != nil {
		return nil, err
	}
	h := b[off : off+40]
	if be.Uint64(h) != ^uint64(0) || be.Uint32(h[8:]) != 0x58454e46 || be.Uint32(h[12:]) != 3 || !bytes.Equal(h[16:24], make([]byte, 8)) {
		return nil, fmt.Errorf("bad libxc image header % x", h[:24])
	}
	if le.Uint32(h[24:]) != 2 || le.Uint16(h[28:]) != 12 || le.Uint16(h[30:]) != 0 {
		return nil, fmt.Errorf("bad libxc domain header % x", h[24:40])
	}
	off += 40
	for {
		t, body, err := rec()
		if err != nil {
			return nil, err
		}
		if t != 1 || len(im.libxcTypes) == 0 || im.libxcTypes[len(im.libxcTypes)-1] != 1 {
			im.libxcTypes = append(im.libxcTypes, t)
		}
		switch t {
		case 0:
			if len(body) != 0 {
				return nil, fmt.Errorf("END with body")
			}
		case 1:
			if len(body) < 8 {
				return nil, fmt.Errorf("short PAGE_DATA")
			}
			n := int(le.Uint32(body))
			if n == 0 || n > 1024 || le.Uint32(body[4:]) != 0 || len(body) < 8+8*n {
				return nil, fmt.Errorf("PAGE_DATA count %d len %d", n, len(body))
			}
			data := body[8+8*n:]
			for i := 0; i < n; i++ {
				e := le.Uint64(body[8+8*i:])
				pfn, typ := e&(1<<52-1), e>>60
				if e>>52&0xff != 0 {
					return nil, fmt.Errorf("PAGE_DATA pfn %#x: bits 52-59 set", e)
				}
				if typ == 0xe { // XALLOC: populated, no data
					im.xalloc++
					if _, ok := im.pages[pfn]; !ok {
						im.pages[pfn] = make([]byte, PageSize) // a scrubbed page
					} // else: the restore leaves a populated frame as it is
					continue
				}
				if typ >= 0xd {
					continue
				}
				if len(data) < PageSize {
					return nil, fmt.Errorf("PAGE_DATA: data short")
				}
				if _, ok := im.pages[pfn]; ok {
					im.dupPages++
				}
				im.pages[pfn] = data[:PageSize]
				data = data[PageSize:]
			}
			if len(data) != 0 {
				return nil, fmt.Errorf("PAGE_DATA: %d trailing bytes", len(data))
			}
			im.pageRecs++
		case 8:
			im.tsc = body
		case 9:
			im.hvmCtx = body
		case 10:
			n := int(le.Uint32(body))
			if len(body) != 8+16*n {
				return nil, fmt.Errorf("HVM_PARAMS length %d for %d", len(body), n)
			}
			for i := 0; i < n; i++ {
				k, v := le.Uint64(body[8+16*i:]), le.Uint64(body[16+16*i:])
				im.params[k] = v
				im.paramOrder = append(im.paramOrder, k)
			}
		case 16:
		case 17:
			im.cpuid = body
		case 18:
			im.msr = body
		default:
			return nil, fmt.Errorf("unexpected libxc record %d", t)
		}
		if t == 0 {
			break
		}
	}
	t, body, err = rec()
	if err != nil {
		return nil, err
	}
	if t != 0 || len(body) != 0 {
		return nil, fmt.Errorf("libxl record after libxc END: %d", t)
	}
	im.libxlTypes = append(im.libxlTypes, t)
	if off != len(b) {
		return nil, fmt.Errorf("%d trailing bytes after libxl END", len(b)-off)
	}
	return im, nil
}
