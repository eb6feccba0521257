package hypercall

import (
	"fmt"
	"slices"
)

// XEN_DOMCTL_setvcpuaffinity and struct xen_domctl_vcpuaffinity, with its
// two struct xenctl_bitmap.
const (
	domctlSetVCPUAffinity = 9
	vcpuAffVCPU           = 0
	vcpuAffFlags          = 4
	vcpuAffHard           = 8
	vcpuAffSoft           = 24
	ctlBitmapBuf          = 0
	ctlBitmapNrBits       = 8
	vcpuAffinityHard      = 1 << 0 // XEN_VCPUAFFINITY_HARD
	vcpuAffinitySoft      = 1 << 1 // XEN_VCPUAFFINITY_SOFT
)

// MaxCPUMapCPU bounds the physical CPU numbers a CPUMap takes: Xen's
// NR_CPUS is at most 16383 on x86.
const MaxCPUMapCPU = 16383

// CPUMap is a set of physical CPUs as Xen's struct xenctl_bitmap holds it:
// bit n%8 of byte n/8 stands for CPU n.
type CPUMap []byte

// CPUMapOf returns the map of cpus; a number beyond MaxCPUMapCPU is an
// error.
func CPUMapOf(cpus ...int) (CPUMap, error) {
	var m CPUMap
	for _, c := range cpus {
		if c < 0 || c > MaxCPUMapCPU {
			return nil, fmt.Errorf("hypercall: cpu %d outside 0..%d", c, MaxCPUMapCPU)
		}
		if need := c/8 + 1; len(m) < need {
			m = append(m, make([]byte, need-len(m))...)
		}
		m[c/8] |= 1 << (c % 8)
	}
	if m == nil {
		m = CPUMap{}
	}
	return m, nil
}

// CPUs lists the CPUs in m in increasing order.
func (m CPUMap) CPUs() []int {
	var c []int
	for i, b := range m {
		for j := 0; j < 8; j++ {
			if b&(1<<j) != 0 {
				c = append(c, 8*i+j)
			}
		}
	}
	return c
}

// SetVCPUAffinity sets the hard affinity (the physical CPUs vcpu may run
// on) and the soft affinity (the ones it prefers) of one vCPU
// (XEN_DOMCTL_setvcpuaffinity), as libxl_set_vcpuaffinity does; a nil map
// leaves that affinity as it was. It returns the effective maps Xen
// reports, as long as the maps given: the hard map within the CPUs of the
// domain's cpupool, the soft one within that.
func (x *Xen) SetVCPUAffinity(dom, vcpu uint32, hard, soft CPUMap) (effHard, effSoft CPUMap, err error) {
	if hard == nil && soft == nil {
		return nil, nil, nil
	}
	var flags uint32
	var bufs [2]Buf
	maps := [2]CPUMap{hard, soft}
	for i, m := range maps {
		if m == nil {
			continue
		}
		flags |= [2]uint32{vcpuAffinityHard, vcpuAffinitySoft}[i]
		// A map of no CPU still goes as one byte (Xen copies whole
		// bytes of nr_bits).
		if bufs[i], err = x.Pool.Get(max(len(m), 1), InOut); err != nil {
			return nil, nil, err
		}
		defer bufs[i].Free()
		copy(bufs[i].Bytes(), m)
	}
	err = x.domctl("setvcpuaffinity", domctlSetVCPUAffinity, dom, Unsafe, func(u []byte) {
		le.PutUint32(u[vcpuAffVCPU:], vcpu)
		le.PutUint32(u[vcpuAffFlags:], flags)
		for i, off := range [2]int{vcpuAffHard, vcpuAffSoft} {
			if maps[i] != nil {
				le.PutUint64(u[off+ctlBitmapBuf:], bufs[i].Addr())
				le.PutUint32(u[off+ctlBitmapNrBits:], uint32(8*len(bufs[i].Bytes())))
			}
		}
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	var eff [2]CPUMap
	for i, m := range maps {
		if m != nil {
			eff[i] = slices.Clone(CPUMap(bufs[i].Bytes()))
		}
	}
	return eff[0], eff[1], nil
}
