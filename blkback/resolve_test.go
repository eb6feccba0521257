package blkback

import (
	"errors"
	"strings"
	"testing"

	"github.com/xensr/xensr/grant"
)

func TestTableResolver(t *testing.T) {
	// Frame 1 of dom 4's table: ref 512+3 grants frame 0xabcde to dom0,
	// ref 512+4 is unused.
	var page []byte
	for i := 0; i < entriesPerFrame; i++ {
		e := grant.EntryV1{}
		if i == 3 {
			e = grant.EntryV1{Flags: grant.TypePermitAccess, Domid: 0, Frame: 0xabcde}
		}
		page = grant.AppendV1(page, e)
	}
	unmapped := 0
	r := TableResolver(func(dom, idx uint32) ([]byte, func() error, error) {
		if dom != 4 || idx != 1 {
			return nil, nil, errors.New("no such frame")
		}
		return page, func() error { unmapped++; return nil }, nil
	})
	if f, err := r(grant.Grant{Domid: 4, Ref: 515}); err != nil || f != 0xabcde {
		t.Fatalf("ref 515: %#x %v", f, err)
	}
	if _, err := r(grant.Grant{Domid: 4, Ref: 516}); err == nil || !strings.Contains(err.Error(), "not permit_access") {
		t.Fatalf("unused entry: %v", err)
	}
	if _, err := r(grant.Grant{Domid: 4, Ref: 3}); err == nil {
		t.Fatal("frame 0 resolved")
	}
	if unmapped != 2 {
		t.Fatalf("%d unmaps for 2 maps", unmapped)
	}
}
