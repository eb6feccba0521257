package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/xensr/xensr/migrate"
)

// Flags are the command-line options of a network migration, shared by the
// sending command (examples/xsrsave -live -to HOST:PORT) and the receiving
// one (examples/xsrrestore -listen :PORT). Register them on a FlagSet,
// parse, then build a Sender or Receiver from them.
type Flags struct {
	Encodings string        // comma-separated, in order of preference
	RateMiB   float64       // sender: MiB/s cap on the wire; 0 none
	Policy    string        // sender: "xl" (migrate.DefaultPolicy) or "rate" (RatePolicy)
	Downtime  time.Duration // sender: RatePolicy's target downtime
	Cert, Key string        // PEM certificate and key of this end (TLS)
	CA        string        // PEM CA bundle that signs the other end (TLS)
	Once      bool          // receiver: return after one migration
}

// Register adds the flags to fs with their defaults.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Encodings, "encodings", strings.Join(DefaultEncodings, ","), "stream encodings, in order of preference (zstd, pack, raw)")
	fs.Float64Var(&f.RateMiB, "rate", 0, "bandwidth limit in MiB/s (sender; 0: none)")
	fs.StringVar(&f.Policy, "policy", "xl", "precopy policy: xl (5 rounds or fewer than 50 dirty pages) or rate (dirty rate and bandwidth)")
	fs.DurationVar(&f.Downtime, "downtime", 300*time.Millisecond, "target downtime of -policy rate")
	fs.StringVar(&f.Cert, "tls-cert", "", "PEM certificate of this end: use TLS")
	fs.StringVar(&f.Key, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&f.CA, "tls-ca", "", "PEM CA certificates that sign the other end (the receiver then requires client certificates)")
	fs.BoolVar(&f.Once, "once", false, "receiver: exit after one migration")
}

func (f *Flags) encodings() ([]string, error) {
	var encs []string
	for _, e := range strings.Split(f.Encodings, ",") {
		e = strings.TrimSpace(e)
		switch e {
		case EncodingRaw, EncodingPack, EncodingZstd:
			encs = append(encs, e)
		default:
			return nil, fmt.Errorf("unknown encoding %q (want %s, %s or %s)", e, EncodingZstd, EncodingPack, EncodingRaw)
		}
	}
	return encs, nil
}

// PrecopyPolicy returns the policy -policy names.
func (f *Flags) PrecopyPolicy() (migrate.Policy, error) {
	switch f.Policy {
	case "", "xl":
		return migrate.DefaultPolicy, nil
	case "rate":
		return RatePolicy(RateOptions{TargetDowntime: f.Downtime, Bandwidth: f.RateMiB * (1 << 20)}), nil
	}
	return nil, fmt.Errorf("unknown precopy policy %q (want xl or rate)", f.Policy)
}

// TLS returns the TLS configuration of this end, or nil for plain TCP when
// no certificate or CA is given. A server needs -tls-cert and -tls-key;
// with -tls-ca it requires client certificates signed by it. A client
// verifies the server against -tls-ca (the system roots without it) and
// presents -tls-cert if given; serverName is the name (or address) checked
// in the server's certificate.
func (f *Flags) TLS(server bool, serverName string) (*tls.Config, error) {
	if f.Cert == "" && f.Key == "" && f.CA == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	if f.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	} else if server {
		return nil, errors.New("a TLS receiver needs -tls-cert and -tls-key")
	}
	var pool *x509.CertPool
	if f.CA != "" {
		b, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificate", f.CA)
		}
	}
	if server {
		if pool != nil {
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	} else {
		cfg.RootCAs = pool
		if host, _, err := net.SplitHostPort(serverName); err == nil {
			serverName = host
		}
		cfg.ServerName = serverName
	}
	return cfg, nil
}

// Sender returns a Sender configured by the flags.
func (f *Flags) Sender() (*Sender, error) {
	encs, err := f.encodings()
	if err != nil {
		return nil, err
	}
	return &Sender{Encodings: encs, RateLimit: f.RateMiB * (1 << 20)}, nil
}

// Receiver returns a Receiver of t configured by the flags.
func (f *Flags) Receiver(t Target) (*Receiver, error) {
	encs, err := f.encodings()
	if err != nil {
		return nil, err
	}
	return &Receiver{Target: t, Encodings: encs}, nil
}

// Check validates the flags without touching any file or device: the
// encodings, the policy and which TLS files go together. Commands call it
// right after parsing, to report a usage error.
func (f *Flags) Check() error {
	if _, err := f.encodings(); err != nil {
		return err
	}
	if _, err := f.PrecopyPolicy(); err != nil {
		return err
	}
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if f.RateMiB < 0 {
		return fmt.Errorf("-rate %v: negative", f.RateMiB)
	}
	return nil
}
