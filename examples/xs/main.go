// Command xs reads and changes xenstore, like xenstore-read, -write, -ls,
// -rm, -watch and -chmod together:
//
//	xs read PATH...          print the values
//	xs write PATH VALUE...   set path/value pairs
//	xs ls [PATH]             print the tree below PATH (default /) with values
//	xs rm PATH...            remove nodes and their subtrees
//	xs watch PATH [-n N]     print watch events (stop after N)
//	xs perms PATH [PERM...]  print, or set (e.g. n0 r5), the permissions
//
// It connects like libxenstore: $XENSTORED_PATH, the daemon's socket, then
// /dev/xen/xenbus.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xensr/xensr/xenstore"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, xenstore.DialDefault); err != nil {
		fmt.Fprintln(os.Stderr, "xs:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer, dial xenstore.Dialer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: xs read|write|ls|rm|watch|perms PATH...")
	}
	c, err := xenstore.DialWith(ctx, dial)
	if err != nil {
		return err
	}
	defer c.Close()
	cmd, args := args[0], args[1:]
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
		if len(args)%2 != 0 {
			return fmt.Errorf("write takes PATH VALUE pairs")
		}
		for i := 0; i < len(args); i += 2 {
			if err := c.Write(ctx, args[i], []byte(args[i+1])); err != nil {
				return err
			}
		}
	case "ls":
		root := "/"
		if len(args) > 0 {
			root = args[0]
		}
		return ls(ctx, c, out, root, 0)
	case "rm":
		for _, p := range args {
			if err := c.Rm(ctx, p); err != nil {
				return err
			}
		}
	case "watch":
		fs := flag.NewFlagSet("watch", flag.ContinueOnError)
		n := fs.Int("n", 0, "stop after `N` events (0: never)")
		if len(args) == 0 {
			return fmt.Errorf("watch takes a PATH")
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		w, err := c.Watch(ctx, args[0])
		if err != nil {
			return err
		}
		for i := 0; *n == 0 || i < *n; i++ {
			ev, ok := <-w.C
			if !ok {
				return w.Err()
			}
			fmt.Fprintln(out, ev.Path)
		}
	case "perms":
		if len(args) == 0 {
			return fmt.Errorf("perms takes a PATH")
		}
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
