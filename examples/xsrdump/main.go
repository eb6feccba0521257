// Command xsrdump prints the layers and records of a Xen save image or
// migration stream (an `xl save` file, a bare libxl stream or a bare libxc
// stream), verifies it, and re-encodes it through the xensr Writers.
//
//	go run ./examples/xsrdump [-v] [-json] [-verify] [-c] [-rewrite OUT] [-f xl|libxl|libxc] FILE|-
//
// It prints one line per header and record with its absolute offset, like
// Xen's verify-stream-v2 -v, and page statistics (pages, zero pages, PFN
// range, page types). -verify checks the stream strictly, refusing what Xen
// 4.17's restore refuses (with the xl configuration's guest type and vCPU
// count when the file has one), and exits 1 with the first error as soon as
// it is found (without -verify the walk is relaxed, for forensic reading).
// -verify alone seeks over the page contents of a regular file, which no
// check reads (zero pages are then not counted); on Linux it splices a
// pipe's page contents to /dev/null, never copying them into the process
// (zero pages not counted either), and elsewhere reads a pipe whole,
// counting zero pages without keeping the pages (image.Options.SkipPages).
// -rewrite writes the re-encoded image to OUT and reports whether
// it is byte-identical to the input. -c declares a checkpointed (Remus/COLO)
// stream, whose libxc rounds end in CHECKPOINT records.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/xensr/xensr/internal/cli"
	"github.com/xensr/xensr/stream"
	"github.com/xensr/xensr/stream/image"
	"github.com/xensr/xensr/stream/libxl"
)

// stdin is the input for the name "-"; tests replace it.
var stdin io.Reader = os.Stdin

type config struct {
	verbose, json, verify bool
	records               bool
	checkpointed          bool
	rewrite, format       string
	mapFile               string
}

func main() { os.Exit(xsrdump(os.Args[1:], os.Stdout, os.Stderr)) }

// xsrdump parses the flags (before opening anything) and runs.
func xsrdump(args []string, stdout, stderr io.Writer) int {
	var c config
	cmd := cli.New("xsrdump", "FILE|-", `Prints the layers and records of a Xen save image or migration stream (an
xl save file, a bare libxl stream or a bare libxc stream), verifies it
strictly with -verify, and re-encodes it through the xensr Writers with
-rewrite. Without -verify the walk is relaxed (forensic reading) and the
verdict is "not verified". PAGE_DATA records are summed up unless -records.
-verify of a regular file seeks over the page contents, which no check
reads, and on Linux splices those of a pipe to /dev/null (zero pages are
then not counted: -v or -records count them).`, stderr)
	fs := cmd.Flags
	fs.BoolVar(&c.verbose, "v", false, "verbose: record details (PFN ranges, page types, emulator data, the domain config)")
	fs.BoolVar(&c.json, "json", false, "print JSON: the summary and verdict, and with -v or -records the items")
	fs.BoolVar(&c.verify, "verify", false, "validate strictly, as Xen's restore would; exit 1 with the first error")
	fs.BoolVar(&c.records, "records", false, "list every record, PAGE_DATA included")
	fs.StringVar(&c.rewrite, "rewrite", "", "re-encode the image through the Writers into `OUT`")
	fs.StringVar(&c.format, "f", "auto", "outermost layer: xl, libxl, libxc or auto")
	fs.StringVar(&c.mapFile, "map", "", "draw the guest's memory as the image holds it into `FILE.svg`")
	fs.BoolVar(&c.checkpointed, "c", false, "the stream is checkpointed (Remus/COLO): allow libxc CHECKPOINT rounds")
	rest, code, ok := cmd.ParseN(args, 1, 1)
	if !ok {
		return code
	}
	if _, err := image.ParseFormat(c.format); err != nil {
		return cmd.UsageError("-f: %v", err)
	}
	return run(c, rest[0], stdout, stderr)
}

// run is the whole command, separated from main for tests. It returns the
// exit status.
func run(c config, name string, stdout, stderr io.Writer) int {
	f, err := image.ParseFormat(c.format)
	if err != nil {
		fmt.Fprintln(stderr, "xsrdump:", err)
		return cli.ExitUsage
	}
	in := stdin
	if name == "-" {
		if fd, ok := stdin.(*os.File); ok && cli.IsTerminal(fd) {
			fmt.Fprintln(stderr, "xsrdump: reading from standard input (a terminal); end with Ctrl-D, or give a FILE")
		}
	} else {
		fd, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, "xsrdump:", err)
			return cli.ExitFailure
		}
		defer fd.Close()
		in = fd
	}
	// -verify alone keeps the page contents (which no check reads) out of
	// the walker's buffers when nothing printed needs them: -v and
	// -records list per-record zero pages, -map draws them, -rewrite
	// copies them. From a regular file they are not even read.
	skip := c.verify && !c.verbose && !c.records && c.mapFile == "" && c.rewrite == ""
	growPipe(in)
	var src io.Reader = bufio.NewReaderSize(in, 1<<20)
	var inHash hash.Hash
	switch {
	case c.rewrite != "":
		// The input's hash is only needed to compare with the rewrite.
		inHash = sha256.New()
		src = io.TeeReader(src, inHash)
	case skip:
		src = in // the walker reads a regular file with ReadAt, buffers a stream itself
	}

	var enc *image.Encoder
	var outHash hash.Hash
	var outFile *os.File
	var outBuf *bufio.Writer
	if c.rewrite != "" {
		outFile, err = os.Create(c.rewrite)
		if err != nil {
			fmt.Fprintln(stderr, "xsrdump:", err)
			return cli.ExitFailure
		}
		defer outFile.Close()
		outHash = sha256.New()
		outBuf = bufio.NewWriterSize(io.MultiWriter(outFile, outHash), 1<<20)
		enc = image.NewEncoder(outBuf)
	}

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var items []jsonItem
	w := image.NewWalker(src, image.Options{Format: f, Relaxed: !c.verify, Checkpointed: c.checkpointed, SkipPages: skip})
	var walkErr error
	var memMap *image.MemoryMap
	if c.mapFile != "" {
		memMap = new(image.MemoryMap)
	}
	for {
		it, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			walkErr = err
			break
		}
		if memMap != nil {
			memMap.Add(it)
		}
		if enc != nil {
			if err := enc.Encode(it); err != nil {
				fmt.Fprintln(stderr, "xsrdump: rewrite:", err)
				return cli.ExitFailure
			}
		}
		// PAGE_DATA records are summed up in the summary unless -records.
		listed := c.records || it.Pages == nil
		switch {
		case c.json && (c.verbose || c.records) && listed:
			items = append(items, toJSON(it))
		case c.json:
		case c.verify && !c.verbose && !c.records:
		case listed:
			printItem(out, it, c.verbose)
		}
	}
	sum := w.Summary()
	// After an error nothing more is read: the input may be endless, and
	// the error is what the user waits for. (The walker read a valid input
	// to its end, so the hashes compare whole inputs.)

	identical := false
	if enc != nil {
		if err := outBuf.Flush(); err != nil {
			fmt.Fprintln(stderr, "xsrdump: rewrite:", err)
			return cli.ExitFailure
		}
		identical = bytes.Equal(inHash.Sum(nil), outHash.Sum(nil))
	}
	if memMap != nil && walkErr == nil {
		if err := writeMap(c.mapFile, memMap, name); err != nil {
			fmt.Fprintln(stderr, "xsrdump: -map:", err)
			return cli.ExitFailure
		}
	}
	// The verdict: "valid" or "invalid" only after a strict walk; a relaxed
	// walk proves nothing, so it says "not verified".
	verdict := "not verified"
	switch {
	case walkErr != nil:
		verdict = "invalid"
	case c.verify:
		verdict = "valid"
	}
	if c.json {
		doc := struct {
			File    string         `json:"file"`
			Verdict string         `json:"verdict"`
			Valid   *bool          `json:"valid,omitempty"`
			Summary *image.Summary `json:"summary,omitempty"`
			Error   *errorJSON     `json:"error,omitempty"`
			Rewrite *rewriteJSON   `json:"rewrite,omitempty"`
			Items   []jsonItem     `json:"items,omitempty"`
		}{File: name, Verdict: verdict, Items: items}
		if c.verify || walkErr != nil {
			v := walkErr == nil
			doc.Valid = &v
		}
		if walkErr != nil {
			doc.Error = toErrorJSON(walkErr)
		} else {
			doc.Summary = &sum
		}
		if enc != nil && walkErr == nil {
			doc.Rewrite = &rewriteJSON{Path: c.rewrite, Identical: identical}
		}
		cli.WriteJSON(out, doc)
	} else if walkErr == nil {
		// No summary of a walk that failed: it would describe half an image.
		printSummary(out, sum, c.verbose)
		if enc != nil {
			fmt.Fprintf(out, "rewrite: %s, identical to input: %v\n", c.rewrite, identical)
		}
		fmt.Fprintf(out, "verdict: %s\n", verdict)
	}
	out.Flush()
	if walkErr != nil {
		fmt.Fprintln(stderr, "xsrdump: invalid stream:", walkErr)
		return 1
	}
	if enc != nil && !identical {
		return 1
	}
	return 0
}

type rewriteJSON struct {
	Path      string `json:"path"`
	Identical bool   `json:"identical"`
}

type errorJSON struct {
	Message  string `json:"message"`
	Layer    string `json:"layer,omitempty"`
	Offset   int64  `json:"offset"`
	Index    int    `json:"index"`
	Type     uint32 `json:"type"`
	TypeName string `json:"type_name,omitempty"`
	Field    string `json:"field,omitempty"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
}

func toErrorJSON(err error) *errorJSON {
	e := &errorJSON{Message: err.Error(), Index: -1}
	var fe *stream.FormatError
	if errors.As(err, &fe) {
		e.Layer, e.Offset, e.Index, e.Type, e.Field = fe.Layer, fe.Offset, fe.Index, fe.Type, fe.Field
		e.TypeName, e.Expected, e.Actual = fe.TypeName, fe.Expected, fe.Actual
	}
	return e
}

type jsonItem struct {
	Layer  string           `json:"layer"`
	Name   string           `json:"name"`
	Type   *uint32          `json:"type,omitempty"`
	Index  int              `json:"index"`
	Offset int64            `json:"offset"`
	Size   int64            `json:"size"`
	Round  int              `json:"round,omitempty"`
	Pages  *image.PageStats `json:"pages,omitempty"`
	Header any              `json:"header,omitempty"`
}

func toJSON(it *image.Item) jsonItem {
	j := jsonItem{Layer: it.Layer, Name: it.Name, Index: it.Index, Offset: it.Offset, Size: it.Size, Round: it.Round, Pages: it.Pages}
	if it.Kind == image.KindRecord {
		t := it.Type
		j.Type = &t
	}
	switch {
	case it.XL != nil:
		h := map[string]any{"big_endian": it.XL.BigEndian, "mandatory_flags": it.XL.Mandatory, "optional_flags": it.XL.Optional, "config_bytes": len(it.XL.Config), "extra_bytes": len(it.XL.Extra)}
		if cfg := bytes.TrimRight(it.XL.ConfigText(), "\x00\n"); json.Valid(cfg) {
			h["config"] = json.RawMessage(cfg)
		}
		j.Header = h
	case it.Libxl != nil:
		j.Header = it.Libxl
	case it.LibxcImage != nil:
		j.Header = it.LibxcImage
	case it.LibxcDomain != nil:
		j.Header = it.LibxcDomain
	}
	return j
}

func printItem(w io.Writer, it *image.Item, verbose bool) {
	switch {
	case it.XL != nil:
		h := it.XL
		fmt.Fprintf(w, "%10d  xl     header: mandatory %#x optional %#x, optional data %d bytes, config %d bytes%s\n",
			it.Offset, h.Mandatory, h.Optional, h.OptionalDataLen(), len(h.Config), map[bool]string{true: " (JSON)", false: ""}[h.Mandatory&1 != 0])
		if verbose {
			for _, l := range strings.Split(strings.TrimRight(string(h.ConfigText()), "\n"), "\n") {
				fmt.Fprintf(w, "%12s| %s\n", "", l)
			}
		}
	case it.Libxl != nil:
		o := "little-endian"
		if it.Libxl.Options&libxl.OptLegacy != 0 {
			o += ", legacy converted"
		}
		fmt.Fprintf(w, "%10d  libxl  header: version %d, options %#x (%s)\n", it.Offset, it.Libxl.Version, it.Libxl.Options, o)
	case it.LibxcImage != nil:
		fmt.Fprintf(w, "%10d  libxc  image header: version %d, options %#x\n", it.Offset, it.LibxcImage.Version, it.LibxcImage.Options)
	case it.LibxcDomain != nil:
		d := it.LibxcDomain
		fmt.Fprintf(w, "%10d  libxc  domain header: %s, page shift %d, Xen %d.%d\n", it.Offset, d.Type, d.PageShift, d.XenMajor, d.XenMinor)
	case it.Kind == image.KindTrailer:
		fmt.Fprintf(w, "%10d  after  %s, %d bytes\n", it.Offset, it.Name, it.Size)
	default:
		fmt.Fprintf(w, "%10d  %-6s #%-5d %s, length %d", it.Offset, it.Layer, it.Index, it.Name, len(it.Body))
		if p := it.Pages; p != nil {
			fmt.Fprintf(w, ": %d pages (%d with data, %d zero), PFN %#x-%#x", p.Pages, p.DataPages, p.ZeroPages, p.MinPFN, p.MaxPFN)
			if verbose {
				fmt.Fprintf(w, " types %s", typesString(p.Types()))
			}
		}
		if verbose && it.Layer == libxl.Layer && (it.Type == uint32(libxl.TypeEmulatorContext) || it.Type == uint32(libxl.TypeEmulatorXenstoreData)) {
			if e, err := libxl.ParseEmulator(it.Body); err == nil {
				fmt.Fprintf(w, ": %v index %d, %d bytes", e.ID, e.Index, len(e.Data))
				if it.Type == uint32(libxl.TypeEmulatorXenstoreData) {
					kv, _ := libxl.ParseXenstoreData(e.Data)
					for _, p := range kv {
						fmt.Fprintf(w, "\n%12s| %s = %q", "", p.Key, p.Value)
					}
				}
			}
		}
		fmt.Fprintln(w)
		if verbose && it.Libxc != nil {
			printFields(w, it.Libxc)
		}
	}
}

func typesString(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

func printSummary(w io.Writer, s image.Summary, verbose bool) {
	fmt.Fprintf(w, "format %s, %d bytes", s.Format, s.Bytes)
	if s.DomainType != "" {
		fmt.Fprintf(w, ", %s guest, Xen %s, libxc v%d", s.DomainType, s.XenVersion, s.LibxcVersion)
	}
	fmt.Fprintf(w, "; records: libxl %d, libxc %d; checkpoints %d\n", s.Records["libxl"], s.Records["libxc"], s.Checkpoints)
	p := s.Pages
	zero := fmt.Sprintf("%d zero", p.ZeroPages)
	if p.Unread > 0 {
		zero = fmt.Sprintf("%d not read (zero pages not counted)", p.Unread)
		if p.Unread < p.DataPages {
			zero = fmt.Sprintf("%d zero of %d read, %d not read", p.ZeroPages, p.DataPages-p.Unread, p.Unread)
		}
	}
	fmt.Fprintf(w, "pages: %d in %d PAGE_DATA records, %d with data (%d MiB), %s, PFN %#x-%#x",
		p.Pages, p.Records, p.DataPages, p.DataPages*4096>>20, zero, p.MinPFN, p.MaxPFN)
	if len(p.Types()) > 0 {
		fmt.Fprintf(w, "; types %s", typesString(p.Types()))
	}
	fmt.Fprintln(w)
	if s.TrailerBytes > 0 {
		fmt.Fprintf(w, "after the stream: %s (%d bytes)\n", s.Trailer, s.TrailerBytes)
	}
}

func writeMap(path string, m *image.MemoryMap, name string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := m.WriteSVG(f, "xsrdump: "+name); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
