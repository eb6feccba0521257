// Command xs reads and changes xenstore, like xenstore-read, -write, -ls,
// -rm, -watch and -chmod together:
//
//	xs read PATH...          print the values
//	xs write PATH VALUE...   set path/value pairs
//	xs ls [-json] [PATH]     print the tree below PATH (default /) with values
//	xs rm PATH...            remove nodes and their subtrees
//	xs watch [-n N] PATH     print watch events (stop after N)
//	xs perms PATH [PERM...]  print, or set (e.g. n0 r5), the permissions
//
// It connects like libxenstore: $XENSTORED_PATH, the daemon's socket, then
// /dev/xen/xenbus.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xensr/xensr/internal/cli"
	"github.com/xensr/xensr/xenstore"
)

func main() {
	os.Exit(xs(context.Background(), os.Args[1:], os.Stdout, os.Stderr, xenstore.DialDefault))
}

// opts are the subcommands' flags.
type opts struct {
	json bool
	n    int
}

// subs describes each subcommand: its arguments and how many.
var subs = []struct {
	name, args, summary string
	min, max            int
}{
	{"read", "PATH...", "print the values", 1, -1},
	{"write", "PATH VALUE...", "set path/value pairs", 2, -1},
	{"ls", "[PATH]", "print the tree below PATH (default /) with values", 0, 1},
	{"rm", "PATH...", "remove nodes and their subtrees", 1, -1},
	{"watch", "PATH", "print watch events", 1, 1},
	{"perms", "PATH [PERM...]", "print, or set (e.g. n0 r5), the permissions", 1, -1},
}

// xs parses the subcommand and its flags before it connects to xenstore.
func xs(ctx context.Context, args []string, stdout, stderr io.Writer, dial xenstore.Dialer) int {
	var list []cli.Sub
	for _, sp := range subs {
		list = append(list, cli.Sub{Name: sp.name, Summary: sp.summary, Run: func(a []string) int {
			c := cli.New("xs "+sp.name, sp.args, sp.summary+".", stderr)
			var o opts
			switch sp.name {
			case "ls":
				c.Flags.BoolVar(&o.json, "json", false, "print JSON: nested {name, value, children}")
			case "watch":
				c.Flags.IntVar(&o.n, "n", 0, "stop after `N` events (0: never)")
			}
			rest, code, ok := c.ParseN(a, sp.min, sp.max)
			if !ok {
				return code
			}
			if sp.name == "write" && len(rest)%2 != 0 {
				return c.UsageError("write takes PATH VALUE pairs")
			}
			if err := do(ctx, sp.name, o, rest, stdout, dial); err != nil {
				return c.Fail(err)
			}
			return cli.ExitOK
		}})
	}
	return cli.Dispatch("xs", list, args, stderr)
}

// do runs one parsed subcommand.
func do(ctx context.Context, cmd string, o opts, args []string, out io.Writer, dial xenstore.Dialer) error {
	c, err := xenstore.DialWith(ctx, dial)
	if err != nil {
		return err
	}
	defer c.Close()
	switch cmd {
	case "read":
		for _, p := range args {
			v, err := c.Read(ctx, p)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(v))
		}
	case "write":
		for i := 0; i+1 < len(args); i += 2 {
			if err := c.Write(ctx, args[i], []byte(args[i+1])); err != nil {
				return err
			}
		}
	case "ls":
		root := "/"
		if len(args) > 0 {
			root = args[0]
		}
		if o.json {
			n, err := tree(ctx, c, root)
			if err != nil {
				return err
			}
			return cli.WriteJSON(out, n)
		}
		return ls(ctx, c, out, root, 0)
	case "rm":
		for _, p := range args {
			if err := c.Rm(ctx, p); err != nil {
				return err
			}
		}
	case "watch":
		w, err := c.Watch(ctx, args[0])
		if err != nil {
			return err
		}
		for i := 0; o.n == 0 || i < o.n; i++ {
			ev, ok := <-w.C
			if !ok {
				return w.Err()
			}
			fmt.Fprintln(out, ev.Path)
		}
	case "perms":
		if len(args) > 1 {
			var perms []xenstore.Perm
			for _, s := range args[1:] {
				p, err := xenstore.ParsePerm(s)
				if err != nil {
					return err
				}
				perms = append(perms, p)
			}
			return c.SetPerms(ctx, args[0], perms)
		}
		perms, err := c.GetPerms(ctx, args[0])
		if err != nil {
			return err
		}
		s := make([]string, len(perms))
		for i, p := range perms {
			s[i] = p.String()
		}
		fmt.Fprintln(out, strings.Join(s, " "))
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

// node is one node of `xs ls -json`.
type node struct {
	Name     string  `json:"name"`
	Value    string  `json:"value"`
	Children []*node `json:"children,omitempty"`
}

func tree(ctx context.Context, c *xenstore.Client, p string) (*node, error) {
	v, err := c.Read(ctx, p)
	if err != nil {
		return nil, err
	}
	n := &node{Name: p, Value: string(v)}
	names, err := c.Directory(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		ch, err := tree(ctx, c, strings.TrimSuffix(p, "/")+"/"+name)
		if err != nil {
			return nil, err
		}
		ch.Name = name
		n.Children = append(n.Children, ch)
	}
	return n, nil
}

func ls(ctx context.Context, c *xenstore.Client, out io.Writer, p string, depth int) error {
	names, err := c.Directory(ctx, p)
	if err != nil {
		return err
	}
	for _, n := range names {
		child := strings.TrimSuffix(p, "/") + "/" + n
		v, err := c.Read(ctx, child)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s%s = %q\n", strings.Repeat(" ", depth), n, v)
		if err := ls(ctx, c, out, child, depth+1); err != nil {
			return err
		}
	}
	return nil
}
