package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/libxl"
	"github.com/xensr/xensr/stream/xl"
)

// resentImage builds a checkpointed xl image whose rounds re-send pages:
// PFN 5 in every round (its first byte the round number), PFN 9 only in
// round 0, PFN 6 as XTAB (no data) in every round, PFN 7 only in the last.
func resentImage(t *testing.T, rounds int) []byte {
	le := binary.LittleEndian
	pageData := func(round int, pfns ...uint64) []byte {
		b := le.AppendUint32(nil, uint32(len(pfns)))
		b = le.AppendUint32(b, 0)
		var data []byte
		for _, pfn := range pfns {
			if pfn == 6 {
				b = le.AppendUint64(b, uint64(libxc.PageXTab)<<60|pfn)
				continue
			}
			b = le.AppendUint64(b, pfn)
			page := make([]byte, libxc.PageSize)
			page[0], page[1], page[4095] = byte(round), byte(pfn), 0xee
			data = append(data, page...)
		}
		return append(b, data...)
	}
	items := []Item{
		{XL: &xl.Header{Mandatory: xl.FlagJSON | xl.FlagStreamV2, Config: []byte("{}\x00")}},
		{Libxl: &libxl.Header{Version: 2}},
		{Layer: "libxl", Kind: KindRecord, Type: uint32(libxl.TypeLibxcContext)},
		{LibxcImage: ptr(libxc.NewImageHeader(3))},
		{LibxcDomain: &libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: 12, XenMajor: 4, XenMinor: 17}},
		{Layer: "libxc", Kind: KindRecord, Type: uint32(libxc.TypeStaticDataEnd)},
	}
	for r := 0; r < rounds; r++ {
		pfns := []uint64{5, 6}
		if r == 0 {
			pfns = append(pfns, 9)
		}
		items = append(items, Item{Layer: "libxc", Kind: KindRecord, Type: uint32(libxc.TypePageData), Body: pageData(r, pfns...)})
		if r == rounds-1 {
			items = append(items,
				Item{Layer: "libxc", Kind: KindRecord, Type: uint32(libxc.TypePageData), Body: pageData(r, 7)},
				// Xen's restore needs the HVM context by END.
				Item{Layer: "libxc", Kind: KindRecord, Type: uint32(libxc.TypeHVMContext), Body: []byte("ctx")},
				Item{Layer: "libxc", Kind: KindRecord, Type: uint32(libxc.TypeEnd)},
				Item{Layer: "libxl", Kind: KindRecord, Type: uint32(libxl.TypeEnd)})
			break
		}
		items = append(items,
			Item{Layer: "libxc", Kind: KindRecord, Type: uint32(libxc.TypeCheckpoint)},
			Item{Layer: "libxl", Kind: KindRecord, Type: uint32(libxl.TypeCheckpointEnd)})
	}
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for i := range items {
		if err := enc.Encode(&items[i]); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestPageIndexResent checks the final copy of pages re-sent across
// checkpoint rounds.
func TestPageIndexResent(t *testing.T) {
	const rounds = 4
	in := resentImage(t, rounds)
	x, err := IndexPages(bytes.NewReader(in), int64(len(in)), Options{Checkpointed: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]struct{ round, copies, first int }{5: {3, 4, 3}, 6: {3, 4, -1}, 7: {3, 1, 3}, 9: {0, 1, 0}}
	got := 0
	for pg, err := range x.FinalPages() {
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[pg.PFN]
		got++
		if !ok || pg.Round != w.round || pg.Copies != w.copies || (w.first < 0) != (pg.Data == nil) ||
			(pg.Data != nil && (int(pg.Data[0]) != w.first || pg.Data[1] != byte(pg.PFN) || pg.Data[4095] != 0xee)) {
			t.Errorf("PFN %d: %+v data %v, want %+v", pg.PFN, pg.PageRef, pg.Data != nil, w)
		}
	}
	if got != len(want) || x.Summary().Checkpoints != rounds-1 {
		t.Errorf("%d pages, %d checkpoints", got, x.Summary().Checkpoints)
	}
	// The model agrees too.
	for pfn, m := range modelFinal(t, in, Options{Checkpointed: true}) {
		if ref, _ := x.Lookup(pfn); ref.Round != m.Round || ref.Copies != m.Copies {
			t.Errorf("PFN %d: index %+v, model %+v", pfn, ref, m.PageRef)
		}
	}
}

// modelFinal walks an image and keeps, per PFN, a copy of the last page
// sent, its type and round, and how often it was sent: the plain model the
// index must agree with.
func modelFinal(t *testing.T, in []byte, opt Options) map[uint64]*Page {
	t.Helper()
	m := map[uint64]*Page{}
	_, err := Walk(bytes.NewReader(in), opt, func(it *Item) error {
		if p, ok := it.Libxc.(*libxc.PageData); ok {
			p.Pages(func(_ int, pfn uint64, pt libxc.PageType, data []byte) bool {
				pg := m[pfn]
				if pg == nil {
					pg = &Page{}
					m[pfn] = pg
				}
				pg.PFN, pg.Type, pg.Round = pfn, pt, it.Round
				pg.Copies++
				pg.Data = nil
				if data != nil {
					pg.Data = append([]byte(nil), data...)
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPageIndex(t *testing.T) {
	for _, tc := range []struct {
		name         string
		checkpointed bool
		rounds       int
	}{
		{"synthetic-pvh-checkpointed.libxl", true, 3},
		{"guest3-pvh.xl", false, 1},
		{"guest1-pv.xl", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fixture(t, tc.name)
			opt := Options{Checkpointed: tc.checkpointed}
			model := modelFinal(t, in, opt)
			x, err := IndexPages(bytes.NewReader(in), int64(len(in)), opt)
			if err != nil {
				t.Fatal(err)
			}
			if x.Len() != len(model) || x.Summary().Pages.Pages == 0 {
				t.Fatalf("%d PFNs indexed, model has %d", x.Len(), len(model))
			}
			var prev uint64
			n, resent, lastRound, withData := 0, 0, 0, 0
			for pg, err := range x.FinalPages() {
				if err != nil {
					t.Fatal(err)
				}
				want := model[pg.PFN]
				if n > 0 && pg.PFN <= prev {
					t.Fatalf("PFN %#x after %#x: not increasing", pg.PFN, prev)
				}
				prev = pg.PFN
				n++
				if want == nil || pg.Type != want.Type || pg.Round != want.Round || pg.Copies != want.Copies || !bytes.Equal(pg.Data, want.Data) || (pg.Data == nil) != (pg.Offset < 0) {
					t.Fatalf("PFN %#x: index %+v (data %v), model %+v", pg.PFN, pg.PageRef, pg.Data != nil, want)
				}
				if pg.Copies > 1 {
					resent++
				}
				if pg.Round == tc.rounds-1 && tc.rounds > 1 {
					lastRound++
				}
				if pg.Data != nil {
					withData++
				}
			}
			if n != len(model) {
				t.Errorf("FinalPages yielded %d pages of %d", n, len(model))
			}
			if tc.rounds > 1 && lastRound == 0 {
				t.Errorf("checkpointed stream: no page final in the last round")
			}
			t.Logf("%d PFNs, %d with data, %d sent more than once, %d final in round %d", n, withData, resent, lastRound, tc.rounds-1)
		})
	}
}

func TestPageIndexErrors(t *testing.T) {
	in := fixture(t, "guest3-pvh.xl")
	x, err := IndexPages(bytes.NewReader(in), int64(len(in)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, libxc.PageSize)
	if _, err := x.ReadPage(1<<40, buf); !errors.Is(err, ErrNoPage) {
		t.Errorf("absent PFN: %v", err)
	}
	var first PageRef
	for ref := range x.Refs() {
		if ref.Offset >= 0 {
			first = ref
			break
		}
	}
	if _, err := x.ReadPage(first.PFN, buf[:100]); err == nil {
		t.Errorf("short buffer accepted")
	}
	// An image cut short: the index reads through ReaderAt and reports it.
	cut, err := IndexPages(bytes.NewReader(in), int64(len(in)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cut.r = bytes.NewReader(in[:first.Offset+10])
	if _, err := cut.ReadPage(first.PFN, buf); err == nil {
		t.Errorf("read past the end of the data succeeded")
	}
	// A walk error (a checkpointed stream not declared so) fails IndexPages.
	ck := fixture(t, "synthetic-pvh-checkpointed.libxl")
	if _, err := IndexPages(bytes.NewReader(ck), int64(len(ck)), Options{}); err == nil {
		t.Errorf("undeclared checkpointed stream indexed")
	}
}
