package xenstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/xenstoretest"
)

func Example() {
	ctx := context.Background()
	// In dom0: c, err := xenstore.Dial(ctx). Here: an in-memory daemon.
	c, err := xenstore.DialWith(ctx, xenstoretest.NewServer().Dial)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	c.Write(ctx, "/local/domain/3/name", []byte("guest3"))
	err = c.Transaction(ctx, func(tx *xenstore.Tx) error {
		name, err := tx.Read(ctx, "/local/domain/3/name")
		if err != nil {
			return err
		}
		return tx.Write(ctx, "/vm/guest/name", name)
	})
	if err != nil {
		log.Fatal(err)
	}
	v, _ := c.Read(ctx, "/vm/guest/name")
	names, _ := c.Directory(ctx, "/local/domain")
	home, _ := c.GetDomainPath(ctx, 3)
	fmt.Println(string(v), names, home)
	// Output: guest3 [0 3] /local/domain/3
}
