//go:build ignore

// mkfixtures trims real `xl save` images into small fixtures: it keeps every
// header and non-page record, the PAGE_DATA records that carry no page data,
// and the first and last PAGE_DATA records with data, re-encodes the result
// through the xensr Writers and compresses it with zstd. It also synthesises
// a checkpointed (Remus-style) libxl stream from a PVH image's records.
//
//	go run stream/testdata/mkfixtures.go -src /work/scratch/imgs -dst stream/testdata
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxc"
	"github.com/xensr/xensr/stream/libxl"
)

type item struct {
	it   image.Item
	body []byte
}

// load walks a file and returns copies of all items (relaxed, so truncated
// inputs load up to the error).
func load(path string) ([]item, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	var items []item
	_, err = image.Walk(bufio.NewReaderSize(fd, 1<<20), image.Options{Relaxed: true}, func(it *image.Item) error {
		c := *it
		c.Body = append([]byte(nil), it.Body...)
		c.Libxc = nil // re-encoded from Type and Body
		if it.XL != nil {
			h := *it.XL
			c.XL = &h
		}
		if it.Libxl != nil {
			h := *it.Libxl
			c.Libxl = &h
		}
		if it.LibxcImage != nil {
			h := *it.LibxcImage
			c.LibxcImage = &h
		}
		if it.LibxcDomain != nil {
			h := *it.LibxcDomain
			c.LibxcDomain = &h
		}
		if it.Pages != nil {
			p := *it.Pages
			c.Pages = &p
		}
		items = append(items, item{it: c, body: c.Body})
		return nil
	})
	return items, err
}

func trim(items []item) []item {
	first, last := -1, -1
	for i, x := range items {
		if x.it.Pages != nil && x.it.Pages.DataPages > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	var out []item
	for i, x := range items {
		if x.it.Pages != nil && x.it.Pages.DataPages > 0 && i != first && i != last {
			continue
		}
		out = append(out, x)
	}
	return out
}

func encode(items []item) []byte {
	var buf bytes.Buffer
	enc := image.NewEncoder(&buf)
	for i := range items {
		if err := enc.Encode(&items[i].it); err != nil {
			log.Fatal(err)
		}
	}
	return buf.Bytes()
}

func write(path string, raw []byte) {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d bytes raw, %d compressed\n", path, len(raw), buf.Len())
}

// checkpointed builds a libxl stream with three libxc rounds separated by
// libxc CHECKPOINT records and libxl CHECKPOINT_END records, the layout of
// libxl_stream_write.c and xg_sr_save.c for Remus/COLO, from a PVH image.
func checkpointed(items []item) []byte {
	var static, pages, tail []item
	var hdrs []item
	for _, x := range items {
		switch {
		case x.it.Kind == image.KindHeader && x.it.XL == nil:
			hdrs = append(hdrs, x)
		case x.it.Layer == "libxc" && x.it.Kind == image.KindRecord:
			switch {
			case x.it.Type == uint32(libxc.TypeEnd):
			case x.it.Pages != nil:
				pages = append(pages, x)
			case x.it.Type >= 0x10: // CPUID/MSR policy, STATIC_DATA_END
				static = append(static, x)
			default:
				tail = append(tail, x) // TSC_INFO, HVM_CONTEXT, HVM_PARAMS
			}
		}
	}
	rec := func(layer string, t uint32, body []byte) item {
		return item{it: image.Item{Layer: layer, Kind: image.KindRecord, Type: t, Body: body}}
	}
	var s []item
	s = append(s, hdrs[0], rec("libxl", uint32(libxl.TypeLibxcContext), nil), hdrs[1], hdrs[2])
	s = append(s, static...)
	for round := 0; round < 3; round++ {
		s = append(s, pages[round])
		s = append(s, tail...)
		if round < 2 {
			s = append(s, rec("libxc", uint32(libxc.TypeCheckpoint), nil), rec("libxl", uint32(libxl.TypeCheckpointEnd), nil))
		}
	}
	s = append(s, rec("libxc", uint32(libxc.TypeEnd), nil), rec("libxl", uint32(libxl.TypeEnd), nil))
	return encode(s)
}

func main() {
	src := flag.String("src", "/work/scratch/imgs", "directory of full images")
	dst := flag.String("dst", "stream/testdata", "output directory")
	flag.Parse()
	for _, f := range []struct{ in, out string }{
		{"guest1.save", "guest1-pv.xl.zst"},
		{"guest1-ckpt.save", "guest1-pv-save-c.xl.zst"},
		{"guest3-pvh.save", "guest3-pvh.xl.zst"},
		{"guest3-migrate.stream", "guest3-pvh-migrate.xl.zst"},
	} {
		items, err := load(filepath.Join(*src, f.in))
		if err != nil {
			log.Fatalf("%s: %v", f.in, err)
		}
		write(filepath.Join(*dst, f.out), encode(trim(items)))
		if f.in == "guest3-pvh.save" {
			write(filepath.Join(*dst, "synthetic-pvh-checkpointed.libxl.zst"), checkpointed(items))
		}
	}
	// The failed PV migration is small: keep it whole, as it is truncated.
	raw, err := os.ReadFile(filepath.Join(*src, "guest1-migrate.stream"))
	if err != nil {
		log.Fatal(err)
	}
	_ = io.EOF
	write(filepath.Join(*dst, "guest1-pv-migrate-failed.xl.zst"), raw)
}
