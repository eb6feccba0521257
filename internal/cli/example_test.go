package cli_test

import (
	"fmt"
	"os"

	"github.com/xensr/xensr/internal/cli"
)

// A command parses its flags before opening anything, and maps its outcome
// to the shared exit codes.
func Example() {
	run := func(args []string) int {
		c := cli.New("hello", "NAME", "Greets NAME.", os.Stdout)
		shout := c.Flags.Bool("shout", false, "greet loudly")
		rest, code, ok := c.ParseN(args, 1, 1)
		if !ok {
			return code
		}
		if *shout {
			fmt.Printf("HELLO, %s!\n", rest[0])
		} else {
			fmt.Printf("hello, %s\n", rest[0])
		}
		return cli.ExitOK
	}
	fmt.Println(run([]string{"-shout", "xen"}))
	fmt.Println(run([]string{"-bogus"}))
	// Output:
	// HELLO, xen!
	// 0
	// hello: flag provided but not defined: -bogus
	// usage: hello [flags] NAME (-h for help)
	// 2
}
