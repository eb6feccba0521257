package xenbus

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/xensr/xensr/xenstore"
	"github.com/xensr/xensr/xenstore/xenstoretest"
)

func TestAddLayout(t *testing.T) {
	ctx := context.Background()
	c, err := xenstore.DialWith(ctx, xenstoretest.NewServer().Dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := Device{Kind: "vbd", BackDomid: 0, FrontDomid: 7, Devid: 51712}
	if d.BackendPath() != "/local/domain/0/backend/vbd/7/51712" || d.FrontendPath() != "/local/domain/7/device/vbd/51712" {
		t.Fatalf("paths %s %s", d.BackendPath(), d.FrontendPath())
	}
	c.Write(ctx, d.FrontendPath()+"/stale", []byte("left over"))
	err = c.Transaction(ctx, func(tx *xenstore.Tx) error {
		return Add(ctx, tx, d, []Entry{{"state", "1"}, {"type", "xensr"}}, []Entry{{"state", "1"}, {"backend-id", "0"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		d.FrontendPath() + "/backend":    d.BackendPath(),
		d.FrontendPath() + "/backend-id": "0",
		d.BackendPath() + "/frontend":    d.FrontendPath(),
		d.BackendPath() + "/type":        "xensr",
	} {
		if v, err := c.Read(ctx, path); err != nil || string(v) != want {
			t.Errorf("%s = %q, %v; want %q", path, v, err, want)
		}
	}
	if ok, _ := c.Exists(ctx, d.FrontendPath()+"/stale"); ok {
		t.Error("a stale frontend node survived Add")
	}
	fp, _ := c.GetPerms(ctx, d.FrontendPath())
	bp, _ := c.GetPerms(ctx, d.BackendPath())
	if !slices.Equal(fp, []xenstore.Perm{{Domain: 7, Access: xenstore.AccessNone}, {Domain: 0, Access: xenstore.AccessRead}}) ||
		!slices.Equal(bp, []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 7, Access: xenstore.AccessRead}}) {
		t.Errorf("perms front %v back %v", fp, bp)
	}
	if st, err := ReadState(ctx, c, d.BackendPath()); st != StateInitialising || err != nil {
		t.Fatalf("state %v %v", st, err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		WriteState(ctx, c, d.FrontendPath(), StateConnected)
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if st, err := WaitState(wctx, c, d.FrontendPath(), func(s State) bool { return s == StateConnected }); err != nil || st != StateConnected {
		t.Fatalf("WaitState: %v %v", st, err)
	}
	if err := Remove(ctx, c, d); err != nil {
		t.Fatal(err)
	}
	if st, err := ReadState(ctx, c, d.FrontendPath()); st != StateClosed || err != nil {
		t.Fatalf("state of a removed device: %v %v", st, err)
	}
}

func TestParseState(t *testing.T) {
	for s := StateUnknown; s <= StateReconfigured; s++ {
		if got, err := ParseState([]byte(s.String())); err == nil {
			t.Fatalf("name %q parsed as %v", s.String(), got)
		}
		if got, err := ParseState([]byte{byte('0' + s)}); err != nil || got != s {
			t.Fatalf("%d: %v %v", s, got, err)
		}
	}
	if _, err := ParseState([]byte("9")); err == nil {
		t.Fatal("state 9 accepted")
	}
}
