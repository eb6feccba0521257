//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Domctl commands and sub-operations used here (xen/include/public/domctl.h
// of Xen 4.17).
const (
	domctlDestroyDomain     = 2
	domctlGetDomainInfo     = 5
	domctlShadowOp          = 10
	domctlSetVCPUContext    = 12
	domctlGetVCPUContext    = 13
	domctlResumeDomain      = 27
	domctlGetHVMContext     = 33
	domctlGetTSCInfo        = 59
	domctlGetPageFrameInfo3 = 61
	domctlGetCPUPolicy      = 82

	shadowOpOff            = 0
	shadowOpEnableLogDirty = 2
	shadowOpClean          = 11

	xenmemMaximumGPFN = 14
	hvmopGetParam     = 1
	hvmParamCallback  = 0

	vcpuContextSize = 5168 // sizeof(vcpu_guest_context_t), x86_64
	vcpuContextRAX  = 600  // offsetof(user_regs) 520 + offsetof(rax) 80
)

// xenDomain implements Domain with privcmd hypercalls and xenstore.
type xenDomain struct {
	id      uint32
	pc      *privcmd
	xs      *xsConn
	bitmap  []byte // hypercall buffer for the dirty bitmap
	pfnBuf  []byte // hypercall buffer for getpageframeinfo3
	mapErrs []int32
	// SuspendTimeout bounds the wait for the guest to suspend itself.
	SuspendTimeout time.Duration
	logf           func(string, ...any)
}

func openXenDomain(id uint32) (*xenDomain, error) {
	pc, err := openPrivcmd()
	if err != nil {
		return nil, err
	}
	xs, err := dialXenstore()
	if err != nil {
		pc.Close()
		return nil, err
	}
	d := &xenDomain{id: id, pc: pc, xs: xs, SuspendTimeout: 60 * time.Second, mapErrs: make([]int32, maxBatch),
		logf: func(string, ...any) {}}
	if d.pfnBuf, err = pc.alloc(8 * maxBatch); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *xenDomain) Close() error {
	d.xs.Close()
	return d.pc.Close()
}

func (d *xenDomain) Info() (DomainInfo, error) {
	u, err := d.pc.domctl(domctlGetDomainInfo, d.id, nil)
	if err != nil {
		return DomainInfo{}, err
	}
	if got := uint32(le.Uint16(u[0:])); got != d.id {
		return DomainInfo{}, fmt.Errorf("domain %d does not exist (next is %d)", d.id, got)
	}
	f := le.Uint32(u[4:])
	i := DomainInfo{
		ID:             d.id,
		Dying:          f&(1<<0) != 0,
		HVM:            f&(1<<1) != 0,
		Shutdown:       f&(1<<2) != 0,
		Paused:         f&(1<<3) != 0,
		HAP:            f&(1<<8) != 0,
		ShutdownReason: f >> 16 & 0xff,
		TotPages:       le.Uint64(u[8:]),
		MaxPages:       le.Uint64(u[16:]),
		MaxVCPUID:      le.Uint32(u[68:]),
	}
	copy(i.Handle[:], u[76:92])
	return i, nil
}

func (d *xenDomain) MaxGPFN() (uint64, error) {
	b := d.pc.small[:8]
	clear(b)
	le.PutUint16(b, uint16(d.id))
	v, err := d.pc.hypercall(hypercallMemoryOp, xenmemMaximumGPFN, addr(b))
	if err != nil {
		return 0, fmt.Errorf("XENMEM_maximum_gpfn: %w", err)
	}
	return v, nil
}

func (d *xenDomain) controlPath() string {
	return fmt.Sprintf("/local/domain/%d/control/shutdown", d.id)
}

// Suspend asks the guest, through its xenstore control node, to suspend
// itself (as libxl does for PVH and PV-on-HVM guests), and waits until Xen
// reports it shut down for suspend.
func (d *xenDomain) Suspend() error {
	if err := d.xs.Write(d.controlPath(), "suspend"); err != nil {
		return fmt.Errorf("request suspend: %w", err)
	}
	deadline := time.Now().Add(d.SuspendTimeout)
	for {
		i, err := d.Info()
		if err != nil {
			return err
		}
		if i.Suspended() {
			return nil
		}
		if i.Shutdown {
			return fmt.Errorf("domain shut down with reason %d instead of suspending", i.ShutdownReason)
		}
		if time.Now().After(deadline) {
			// Withdraw an unacknowledged request so a late guest does not
			// suspend after we gave up.
			if v, err := d.xs.Read(d.controlPath()); err == nil && v == "suspend" {
				d.xs.Write(d.controlPath(), "")
			}
			return fmt.Errorf("guest did not suspend within %v", d.SuspendTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Resume cancels the suspend: the guest's SCHEDOP_shutdown returns 1
// ("cancelled"), so it keeps its event channels and rings, then the domain
// runs again, and xenstored is told it is back.
func (d *xenDomain) Resume() error {
	i, err := d.Info()
	if err != nil {
		return err
	}
	if !i.Suspended() {
		return fmt.Errorf("domain %d is not suspended (shutdown=%v reason=%d)", d.id, i.Shutdown, i.ShutdownReason)
	}
	if cb, err := d.HVMParam(hvmParamCallback); err == nil && cb != 0 {
		if err := d.setSuspendReturn(1); err != nil {
			return err
		}
	}
	if _, err := d.pc.domctl(domctlResumeDomain, d.id, nil); err != nil {
		return err
	}
	if err := d.xs.Resume(d.id); err != nil {
		return fmt.Errorf("xenstore resume: %w", err)
	}
	return nil
}

// setSuspendReturn sets vCPU0's rax, the return value of its pending
// SCHEDOP_shutdown(SHUTDOWN_suspend).
func (d *xenDomain) setSuspendReturn(v uint64) error {
	buf, err := d.pc.alloc(vcpuContextSize)
	if err != nil {
		return err
	}
	defer d.pc.free(buf)
	if _, err := d.pc.domctl(domctlGetVCPUContext, d.id, func(u []byte) {
		le.PutUint64(u[8:], addr(buf))
	}); err != nil {
		return err
	}
	le.PutUint64(buf[vcpuContextRAX:], v)
	_, err = d.pc.domctl(domctlSetVCPUContext, d.id, func(u []byte) {
		le.PutUint64(u[8:], addr(buf))
	})
	return err
}

func (d *xenDomain) shadowOp(op uint32, bitmap []byte, pages uint64) ([]byte, error) {
	return d.pc.domctl(domctlShadowOp, d.id, func(u []byte) {
		le.PutUint32(u[0:], op)
		if bitmap != nil {
			le.PutUint64(u[16:], addr(bitmap))
		}
		le.PutUint64(u[24:], pages)
	})
}

func (d *xenDomain) EnableLogDirty() error {
	if _, err := d.shadowOp(shadowOpEnableLogDirty, nil, 0); err != nil {
		// libxc's juggling: log-dirty may be on already for VRAM tracking.
		if _, e2 := d.shadowOp(shadowOpOff, nil, 0); e2 != nil {
			return err
		}
		if _, err = d.shadowOp(shadowOpEnableLogDirty, nil, 0); err != nil {
			return err
		}
	}
	return nil
}

func (d *xenDomain) DisableLogDirty() error {
	_, err := d.shadowOp(shadowOpOff, nil, 0)
	return err
}

func (d *xenDomain) CleanDirty(bm *Bitmap) (uint64, error) {
	n := int(bm.Len+63) / 64 * 8
	if len(d.bitmap) < n {
		if d.bitmap != nil {
			d.pc.free(d.bitmap)
		}
		b, err := d.pc.alloc(n)
		if err != nil {
			return 0, err
		}
		d.bitmap = b
	}
	u, err := d.shadowOp(shadowOpClean, d.bitmap, bm.Len)
	if err != nil {
		return 0, err
	}
	if got := le.Uint64(u[24:]); got != bm.Len {
		return 0, fmt.Errorf("log-dirty clean covered %d frames, want %d", got, bm.Len)
	}
	for i := range bm.Words {
		bm.Words[i] = le.Uint64(d.bitmap[8*i:])
	}
	bm.trim()
	return bm.Count(), nil
}

func (d *xenDomain) PageTypes(pfns []uint64, types []uint32) error {
	arr := d.pfnBuf[:8*len(pfns)]
	for i, p := range pfns {
		le.PutUint64(arr[8*i:], p)
	}
	if _, err := d.pc.domctl(domctlGetPageFrameInfo3, d.id, func(u []byte) {
		le.PutUint64(u[0:], uint64(len(pfns)))
		le.PutUint64(u[8:], addr(arr))
	}); err != nil {
		return err
	}
	for i := range pfns {
		types[i] = uint32(le.Uint64(arr[8*i:])) & PageTypeMask
	}
	return nil
}

func (d *xenDomain) MapPages(pfns []uint64) (PageMap, error) {
	return d.pc.mapForeign(d.id, pfns, d.mapErrs)
}

func (d *xenDomain) HVMContext() ([]byte, error) {
	u, err := d.pc.domctl(domctlGetHVMContext, d.id, nil)
	if err != nil {
		return nil, err
	}
	size := le.Uint32(u[0:])
	if size == 0 || size > 1<<24 {
		return nil, fmt.Errorf("implausible HVM context size %d", size)
	}
	buf, err := d.pc.alloc(int(size))
	if err != nil {
		return nil, err
	}
	defer d.pc.free(buf)
	u, err = d.pc.domctl(domctlGetHVMContext, d.id, func(u []byte) {
		le.PutUint32(u[0:], size)
		le.PutUint64(u[8:], addr(buf))
	})
	if err != nil {
		return nil, err
	}
	n := le.Uint32(u[0:])
	if n > size {
		return nil, fmt.Errorf("HVM context grew to %d bytes", n)
	}
	return append([]byte(nil), buf[:n]...), nil
}

func (d *xenDomain) HVMParam(index uint32) (uint64, error) {
	b := d.pc.small[:16]
	clear(b)
	le.PutUint16(b[0:], uint16(d.id))
	le.PutUint32(b[4:], index)
	if _, err := d.pc.hypercall(hypercallHVMOp, hvmopGetParam, addr(b)); err != nil {
		return 0, fmt.Errorf("HVMOP_get_param %d: %w", index, err)
	}
	return le.Uint64(b[8:]), nil
}

func (d *xenDomain) CPUPolicy() ([]byte, []byte, error) {
	u, err := d.pc.domctl(domctlGetCPUPolicy, d.id, nil)
	if err != nil {
		return nil, nil, err
	}
	nl, nm := le.Uint32(u[0:]), le.Uint32(u[4:])
	if nl > 1<<16 || nm > 1<<16 {
		return nil, nil, fmt.Errorf("implausible cpu policy size %d leaves %d msrs", nl, nm)
	}
	leaves, err := d.pc.alloc(int(nl)*24 + 8)
	if err != nil {
		return nil, nil, err
	}
	defer d.pc.free(leaves)
	msrs, err := d.pc.alloc(int(nm)*16 + 8)
	if err != nil {
		return nil, nil, err
	}
	defer d.pc.free(msrs)
	u, err = d.pc.domctl(domctlGetCPUPolicy, d.id, func(u []byte) {
		le.PutUint32(u[0:], nl)
		le.PutUint32(u[4:], nm)
		le.PutUint64(u[8:], addr(leaves))
		le.PutUint64(u[16:], addr(msrs))
	})
	if err != nil {
		return nil, nil, err
	}
	gl, gm := le.Uint32(u[0:]), le.Uint32(u[4:])
	if gl > nl || gm > nm {
		return nil, nil, fmt.Errorf("cpu policy grew: %d/%d leaves, %d/%d msrs", gl, nl, gm, nm)
	}
	return append([]byte(nil), leaves[:gl*24]...), append([]byte(nil), msrs[:gm*16]...), nil
}

func (d *xenDomain) TSCInfo() (TSCInfo, error) {
	u, err := d.pc.domctl(domctlGetTSCInfo, d.id, nil)
	if err != nil {
		return TSCInfo{}, err
	}
	return TSCInfo{Mode: le.Uint32(u[0:]), KHz: le.Uint32(u[4:]), Incarnation: le.Uint32(u[8:]), Nsec: le.Uint64(u[16:])}, nil
}

// Destroy destroys the domain and removes what the toolstack kept about it:
// its xenstore directories, its backends in dom0 and libxl's userdata files.
func (d *xenDomain) Destroy() error {
	info, _ := d.Info()
	uuid := formatUUID(info.Handle)
	var err error
	for try := 0; try < 100; try++ {
		_, err = d.pc.domctl(domctlDestroyDomain, d.id, nil)
		if !errors.Is(err, unix.EAGAIN) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	paths := []string{
		fmt.Sprintf("/local/domain/%d", d.id),
		fmt.Sprintf("/libxl/%d", d.id),
		"/vm/" + uuid,
	}
	if kinds, err := d.xs.Directory("/local/domain/0/backend"); err == nil {
		for _, k := range kinds {
			paths = append(paths, fmt.Sprintf("/local/domain/0/backend/%s/%d", k, d.id))
		}
	}
	for _, p := range paths {
		d.xs.Remove(p) // absent paths are fine
	}
	files, _ := filepath.Glob(fmt.Sprintf("/var/lib/xen/userdata-d.%d.%s.*", d.id, uuid))
	for _, f := range files {
		os.Remove(f)
	}
	return nil
}

func formatUUID(h [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// domainConfig returns the libxl domain configuration xl keeps for the
// domain (its userdata file), which `xl restore` needs in the xl header.
func domainConfig(id uint32, handle [16]byte) ([]byte, error) {
	path := fmt.Sprintf("/var/lib/xen/userdata-d.%d.%s.libxl-json", id, formatUUID(handle))
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("domain configuration: %w", err)
	}
	return prepareConfig(b)
}
