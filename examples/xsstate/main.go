// Command xsstate reads the state file xenstored hands to its successor in a
// live update (the migration stream of docs/designs/xenstore-migration.md,
// which C xenstored writes to its run directory as state_dump):
//
//	xsstate [-json] FILE        the node tree with values and permissions
//	                            (like xenstore-ls -p), then the connections
//	                            with their watches, transactions and pending
//	                            data, the quotas and the domains
//	xsstate -diff [-json] A B   what differs from A to B: nodes, permissions,
//	                            watches, connections, transactions, quotas
//
// FILE may be - for standard input. It exits 0 on success (also when the
// files differ), 1 on a runtime error (an unreadable or malformed file,
// reported with its offset and record), 2 on a usage error.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/xensr/xensr/internal/cli"
	"github.com/xensr/xensr/xenstore/migration"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := cli.New("xsstate", "FILE | -diff A B", `Prints a xenstored live-update state file as a node tree with values and
permissions, then its connections, watches, transactions, quotas and
domains; with -diff, what differs from A to B. FILE may be - (stdin).`, stderr)
	asJSON := c.Flags.Bool("json", false, "print JSON instead of text")
	diff := c.Flags.Bool("diff", false, "compare two state files A and B")
	rest, code, ok := c.ParseN(args, 1, 2)
	if !ok {
		return code
	}
	if want := map[bool]int{false: 1, true: 2}[*diff]; len(rest) != want {
		return c.UsageError("want %d file(s), got %d", want, len(rest))
	}
	var states []*migration.State
	for _, name := range rest {
		st, err := load(name, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "xsstate: %s: %v\n", name, err)
			return 1
		}
		states = append(states, st)
	}
	var err error
	switch {
	case *diff && *asJSON:
		err = cli.WriteJSON(stdout, diffStates(states[0], states[1]))
	case *diff:
		d := diffStates(states[0], states[1])
		if len(d) == 0 {
			fmt.Fprintln(stdout, "no differences")
		}
		for _, l := range d {
			fmt.Fprintln(stdout, l)
		}
	case *asJSON:
		err = cli.WriteJSON(stdout, toJSON(states[0]))
	default:
		err = dump(stdout, states[0])
	}
	if err != nil {
		fmt.Fprintln(stderr, "xsstate:", err)
		return 1
	}
	return 0
}

func load(name string, stdin io.Reader) (*migration.State, error) {
	var r io.Reader = stdin
	if f, ok := stdin.(*os.File); ok && name == "-" && cli.IsTerminal(f) {
		fmt.Fprintln(os.Stderr, "xsstate: reading from standard input (a terminal); end with Ctrl-D, or give a FILE")
	}
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return migration.ReadState(r)
}

func perms(ps []migration.Perm) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// quote prints a value the way xenstore-ls does: printable bytes as they
// are, the others escaped.
func quote(v []byte) string {
	var b strings.Builder
	for _, c := range v {
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\x%02x", c)
		}
	}
	return b.String()
}

// tree orders the committed nodes: each node's children in stream order.
type tree struct {
	nodes    map[string]*migration.Node
	children map[string][]string
	roots    []string
}

func parent(p string) (string, bool) {
	if p == "/" || !strings.HasPrefix(p, "/") {
		return "", false
	}
	i := strings.LastIndexByte(p, '/')
	if i == 0 {
		return "/", true
	}
	return p[:i], true
}

func buildTree(st *migration.State) *tree {
	t := &tree{nodes: map[string]*migration.Node{}, children: map[string][]string{}}
	for _, n := range st.Nodes() {
		if n.ConnID != 0 {
			continue
		}
		if _, dup := t.nodes[n.Path]; dup {
			continue
		}
		t.nodes[n.Path] = n
	}
	for _, n := range st.Nodes() {
		if n.ConnID != 0 || t.nodes[n.Path] != n {
			continue
		}
		if par, ok := parent(n.Path); ok && t.nodes[par] != nil {
			t.children[par] = append(t.children[par], n.Path)
		} else {
			t.roots = append(t.roots, n.Path)
		}
	}
	return t
}

func dump(w io.Writer, st *migration.State) error {
	var b bytes.Buffer
	order := "little-endian"
	if st.Header.Flags&migration.FlagBigEndian != 0 {
		order = "big-endian"
	}
	fmt.Fprintf(&b, "xenstore migration stream version %d, %s, %d records\n", st.Header.Version, order, len(st.Records))
	t := buildTree(st)
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		n := t.nodes[p]
		name := p
		if depth > 0 {
			name = p[strings.LastIndexByte(p, '/')+1:]
		}
		fmt.Fprintf(&b, "%s%s = \"%s\"  (%s)\n", strings.Repeat(" ", depth), name, quote(n.Value), perms(n.Perms))
		for _, c := range t.children[p] {
			walk(c, depth+1)
		}
	}
	for _, r := range t.roots {
		walk(r, 0)
	}
	for _, g := range bodiesOf[*migration.Global](st) {
		fmt.Fprintf(&b, "global: socket fd %d, event channel fd %d\n", g.SocketFD, g.EvtchnFD)
	}
	watches, txs, pending := byConn(st)
	for _, c := range st.Connections() {
		fmt.Fprintf(&b, "connection %d: %s\n", c.ID, connDesc(c))
		for _, wt := range watches[c.ID] {
			fmt.Fprintf(&b, "  watch %s token %q%s\n", wt.Path, wt.Token, depthDesc(wt))
		}
		for _, tx := range txs[c.ID] {
			fmt.Fprintf(&b, "  transaction %d\n", tx.TxID)
			for _, n := range pending[[2]uint32{c.ID, tx.TxID}] {
				fmt.Fprintf(&b, "    %s %s = \"%s\"  (%s)\n", accessDesc(n.Access), n.Path, quote(n.Value), perms(n.Perms))
			}
		}
	}
	for _, q := range bodiesOf[*migration.GlobalQuota](st) {
		fmt.Fprintf(&b, "quotas per domain: %s; global: %s\n", quotaDesc(q.Domain), quotaDesc(q.Global))
	}
	for _, d := range st.Domains() {
		fmt.Fprintf(&b, "domain %d: features %#x, quotas %s\n", d.DomID, d.Features, quotaDesc(d.Quotas))
	}
	_, err := w.Write(b.Bytes())
	return err
}

func bodiesOf[T migration.Body](st *migration.State) []T {
	var out []T
	for _, r := range st.Records {
		if b, ok := r.Body.(T); ok {
			out = append(out, b)
		}
	}
	return out
}

func byConn(st *migration.State) (map[uint32][]*migration.Watch, map[uint32][]*migration.Transaction, map[[2]uint32][]*migration.Node) {
	watches := map[uint32][]*migration.Watch{}
	for _, w := range st.Watches() {
		watches[w.ConnID] = append(watches[w.ConnID], w)
	}
	txs := map[uint32][]*migration.Transaction{}
	for _, t := range st.Transactions() {
		txs[t.ConnID] = append(txs[t.ConnID], t)
	}
	pending := map[[2]uint32][]*migration.Node{}
	for _, n := range st.Nodes() {
		if n.ConnID != 0 {
			k := [2]uint32{n.ConnID, n.TxID}
			pending[k] = append(pending[k], n)
		}
	}
	return watches, txs, pending
}

func connDesc(c *migration.Connection) string {
	var s string
	if c.Kind == migration.ConnSocket {
		s = fmt.Sprintf("socket fd %d", c.SocketFD)
	} else {
		s = fmt.Sprintf("ring of domain %d, event channel %d", c.DomID, c.Evtchn)
		if c.TargetID != migration.DomidInvalid {
			s += fmt.Sprintf(", target domain %d", c.TargetID)
		}
	}
	if c.HasUniqueID {
		s += fmt.Sprintf(", unique id %#x", c.UniqueID)
	}
	if len(c.In) > 0 || len(c.Out) > 0 {
		s += fmt.Sprintf(", pending %d bytes in, %d out (%d of a partial response): \"%s\"", len(c.In), len(c.Out), c.RespLen, quote(c.Out))
	}
	return s
}

func depthDesc(w *migration.Watch) string {
	if !w.Extended {
		return ""
	}
	if w.Depth == 0xffff {
		return ", depth unlimited"
	}
	return fmt.Sprintf(", depth %d", w.Depth)
}

func accessDesc(a uint16) string {
	switch a {
	case 0:
		return "deleted"
	case migration.AccessRead:
		return "read"
	case migration.AccessWritten:
		return "written"
	case migration.AccessRead | migration.AccessWritten:
		return "read+written"
	}
	return fmt.Sprintf("access(%#x)", a)
}

func quotaDesc(q []migration.Quota) string {
	if len(q) == 0 {
		return "none"
	}
	s := make([]string, len(q))
	for i, x := range q {
		s[i] = x.Name + "=" + strconv.FormatUint(uint64(x.Value), 10)
	}
	return strings.Join(s, " ")
}

// The JSON form: camelCase names, enum names, values as text when they are
// UTF-8 and in base64 (valueBase64) otherwise.
type jsonState struct {
	Version     uint32           `json:"version"`
	ByteOrder   string           `json:"byteOrder"`
	Records     int              `json:"records"`
	Global      *jsonGlobal      `json:"global,omitempty"`
	Nodes       []jsonNode       `json:"nodes"`
	Connections []jsonConn       `json:"connections"`
	GlobalQuota *jsonGlobalQuota `json:"globalQuota,omitempty"`
	Domains     []jsonDomain     `json:"domains,omitempty"`
}

type jsonGlobal struct {
	SocketFD int32 `json:"socketFd"`
	EvtchnFD int32 `json:"evtchnFd"`
}

type jsonNode struct {
	Path        string   `json:"path"`
	Value       *string  `json:"value,omitempty"`
	ValueBase64 []byte   `json:"valueBase64,omitempty"`
	Perms       []string `json:"perms"`
	Access      string   `json:"access,omitempty"`
}

type jsonWatch struct {
	Path  string `json:"path"`
	Token string `json:"token"`
	Depth *int   `json:"depth,omitempty"`
}

type jsonTx struct {
	ID    uint32     `json:"id"`
	Nodes []jsonNode `json:"nodes"`
}

type jsonConn struct {
	ID           uint32      `json:"id"`
	Type         string      `json:"type"`
	DomID        *uint16     `json:"domid,omitempty"`
	TargetDomID  *uint16     `json:"targetDomid,omitempty"`
	Evtchn       *uint32     `json:"evtchn,omitempty"`
	SocketFD     *int32      `json:"socketFd,omitempty"`
	UniqueID     *uint64     `json:"uniqueId,omitempty"`
	PendingIn    []byte      `json:"pendingIn,omitempty"`
	PendingOut   []byte      `json:"pendingOut,omitempty"`
	PartialResp  uint16      `json:"partialResponseLen,omitempty"`
	Watches      []jsonWatch `json:"watches"`
	Transactions []jsonTx    `json:"transactions"`
}

type jsonQuota struct {
	Name  string `json:"name"`
	Value uint32 `json:"value"`
}

type jsonGlobalQuota struct {
	Domain []jsonQuota `json:"domain"`
	Global []jsonQuota `json:"global"`
}

type jsonDomain struct {
	DomID    uint16      `json:"domid"`
	Features uint32      `json:"features"`
	Quotas   []jsonQuota `json:"quotas"`
}

func nodeJSON(n *migration.Node) jsonNode {
	j := jsonNode{Path: n.Path, Perms: []string{}}
	if utf8.Valid(n.Value) && !bytes.ContainsRune(n.Value, 0) {
		v := string(n.Value)
		j.Value = &v
	} else {
		j.ValueBase64 = n.Value
	}
	for _, p := range n.Perms {
		j.Perms = append(j.Perms, p.String())
	}
	if n.ConnID != 0 {
		j.Access = accessDesc(n.Access)
	}
	return j
}

func quotasJSON(q []migration.Quota) []jsonQuota {
	out := []jsonQuota{}
	for _, x := range q {
		out = append(out, jsonQuota{x.Name, x.Value})
	}
	return out
}

func toJSON(st *migration.State) jsonState {
	j := jsonState{Version: st.Header.Version, ByteOrder: "little", Records: len(st.Records), Nodes: []jsonNode{}, Connections: []jsonConn{}}
	if st.Header.Flags&migration.FlagBigEndian != 0 {
		j.ByteOrder = "big"
	}
	if g := bodiesOf[*migration.Global](st); len(g) > 0 {
		j.Global = &jsonGlobal{g[0].SocketFD, g[0].EvtchnFD}
	}
	for _, n := range st.Nodes() {
		if n.ConnID == 0 {
			j.Nodes = append(j.Nodes, nodeJSON(n))
		}
	}
	watches, txs, pending := byConn(st)
	for _, c := range st.Connections() {
		jc := jsonConn{ID: c.ID, Type: c.Kind.String(), PendingIn: c.In, PendingOut: c.Out, PartialResp: c.RespLen,
			Watches: []jsonWatch{}, Transactions: []jsonTx{}}
		if c.Kind == migration.ConnSocket {
			jc.SocketFD = &c.SocketFD
		} else {
			jc.DomID, jc.Evtchn = &c.DomID, &c.Evtchn
			if c.TargetID != migration.DomidInvalid {
				jc.TargetDomID = &c.TargetID
			}
		}
		if c.HasUniqueID {
			jc.UniqueID = &c.UniqueID
		}
		for _, w := range watches[c.ID] {
			jw := jsonWatch{Path: w.Path, Token: w.Token}
			if w.Extended {
				d := int(w.Depth)
				jw.Depth = &d
			}
			jc.Watches = append(jc.Watches, jw)
		}
		for _, t := range txs[c.ID] {
			jt := jsonTx{ID: t.TxID, Nodes: []jsonNode{}}
			for _, n := range pending[[2]uint32{c.ID, t.TxID}] {
				jt.Nodes = append(jt.Nodes, nodeJSON(n))
			}
			jc.Transactions = append(jc.Transactions, jt)
		}
		j.Connections = append(j.Connections, jc)
	}
	if q := bodiesOf[*migration.GlobalQuota](st); len(q) > 0 {
		j.GlobalQuota = &jsonGlobalQuota{quotasJSON(q[0].Domain), quotasJSON(q[0].Global)}
	}
	for _, d := range st.Domains() {
		j.Domains = append(j.Domains, jsonDomain{d.DomID, d.Features, quotasJSON(d.Quotas)})
	}
	return j
}

// diffStates lists what differs from a to b, one line each: "+" for what b
// adds, "-" for what it lacks, "~" for what it changes. Connections are
// matched by what they connect (socket fd, or domain), not by their ids,
// which each dump numbers afresh; watches by connection, path and token.
func diffStates(a, b *migration.State) []string {
	out := []string{}
	if a.Header != b.Header {
		out = append(out, fmt.Sprintf("~ header: version %d flags %#x -> version %d flags %#x", a.Header.Version, a.Header.Flags, b.Header.Version, b.Header.Flags))
	}
	ta, tb := buildTree(a), buildTree(b)
	paths := func(t *tree) []string {
		var p []string
		for k := range t.nodes {
			p = append(p, k)
		}
		slices.Sort(p)
		return p
	}
	for _, p := range paths(ta) {
		na, nb := ta.nodes[p], tb.nodes[p]
		switch {
		case nb == nil:
			out = append(out, fmt.Sprintf("- node %s = \"%s\"  (%s)", p, quote(na.Value), perms(na.Perms)))
		case !bytes.Equal(na.Value, nb.Value) || perms(na.Perms) != perms(nb.Perms):
			out = append(out, fmt.Sprintf("~ node %s: \"%s\" (%s) -> \"%s\" (%s)", p, quote(na.Value), perms(na.Perms), quote(nb.Value), perms(nb.Perms)))
		}
	}
	for _, p := range paths(tb) {
		if nb := tb.nodes[p]; ta.nodes[p] == nil {
			out = append(out, fmt.Sprintf("+ node %s = \"%s\"  (%s)", p, quote(nb.Value), perms(nb.Perms)))
		}
	}
	// Connections and what hangs off them, keyed by what they connect.
	key := func(c *migration.Connection) string {
		if c.Kind == migration.ConnSocket {
			return fmt.Sprintf("socket fd %d", c.SocketFD)
		}
		return fmt.Sprintf("ring of domain %d", c.DomID)
	}
	items := func(st *migration.State) map[string]string {
		m := map[string]string{}
		keys := map[uint32]string{}
		for _, c := range st.Connections() {
			keys[c.ID] = key(c)
			m["connection "+key(c)] = connDesc(c)
		}
		for _, w := range st.Watches() {
			m[fmt.Sprintf("watch %s token %q on %s", w.Path, w.Token, keys[w.ConnID])] = depthDesc(w)
		}
		for _, t := range st.Transactions() {
			m[fmt.Sprintf("transaction %d on %s", t.TxID, keys[t.ConnID])] = ""
		}
		for _, q := range bodiesOf[*migration.GlobalQuota](st) {
			for _, x := range q.Domain {
				m["quota per domain "+x.Name] = strconv.FormatUint(uint64(x.Value), 10)
			}
			for _, x := range q.Global {
				m["quota global "+x.Name] = strconv.FormatUint(uint64(x.Value), 10)
			}
		}
		for _, d := range st.Domains() {
			m[fmt.Sprintf("domain %d", d.DomID)] = fmt.Sprintf("features %#x, quotas %s", d.Features, quotaDesc(d.Quotas))
		}
		return m
	}
	ia, ib := items(a), items(b)
	var keys []string
	for k := range ia {
		keys = append(keys, k)
	}
	for k := range ib {
		if _, ok := ia[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		va, inA := ia[k]
		vb, inB := ib[k]
		switch {
		case !inB:
			out = append(out, "- "+k+suffix(va))
		case !inA:
			out = append(out, "+ "+k+suffix(vb))
		case va != vb:
			out = append(out, fmt.Sprintf("~ %s: %s -> %s", k, va, vb))
		}
	}
	return out
}

func suffix(v string) string {
	if v == "" || strings.HasPrefix(v, ",") {
		return v
	}
	return ": " + v
}
