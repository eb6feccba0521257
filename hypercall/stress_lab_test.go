//go:build linux

package hypercall_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/xensr/xensr/hypercall"
	"github.com/xensr/xensr/internal/labtest"
	"github.com/xensr/xensr/privcmd"
)

// A recordingAlloc remembers the memory it hands out, so that the stress
// can go after the very pages that hold the hypercall buffers.
type recordingAlloc struct {
	hypercall.Allocator
	mu   sync.Mutex
	bufs [][]byte
}

func (r *recordingAlloc) Alloc(size int) ([]byte, error) {
	b, err := r.Allocator.Alloc(size)
	if err == nil {
		r.mu.Lock()
		r.bufs = append(r.bufs, b)
		r.mu.Unlock()
	}
	return b, err
}

func (r *recordingAlloc) Free(b []byte) error {
	r.mu.Lock()
	for i := range r.bufs {
		if len(r.bufs[i]) > 0 && &r.bufs[i][0] == &b[0] {
			r.bufs = append(r.bufs[:i], r.bufs[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	return r.Allocator.Free(b)
}

// pages returns the start address of every page of the buffers held now.
func (r *recordingAlloc) pages() []uintptr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var va []uintptr
	for _, b := range r.bufs {
		for off := 0; off < len(b); off += 4096 {
			va = append(va, uintptr(unsafe.Pointer(&b[off])))
		}
	}
	return va
}

// pfnOf reads the page frame behind virtual address va from
// /proc/self/pagemap (0 if the page is not present or the PFN is hidden).
func pfnOf(pm *os.File, va uintptr) uint64 {
	var e [8]byte
	if _, err := pm.ReadAt(e[:], int64(va/4096)*8); err != nil {
		return 0
	}
	v := binary.LittleEndian.Uint64(e[:])
	if v&(1<<63) == 0 {
		return 0
	}
	return v & (1<<55 - 1)
}

// stressCounts is what one arm of the stress measured.
type stressCounts struct {
	calls, faults, retries uint64
	compactions            int
	offlineTries, moved    int            // soft-offline attempts; buffer pages seen at a new frame after one
	offlineErr             string         // the first soft-offline error, if any
	efaultErrs             int            // calls that returned EFAULT to the caller (after retries, or unsafe)
	otherErrs              int            // calls that failed otherwise (only the control arm may)
	firstOther             string         // the first of those errors
	otherKinds             map[string]int // those errors by message
}

// maxOfflines bounds the soft-offlined frames of one arm: each one is lost
// to dom0 for good (16 MiB of its 1.5 GiB).
const maxOfflines = 4096

// stress runs the stress for secs seconds against x, whose pool draws from
// rec: three goroutines issue hypercalls with pool buffers, one compacts
// dom0's memory in a loop (/proc/sys/vm/compact_memory), one soft-offlines
// the very frames behind the buffers (/sys/devices/system/memory/
// soft_offline_page with each buffer page's frame from /proc/self/pagemap),
// which makes the kernel migrate those pages while the calls run.
//
// Other errors fail the test when pinned is set; in the control arm they
// are counted (a buffer moving under Xen can show as another errno: a
// size query that faulted leaves GETHVMCONTEXT an ENOSPC).
func stress(t *testing.T, x *hypercall.Xen, rec *recordingAlloc, id uint32, secs int, pinned bool) stressCounts {
	var c stressCounts
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	stop := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			if err := os.WriteFile("/proc/sys/vm/compact_memory", []byte("1"), 0); err != nil {
				t.Errorf("compact_memory: %v", err)
				return
			}
			c.compactions++
		}
	}()
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) && c.offlineTries < 4*maxOfflines && c.moved < maxOfflines {
			va := rec.pages()
			if len(va) == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			for _, a := range va {
				before := pfnOf(pm, a)
				if before == 0 {
					continue
				}
				c.offlineTries++
				err := os.WriteFile("/sys/devices/system/memory/soft_offline_page", []byte(fmt.Sprintf("%#x", before*4096)), 0)
				if err != nil && c.offlineErr == "" {
					c.offlineErr = err.Error()
				}
				if after := pfnOf(pm, a); after != 0 && after != before {
					c.moved++
				}
			}
		}
	}()
	var efaults, others atomic.Int64
	var firstOther atomic.Value
	var kindsMu sync.Mutex
	c.otherKinds = map[string]int{}
	errs := make(chan error, 4)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			bm := hypercall.NewDirtyBitmap(1 << 16)
			for time.Now().Before(stop) {
				var err error
				switch g {
				case 0:
					_, err = x.GetDomainInfoList(0, 64)
				case 1:
					_, err = x.GetHVMContext(id)
				case 2:
					_, err = x.PeekDirty(id, bm)
					if err != nil && strings.Contains(err.Error(), "operation not supported") {
						err = nil // log-dirty is off: still a hypercall with a buffer
					}
					if _, _, e2 := x.Version(); err == nil {
						err = e2
					}
				}
				if errors.Is(err, syscall.EFAULT) {
					efaults.Add(1) // counted, not fatal: the arms compare these
					continue
				}
				if err != nil && !pinned {
					others.Add(1)
					firstOther.CompareAndSwap(nil, err.Error())
					kindsMu.Lock()
					c.otherKinds[err.Error()]++
					kindsMu.Unlock()
					continue
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.calls, c.faults, c.retries = x.Stats.Calls.Load(), x.Stats.Faults.Load(), x.Stats.Retries.Load()
	c.efaultErrs, c.otherErrs = int(efaults.Load()), int(others.Load())
	if s, ok := firstOther.Load().(string); ok {
		c.firstOther = s
	}
	return c
}

// TestLabCompactionStress runs the same stress twice: with the pool's
// buffers from /dev/xen/hypercall (pinned: the arm under test, where no call
// may see EFAULT and no buffer page may move) and with mlock()ed buffers
// (privcmd.LockedMemory: the control arm, whose pages the kernel may still
// migrate). It reports both arms' EFAULT counts; the control arm must show
// that the stress really moved the pages holding its buffers, or the pinned
// arm's zero would prove nothing.
func TestLabCompactionStress(t *testing.T) {
	labtest.Require(t)
	name := labtest.CreateGuest(t, labtest.GuestPVH) // fresh: a guest that had log-dirty on (TestLabLogDirtyPVH) died under the stress (lab, 2026-12-02)
	id := domid(t, name)
	secs := 20
	if s, err := strconv.Atoi(os.Getenv("XENSR_STRESS_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	run := func(arm string, a hypercall.Allocator, pinned bool) stressCounts {
		dev, err := privcmd.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		rec := &recordingAlloc{Allocator: a}
		x := hypercall.New(dev, hypercall.NewPool(rec))
		if _, err := x.Probe(); err != nil {
			t.Fatalf("%s: %v", arm, err)
		}
		c := stress(t, x, rec, id, secs, pinned)
		if err := x.Close(); err != nil {
			t.Errorf("%s: Close: %v", arm, err)
		}
		t.Logf("STRESS %s %d s: %d hypercalls, %d EFAULT (%d retried, %d returned), %d other errors (first: %q), %d compactions, %d soft-offlines of buffer pages, %d buffer pages moved (first offline error: %q)",
			arm, secs, c.calls, c.faults, c.retries, c.efaultErrs, c.otherErrs, c.firstOther, c.compactions, c.offlineTries, c.moved, c.offlineErr)
		for msg, n := range c.otherKinds {
			t.Logf("STRESS %s: %d x %s", arm, n, msg)
		}
		if c.calls < 100 || c.compactions == 0 || c.offlineTries == 0 {
			t.Errorf("%s: stress too light: %d calls, %d compactions, %d soft-offlines", arm, c.calls, c.compactions, c.offlineTries)
		}
		return c
	}
	bd, err := privcmd.OpenBuffers()
	if err != nil {
		t.Fatalf("lab dom0 has /dev/xen/hypercall: %v", err)
	}
	defer bd.Close()
	pinned := run("pinned", bd, true)
	locked := run("mlock", privcmd.LockedMemory{}, false)
	if pinned.faults != 0 || pinned.efaultErrs != 0 {
		t.Errorf("%d EFAULTs with pinned buffers", pinned.faults)
	}
	if pinned.moved != 0 {
		t.Errorf("%d pinned buffer pages moved to another frame", pinned.moved)
	}
	if locked.moved == 0 {
		t.Errorf("control arm: no mlocked buffer page was moved, so the stress proves nothing about pinning")
	}
	t.Logf("STRESS summary: pinned %d EFAULT in %d calls (%d pages moved); mlock %d EFAULT in %d calls (%d pages moved, %d other errors)",
		pinned.faults, pinned.calls, pinned.moved, locked.faults, locked.calls, locked.moved, locked.otherErrs)
}
