package transport

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/xensr/xensr/migrate"
)

func parseFlags(t *testing.T, args ...string) *Flags {
	t.Helper()
	f := &Flags{}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFlags(t *testing.T) {
	f := parseFlags(t)
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	s, err := f.Sender()
	if err != nil || len(s.Encodings) != 3 || s.Encodings[0] != EncodingZstd || s.RateLimit != 0 {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	if cfg, err := f.TLS(true, ""); cfg != nil || err != nil {
		t.Fatalf("TLS without files: %v %v", cfg, err)
	}
	f = parseFlags(t, "-encodings", "raw", "-rate", "2.5", "-policy", "rate")
	s, _ = f.Sender()
	if len(s.Encodings) != 1 || s.Encodings[0] != EncodingRaw || s.RateLimit != 2.5*(1<<20) {
		t.Fatalf("%+v", s)
	}
	if p, err := f.PrecopyPolicy(); err != nil || p == nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"-encodings", "gzip"}, {"-policy", "fast"}, {"-tls-cert", "x"}} {
		f := parseFlags(t, bad...)
		_, e1 := f.Sender()
		_, e2 := f.PrecopyPolicy()
		_, e3 := f.TLS(true, "")
		if e1 == nil && e2 == nil && e3 == nil {
			t.Errorf("%q accepted", bad)
		}
		if err := f.Check(); err == nil {
			t.Errorf("Check accepted %q", bad)
		}
	}
}

// TestFlagsTLS writes a CA and certificates as PEM files, builds both
// ends' TLS from the flags, and migrates over it.
func TestFlagsTLS(t *testing.T) {
	srv, cli := testTLS(t)
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM := func(name string, k any) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	ca := write("ca.pem", "CERTIFICATE", testCADER)
	sc := write("srv.pem", "CERTIFICATE", srv.Certificates[0].Certificate[0])
	sk := keyPEM("srv.key", srv.Certificates[0].PrivateKey)
	cc := write("cli.pem", "CERTIFICATE", cli.Certificates[0].Certificate[0])
	ck := keyPEM("cli.key", cli.Certificates[0].PrivateKey)

	sf := parseFlags(t, "-tls-cert", sc, "-tls-key", sk, "-tls-ca", ca)
	cf := parseFlags(t, "-tls-cert", cc, "-tls-key", ck, "-tls-ca", ca, "-encodings", "zstd")
	scfg, err := sf.TLS(true, "")
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := cf.TLS(false, "127.0.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	tgt := &testTarget{}
	r, _ := sf.Receiver(tgt)
	addr, results := serve(t, r, scfg)
	s, _ := cf.Sender()
	if _, err := s.Send(context.Background(), dial(t, addr, ccfg), newTestDomain(64), "g", migrate.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if o := result(t, results); o.err != nil || o.res.Encoding != EncodingZstd {
		t.Fatalf("%+v", o)
	}
}
