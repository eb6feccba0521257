package image

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"testing"

	"github.com/xensr/xensr/stream/libxc"
)

// svgCounts parses an SVG and counts the squares per class (a <rect>
// stands for data-n squares; legend rects count one each).
func svgCounts(t *testing.T, b []byte) map[string]int {
	t.Helper()
	counts := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return counts
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			class, n := "", 1
			for _, a := range se.Attr {
				switch a.Name.Local {
				case "class":
					class = a.Value
				case "data-n":
					n, _ = strconv.Atoi(a.Value)
				}
			}
			counts[class] += n
		}
	}
}

// TestMemoryMapSVG draws a stream whose pages are known: PFNs 0-9 data
// (5 sent again in a second batch), 10-19 zero, 20 a page table, 21 XTAB.
func TestMemoryMapSVG(t *testing.T) {
	var b bytes.Buffer
	w := libxc.NewWriter(&b)
	w.WriteHeader(libxc.ImageHeader{Marker: ^uint64(0), ID: 0x58454E46, Version: 3},
		libxc.DomainHeader{Type: libxc.DomainX86HVM, PageShift: 12, XenMajor: 4, XenMinor: 17})
	page := func(v byte) []byte { p := make([]byte, libxc.PageSize); p[7] = v; return p }
	first := &libxc.PageData{}
	for pfn := uint64(0); pfn < 20; pfn++ {
		first.Entries = append(first.Entries, pfn)
		if pfn < 10 {
			first.Data = append(first.Data, page(1)...)
		} else {
			first.Data = append(first.Data, make([]byte, libxc.PageSize)...)
		}
	}
	first.Entries = append(first.Entries, 20|uint64(libxc.PageL1)<<60, 21|uint64(libxc.PageXTab)<<60)
	first.Data = append(first.Data, page(2)...)
	w.WriteRecord(first)
	w.WriteRecord(&libxc.PageData{Entries: []uint64{5}, Data: page(3)})
	w.Close()

	var m MemoryMap
	if _, err := Walk(bytes.NewReader(b.Bytes()), Options{Format: FormatLibxc, Relaxed: true}, func(it *Item) error {
		m.Add(it)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var svg bytes.Buffer
	if err := m.WriteSVG(&svg, "test <image>"); err != nil {
		t.Fatal(err)
	}
	got := svgCounts(t, svg.Bytes())
	want := map[string]int{"data": 9, "resent": 1, "zero": 10, "table": 1, "nodata": 1, "legend": len(mapLegend)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s squares: %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if !bytes.Contains(svg.Bytes(), []byte("test &lt;image&gt;")) {
		t.Error("title not escaped")
	}
}

// TestMemoryMapBounded: a PFN far beyond the cell limit coarsens the map
// instead of growing it.
func TestMemoryMapBounded(t *testing.T) {
	var m MemoryMap
	m.set(0, mapData)
	m.set(1<<36, mapZero) // 256 TiB of guest
	if len(m.cells) > maxMapCells {
		t.Fatalf("%d cells, limit %d", len(m.cells), maxMapCells)
	}
	if m.cells[0]&mapData == 0 || m.cells[len(m.cells)-1]&mapZero == 0 {
		t.Fatalf("states lost in coarsening: first %#x last %#x", m.cells[0], m.cells[len(m.cells)-1])
	}
	var svg bytes.Buffer
	if err := m.WriteSVG(&svg, "big"); err != nil {
		t.Fatal(err)
	}
	if n := svgCounts(t, svg.Bytes()); n["data"]+n["zero"] != 2 {
		t.Fatalf("squares %v", n)
	}
}

// TestMemoryMapFoldsHoles: whole rows of no-data pages (a PVH guest's
// hole) fold into one labelled band that still counts its squares; rows
// with a page of data in them are drawn square by square.
func TestMemoryMapFoldsHoles(t *testing.T) {
	var m MemoryMap
	const cols = 256
	for pfn := uint64(0); pfn < 10*cols; pfn++ {
		switch {
		case pfn < 300:
			m.set(pfn, mapData)
		case pfn == 7*cols+5: // a page inside the hole keeps its row drawn
			m.set(pfn, mapZero)
		default:
			m.set(pfn, mapNoData)
		}
	}
	var svg bytes.Buffer
	if err := m.WriteSVG(&svg, "hole"); err != nil {
		t.Fatal(err)
	}
	got := svgCounts(t, svg.Bytes())
	// Rows 0-1 hold data (300 PFNs), rows 2-6 are a hole (folded: 5
	// rows), row 7 has the zero page, rows 8-9 are two empty rows (too
	// few to fold).
	want := map[string]int{"data": 300, "zero": 1, "gap": 5 * cols, "nodata": (2*cols - 300) + (cols - 1) + 2*cols}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s squares: %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if !bytes.Contains(svg.Bytes(), []byte("PFN 0x200-0x6ff: no data (XTAB, XALLOC, BROKEN), 5 rows folded")) {
		t.Errorf("no band label for the hole:\n%s", svg.Bytes())
	}
}
