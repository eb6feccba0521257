package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-h"}, 0, "usage: xsrblkback"},
		{nil, 2, "usage"},
		{[]string{"5"}, 2, "usage"},
		{[]string{"guest", "/tmp/x"}, 2, "not a guest's domain id"},
		{[]string{"0", "/tmp/x"}, 2, "not a guest's domain id"},
		{[]string{"-vdev", "sda", "5", "/tmp/x"}, 2, "xvda..xvdp"},
		{[]string{"-nosuchflag", "5", "/tmp/x"}, 2, "nosuchflag"},
	} {
		var out, errb bytes.Buffer
		if code := xsrblkback(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.msg)
		}
	}
}

func TestDevice(t *testing.T) {
	d := options{domid: 3, vdev: "xvdb", kind: "vbd"}.device()
	if d.Devid != 51728 || d.BackendPath() != "/local/domain/0/backend/vbd/3/51728" || d.FrontendPath() != "/local/domain/3/device/vbd/51728" {
		t.Fatalf("%+v %s %s", d, d.BackendPath(), d.FrontendPath())
	}
}
