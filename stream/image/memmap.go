package image

import (
	"fmt"
	"html"
	"io"

	"github.com/xensr/xensr/stream/libxc"
)

// Page states a MemoryMap records per PFN (or per group of PFNs).
const (
	mapData   = 1 << iota // a page with non-zero data
	mapZero               // a page of zeros
	mapTable              // a page table (L1-L4, pinned or not)
	mapNoData             // XTAB, XALLOC or BROKEN: no data
	mapResent             // sent more than once (precopy rounds, checkpoints)
)

// maxMapCells bounds the memory a MemoryMap keeps: one byte per cell; past
// it, neighbouring PFNs share a cell (the map halves its resolution).
const maxMapCells = 1 << 24

// A MemoryMap collects, from a walk's PAGE_DATA records, what the image
// holds for each PFN: data, zero page, page table, no data, and whether the
// page was sent again in a later round. WriteSVG draws it. It keeps one
// byte per PFN up to 16 Mi PFNs (64 GiB of guest), then one per group of
// PFNs, so its memory stays under 16 MiB whatever the image.
type MemoryMap struct {
	cells []byte // state bits per cell
	shift uint   // a cell covers 1<<shift PFNs
	stats PageStats
}

// Add records an item of a walk; items other than PAGE_DATA are ignored.
func (m *MemoryMap) Add(it *Item) {
	p, ok := it.Libxc.(*libxc.PageData)
	if !ok {
		return
	}
	// A walk with Options.SkipPages did not keep the page contents: they
	// are drawn as data, not told apart from zero pages.
	unread := it.Unkept
	st := pageStats(p, unread)
	m.stats.add(&st)
	p.Pages(func(_ int, pfn uint64, t libxc.PageType, data []byte) bool {
		var s byte
		switch {
		case !t.HasData():
			s = mapNoData
		case t != libxc.PageNormal:
			s = mapTable
		case !unread && allZero(data):
			s = mapZero
		default:
			s = mapData
		}
		m.set(pfn, s)
		return true
	})
}

func (m *MemoryMap) set(pfn uint64, s byte) {
	for pfn>>m.shift >= maxMapCells {
		m.coarsen()
	}
	c := pfn >> m.shift
	if c >= uint64(len(m.cells)) {
		m.cells = append(m.cells, make([]byte, c+1-uint64(len(m.cells)))...)
	}
	if m.shift == 0 && m.cells[c]&(mapData|mapZero|mapTable|mapNoData) != 0 {
		s |= mapResent
	}
	m.cells[c] |= s
}

// coarsen halves the resolution: cell i takes cells 2i and 2i+1.
func (m *MemoryMap) coarsen() {
	n := (len(m.cells) + 1) / 2
	for i := 0; i < n; i++ {
		v := m.cells[2*i]
		if 2*i+1 < len(m.cells) {
			v |= m.cells[2*i+1]
		}
		m.cells[i] = v
	}
	m.cells = m.cells[:n]
	m.shift++
}

// The map's colours, by priority: the first state a cell has wins.
var mapLegend = []struct {
	bit         byte
	class, fill string
	name        string
}{
	{mapResent, "resent", "#d62728", "sent again in a later round"},
	{mapTable, "table", "#ff7f0e", "page table"},
	{mapData, "data", "#1f77b4", "data"},
	{mapZero, "zero", "#c7c7c7", "zero page"},
	{mapNoData, "nodata", "#7f7f7f", "no data (XTAB, XALLOC, BROKEN)"},
}

// WriteSVG draws the map: the PFN space from 0 to the highest PFN seen, in
// rows of 256 squares, each square one cell (or a group of cells so that
// at most 64 Ki squares are drawn), coloured by its state; white where the
// image holds nothing. A run of squares of one state in a row is one <rect>
// of class data, zero, table, nodata or resent whose data-n attribute counts
// its squares; the title gives the page counts. Three or more whole rows
// with no data (a PVH guest's hole below its special pages is most of its
// PFN space) fold into one labelled band, a <rect> of class gap whose data-n
// counts the squares it stands for, so the pages that are there stay
// visible.
func (m *MemoryMap) WriteSVG(w io.Writer, title string) error {
	const cols, size, maxSquares, band, minFold = 256, 4, 1 << 16, 16, 3
	per := 1 // cells per square
	for (len(m.cells)+per-1)/per > maxSquares {
		per *= 2
	}
	squares := (len(m.cells) + per - 1) / per
	rows := (squares + cols - 1) / cols
	// The class of every square: its first state in legend order, -1 for
	// none.
	cls := make([]int8, squares)
	for i := range cls {
		var v byte
		for j := i * per; j < (i+1)*per && j < len(m.cells); j++ {
			v |= m.cells[j]
		}
		cls[i] = -1
		for k, l := range mapLegend {
			if v&l.bit != 0 {
				cls[i] = int8(k)
				break
			}
		}
	}
	noData := int8(len(mapLegend) - 1)
	// empty reports whether row r is whole and holds no page with data, as
	// class k (noData or -1) throughout.
	empty := func(r int) (int8, bool) {
		if (r+1)*cols > squares {
			return 0, false
		}
		k := cls[r*cols]
		if k != noData && k != -1 {
			return 0, false
		}
		for _, c := range cls[r*cols : (r+1)*cols] {
			if c != k {
				return 0, false
			}
		}
		return k, true
	}
	// Lay the rows out: a run of minFold or more empty rows of one class
	// is one band.
	type span struct{ r, n int } // rows r..r+n-1; n > 1 is a folded band
	var spans []span
	height := 0
	for r := 0; r < rows; {
		k, ok := empty(r)
		n := 1
		for ok && r+n < rows {
			if k2, ok2 := empty(r + n); !ok2 || k2 != k {
				break
			}
			n++
		}
		if ok && n >= minFold {
			spans = append(spans, span{r, n})
			height += band
		} else {
			spans = append(spans, span{r, 1})
			height += size
			n = 1
		}
		r += n
	}
	top := 40
	legendTop := top + height + 10
	total := legendTop + 20*len(mapLegend) + 10
	bw := &errWriter{w: w}
	bw.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", cols*size+20, total)
	bw.printf("<title>%s</title>\n", html.EscapeString(title))
	s := m.stats
	bw.printf(`<text x="10" y="16">%s</text>`+"\n", html.EscapeString(title))
	bw.printf(`<text x="10" y="32">PFN 0-%#x, %d squares of %d PFNs; %d pages sent, %d with data, %d zero</text>`+"\n",
		s.MaxPFN, squares, per<<m.shift, s.Pages, s.DataPages, s.ZeroPages)
	pfns := uint64(per) << m.shift // PFNs per square
	y := top
	for _, sp := range spans {
		if sp.n > 1 {
			k := cls[sp.r*cols]
			first, last := uint64(sp.r*cols)*pfns, uint64((sp.r+sp.n)*cols)*pfns-1
			what, fill := "not in the image", "#ffffff"
			if k == noData {
				what, fill = "no data (XTAB, XALLOC, BROKEN)", mapLegend[noData].fill
			}
			bw.printf(`<rect class="gap" data-n="%d" x="10" y="%d" width="%d" height="%d" fill="%s" fill-opacity="0.35" stroke="%s"/>`+"\n",
				sp.n*cols, y+1, cols*size, band-2, fill, mapLegend[noData].fill)
			bw.printf(`<text x="14" y="%d" font-size="10">PFN %#x-%#x: %s, %d rows folded</text>`+"\n", y+band-4, first, last, what, sp.n)
			y += band
			continue
		}
		// One <rect> per run of squares of the same class within the row.
		end := min((sp.r+1)*cols, squares)
		for i := sp.r * cols; i < end; {
			k, n := cls[i], 1
			for i+n < end && cls[i+n] == k {
				n++
			}
			if k >= 0 {
				l := mapLegend[k]
				bw.printf(`<rect class="%s" data-n="%d" x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n",
					l.class, n, 10+(i%cols)*size, y, n*size, size, l.fill)
			}
			i += n
		}
		y += size
	}
	for i, l := range mapLegend {
		y := legendTop + 20*i
		bw.printf(`<rect class="legend" x="10" y="%d" width="12" height="12" fill="%s"/><text x="28" y="%d">%s</text>`+"\n", y, l.fill, y+11, l.name)
	}
	bw.printf("</svg>\n")
	return bw.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}
