// Package cli is the one convention every command in examples/ follows, so
// that scripts can rely on all of them alike:
//
//   - flags are parsed before any device or file is opened;
//   - -h and --help print the usage, with the arguments, and exit 0;
//   - a usage error (bad flag, wrong arguments) exits 2, a runtime error
//     exits 1, and both are reported on stderr as "NAME: message";
//   - subcommands have their own flag sets (Dispatch);
//   - a command reading standard input says so when it is a terminal
//     (Input), instead of waiting silently;
//   - -json output uses snake_case names and enum names, never numbers
//     (WriteJSON only indents; the names are the struct tags' job);
//   - progress on long work goes to stderr: a live line on a terminal,
//     plain periodic lines otherwise, nothing with -q (Progress).
//
// Library logic never lives in a command: a command parses, opens and
// prints; the packages do the work.
package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes shared by every command.
const (
	ExitOK      = 0 // success, and -h
	ExitFailure = 1 // a runtime error: bad input, a failed hypercall, ...
	ExitUsage   = 2 // a usage error: unknown flag, wrong arguments
)

// A Command is one command (or subcommand) with its flags.
type Command struct {
	Name    string // as typed, e.g. "xsrpack pack"
	Args    string // the arguments after the flags, e.g. "FILE|-"
	Summary string // what the command does, one or more sentences
	Flags   *flag.FlagSet
	Stderr  io.Writer
}

// New returns a Command whose flag set reports errors instead of exiting.
func New(name, args, summary string, stderr io.Writer) *Command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &Command{Name: name, Args: args, Summary: summary, Flags: fs, Stderr: stderr}
}

// Usage prints the usage line, the summary and the flags to Stderr.
func (c *Command) Usage() {
	fmt.Fprintf(c.Stderr, "usage: %s", c.Name)
	hasFlags := false
	c.Flags.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(c.Stderr, " [flags]")
	}
	if c.Args != "" {
		fmt.Fprintf(c.Stderr, " %s", c.Args)
	}
	fmt.Fprintln(c.Stderr)
	if c.Summary != "" {
		fmt.Fprintf(c.Stderr, "\n%s\n", c.Summary)
	}
	if hasFlags {
		fmt.Fprintln(c.Stderr, "\nflags:")
		c.Flags.SetOutput(c.Stderr)
		c.Flags.PrintDefaults()
		c.Flags.SetOutput(io.Discard)
	}
}

// Parse parses args. When ok is false the command must return code at once:
// 0 after -h/--help (usage printed), 2 after a bad flag (error and usage
// printed). Otherwise rest holds the arguments after the flags.
func (c *Command) Parse(args []string) (rest []string, code int, ok bool) {
	err := c.Flags.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.Usage()
		return nil, ExitOK, false
	}
	if err != nil {
		return nil, c.UsageError("%v", err), false
	}
	return c.Flags.Args(), ExitOK, true
}

// ParseN is Parse that also requires between min and max arguments after
// the flags (max < 0: no upper bound).
func (c *Command) ParseN(args []string, min, max int) (rest []string, code int, ok bool) {
	rest, code, ok = c.Parse(args)
	if !ok {
		return nil, code, false
	}
	switch {
	case len(rest) < min:
		return nil, c.UsageError("missing argument: want %s", c.Args), false
	case max >= 0 && len(rest) > max:
		return nil, c.UsageError("unexpected argument %q", rest[max]), false
	}
	return rest, ExitOK, true
}

// UsageError reports a usage error with the usage line and returns 2.
func (c *Command) UsageError(format string, a ...any) int {
	fmt.Fprintf(c.Stderr, "%s: %s\n", c.Name, fmt.Sprintf(format, a...))
	fmt.Fprintf(c.Stderr, "usage: %s [flags] %s (-h for help)\n", c.Name, c.Args)
	return ExitUsage
}

// Fail reports a runtime error and returns 1.
func (c *Command) Fail(err error) int {
	fmt.Fprintf(c.Stderr, "%s: %v\n", c.Name, err)
	return ExitFailure
}

// A Sub is one subcommand of a Dispatch.
type Sub struct {
	Name    string
	Summary string
	Run     func(args []string) int
}

// Dispatch runs the subcommand named by args[0]. With no argument, an
// unknown name, or -h/--help/help it lists the subcommands: exit 0 for a
// request for help, 2 otherwise.
func Dispatch(name string, subs []Sub, args []string, stderr io.Writer) int {
	list := func() {
		fmt.Fprintf(stderr, "usage: %s COMMAND [flags] [args]\n\ncommands:\n", name)
		for _, s := range subs {
			fmt.Fprintf(stderr, "  %-10s %s\n", s.Name, s.Summary)
		}
		fmt.Fprintf(stderr, "\n'%s COMMAND -h' describes one command.\n", name)
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "%s: missing command\n", name)
		list()
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		list()
		return ExitOK
	}
	for _, s := range subs {
		if s.Name == args[0] {
			return s.Run(args[1:])
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n", name, args[0])
	list()
	return ExitUsage
}

// IsTerminal reports whether f is a character device (a terminal), without
// any ioctl, so it is portable.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Input opens name for reading; "-" is stdin. When stdin is a terminal the
// command says on stderr that it is waiting for input there.
func Input(name string, stdin *os.File, stderr io.Writer, cmd string) (io.ReadCloser, error) {
	if name == "-" {
		if IsTerminal(stdin) {
			fmt.Fprintf(stderr, "%s: reading from standard input (a terminal); end with Ctrl-D, or give a FILE\n", cmd)
		}
		return io.NopCloser(stdin), nil
	}
	return os.Open(name)
}

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Bytes formats a byte count for people (KiB/MiB/GiB, two decimals).
func Bytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.2f", n), ".00") + " " + units[i]
}
