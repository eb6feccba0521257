package migrate

import (
	"bytes"
	"context"
	"testing"

	"pgregory.net/rapid"
)

// TestRestoreProperties: for generated guests (memory size, holes, pages
// written during live rounds, zero pages sent without data) a save
// restored into the fake hypervisor has the source's memory and state;
// and any single corrupted byte or cut of the image either restores or
// fails leaving nothing behind, never panics.
func TestRestoreProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		pages := rapid.IntRange(1, 1200).Draw(rt, "pages")
		f := newFakeDomain(pages)
		for _, p := range rapid.SliceOfN(rapid.IntRange(0, pages), 0, 40).Draw(rt, "holes") {
			delete(f.mem, uint64(p))
		}
		for _, p := range rapid.SliceOfN(rapid.IntRange(0, pages), 0, 40).Draw(rt, "zeros") {
			if f.mem[uint64(p)] != nil {
				f.zeroFrame(uint64(p))
			}
		}
		live := rapid.Bool().Draw(rt, "live")
		writes := rapid.SliceOfN(rapid.IntRange(0, pages), 0, 200).Draw(rt, "writes")
		f.onClean = func(f *fakeDomain, call int) {
			if call == 0 {
				for i, p := range writes {
					if f.mem[uint64(p)] != nil {
						f.setPage(uint64(p), byte(i), 99)
					}
				}
			}
		}
		opt := SaveOptions{Live: live, SkipZero: rapid.Bool().Draw(rt, "skipzero"), Config: []byte(restoreConfig)}
		var img bytes.Buffer
		if _, err := NewSaver(f, opt).Save(context.Background(), &img); err != nil {
			rt.Fatal(err)
		}
		b, ts := newFakeBuilder(), newFakeToolstack()
		r, err := Restore(context.Background(), b, ts, bytes.NewReader(img.Bytes()), RestoreOptions{})
		if err != nil {
			rt.Fatalf("restore: %v", err)
		}
		d := b.doms[r.Domid]
		rings := map[uint64]bool{f.params[1]: true, f.params[17]: true}
		if len(d.mem) != len(f.mem) {
			rt.Fatalf("%d frames restored, %d in the source", len(d.mem), len(f.mem))
		}
		for p, pg := range f.mem {
			want := pg
			if rings[p] {
				want = make([]byte, PageSize)
			}
			if !bytes.Equal(d.mem[p], want) {
				rt.Fatalf("pfn %#x differs", p)
			}
		}

		bad := bytes.Clone(img.Bytes())
		switch rapid.IntRange(0, 1).Draw(rt, "damage") {
		case 0:
			i := rapid.IntRange(0, len(bad)-1).Draw(rt, "at")
			bad[i] ^= byte(rapid.IntRange(1, 255).Draw(rt, "xor"))
		case 1:
			bad = bad[:rapid.IntRange(0, len(bad)-1).Draw(rt, "cut")]
		}
		b2, ts2 := newFakeBuilder(), newFakeToolstack()
		if _, err := Restore(context.Background(), b2, ts2, bytes.NewReader(bad), RestoreOptions{}); err != nil {
			if l := leftovers(b2, ts2); l != "" {
				rt.Fatalf("failed restore (%v) left %s", err, l)
			}
		}
	})
}
