package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/xensr/xensr/stream/image"
)

// fakeBackend writes a guest frame through a "grant mapping": the write
// never reaches log-dirty, as with a real backend in dom0.
type fakeBackend struct {
	f          *fakeDomain
	gfn        uint64
	writes     byte
	quiesced   bool
	unquiesces int
	err        error
	silent     bool // report no frames (the control arm)
	order      *[]string
}

// work is the backend serving a request while the guest runs.
func (b *fakeBackend) work() {
	if b.quiesced {
		return
	}
	b.writes++
	b.f.mem[b.gfn][200] = b.writes // no dirty mark
}

func (b *fakeBackend) Quiesce(ctx context.Context) ([]uint64, error) {
	if b.err != nil {
		return nil, b.err
	}
	b.work() // the request in flight completes
	b.quiesced = true
	*b.order = append(*b.order, "quiesce")
	if b.silent {
		return nil, nil
	}
	return []uint64{b.gfn}, nil
}

func (b *fakeBackend) Unquiesce() error {
	b.quiesced = false
	b.unquiesces++
	*b.order = append(*b.order, "unquiesce")
	return nil
}

// TestSaveQuiescersResend: the write a backend makes through its grant
// mapping when it completes its in-flight request (after the guest is
// suspended), invisible to log-dirty, is in the image only because the save
// sends again the frames the backend reports. The control arm is the same
// backend reporting no frames: the image then carries a stale frame.
func TestSaveQuiescersResend(t *testing.T) {
	for _, report := range []bool{true, false} {
		f := newFakeDomain(2000)
		var order []string
		b := &fakeBackend{f: f, gfn: 1500, order: &order, silent: !report}
		f.onClean = func(f *fakeDomain, call int) { b.work() }
		img, _, s := saveFake(t, f, SaveOptions{Live: true, Policy: RoundsPolicy(2, 50), Quiescers: []Quiescer{b}})
		im, err := parseImage(img)
		if err != nil {
			t.Fatal(err)
		}
		got, want := im.pages[b.gfn][200], f.mem[b.gfn][200]
		if !report {
			if got == want {
				t.Fatalf("control: the image has the backend's last write (%d) though no frame was sent again: the test cannot fail", got)
			}
			continue
		}
		if got != want || b.writes < 2 {
			t.Fatalf("frame %d byte is %d in the image, %d in memory (%d writes)", b.gfn, got, want, b.writes)
		}
		if err := s.Abort(); err != nil {
			t.Fatal(err)
		}
		if b.unquiesces != 1 || f.resumes != 1 || len(order) != 2 {
			t.Errorf("Abort: %d unquiesces, %d resumes, calls %v; want 1, 1, [quiesce unquiesce]", b.unquiesces, f.resumes, order)
		}
	}
}

// TestSaveQuiesceFailure: a backend that cannot quiesce fails the save;
// backends already quiesced serve again and the guest resumes.
func TestSaveQuiesceFailure(t *testing.T) {
	f := newFakeDomain(500)
	var order []string
	ok := &fakeBackend{f: f, gfn: 100, order: &order}
	bad := &fakeBackend{f: f, gfn: 101, order: &order, err: errors.New("ring stuck")}
	s := NewSaver(f, SaveOptions{Config: []byte(testConfig), Quiescers: []Quiescer{ok, bad}})
	_, err := s.Save(context.Background(), discard{})
	var se *SaveError
	if !errors.As(err, &se) || se.Step != "quiesce backend 1" || !se.Resumed {
		t.Fatalf("err %v", err)
	}
	if ok.unquiesces != 1 || bad.unquiesces != 0 || f.resumes != 1 || f.info.Suspended() {
		t.Errorf("unquiesces %d/%d resumes %d suspended %v", ok.unquiesces, bad.unquiesces, f.resumes, f.info.Suspended())
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// versionedDomain is a fake domain that knows its hypervisor.
type versionedDomain struct{ *fakeDomain }

func (versionedDomain) XenVersion() (uint32, uint32, error) { return 4, 20, nil }

// TestSaveAsksTheDomainForXen: with no version in the options, the libxc
// domain header names the domain's hypervisor, not a constant.
func TestSaveAsksTheDomainForXen(t *testing.T) {
	for _, c := range []struct {
		d            Domain
		opt          SaveOptions
		major, minor uint32
	}{
		{versionedDomain{newFakeDomain(50)}, SaveOptions{}, 4, 20},
		{versionedDomain{newFakeDomain(50)}, SaveOptions{XenMajor: 4, XenMinor: 17}, 4, 17}, // the caller's choice wins
		{newFakeDomain(50), SaveOptions{}, 0, 0},
	} {
		var buf bytes.Buffer
		c.opt.Config = []byte(testConfig)
		if _, err := NewSaver(c.d, c.opt).Save(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		sum, err := image.Walk(bytes.NewReader(buf.Bytes()), image.Options{}, func(*image.Item) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%d.%d", c.major, c.minor); sum.XenVersion != want {
			t.Errorf("%T, options %d.%d: header names Xen %s, want %s", c.d, c.opt.XenMajor, c.opt.XenMinor, sum.XenVersion, want)
		}
	}
}
