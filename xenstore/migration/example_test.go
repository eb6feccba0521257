package migration_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/xensr/xensr/xenstore/migration"
)

func Example() {
	// What C xenstored 4.17 hands over: a socket connection, its watch, nodes.
	st := &migration.State{Header: migration.Header{Version: migration.Version1}, Records: []migration.Record{
		{Body: &migration.Connection{ID: 1, Kind: migration.ConnSocket, SocketFD: 12}, LenPadded: true},
		{Body: &migration.Watch{ConnID: 1, Path: "/vm", Token: "t1"}, LenPadded: true},
		{Body: &migration.Node{Path: "/vm/name", Value: []byte("guest"), Perms: []migration.Perm{{Access: 'n', DomID: 0}, {Access: 'r', DomID: 3}}}, LenPadded: true},
		{Body: &migration.End{}},
	}}
	raw, err := st.Bytes()
	if err != nil {
		log.Fatal(err)
	}
	got, err := migration.ReadState(bytes.NewReader(raw))
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range got.Nodes() {
		fmt.Println(n.Path, string(n.Value), n.Perms)
	}
	for _, w := range got.Watches() {
		fmt.Println("watch", w.Path, w.Token, "on connection", w.ConnID)
	}
	again, _ := got.Bytes()
	fmt.Println(len(raw), bytes.Equal(raw, again))
	// Output:
	// /vm/name guest [n0 r3]
	// watch /vm t1 on connection 1
	// 128 true
}
