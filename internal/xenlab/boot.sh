#!/usr/bin/env bash
# internal/xenlab/boot.sh DIR XS: boot Xen (XENSR_LAB_XEN=4.17|4.20, see
# flavour.sh) and the lab's dom0 under qemu-system-x86_64 (TCG), with DIR
# shared into dom0 over virtio-9p, and run DIR/dom0-suite.sh there with
# xenstored flavour XS (c or ocaml). The console goes to DIR/serial-XS.log
# (Xen 4.17) or DIR/serial-VER-XS.log (other flavours). Exits non-zero when
# qemu fails or the boot outlives XENSR_LAB_TIMEOUT seconds (default 2400).
set -euo pipefail
DIR=$(cd "$1" && pwd)
XS=${2:-c}
. "$(dirname "$0")/flavour.sh"
CPU=${XENSR_LAB_CPU:-qemu64,+svm,+npt} # +svm,+npt gives Xen HAP: PVH guests and their log-dirty
SMP=${XENSR_LAB_SMP:-2}
MEM=${XENSR_LAB_MEM:-4096}
DOM0_MEM=${XENSR_LAB_DOM0_MEM:-1536M}
TIMEOUT=${XENSR_LAB_TIMEOUT:-2400}
LOG=$DIR/serial-$XS.log
[ "$XEN_VER" = 4.17 ] || LOG=$DIR/serial-$XEN_VER-$XS.log

# XENSR_LAB_XEN_ARGS: more Xen options (e.g. asid=0: tried against the
# guests' deaths under TCG, no effect seen; README, "The lab").
xen_args="console=com1 com1=115200,8n1 dom0_mem=$DOM0_MEM,max:$DOM0_MEM dom0_max_vcpus=$SMP loglvl=all guest_loglvl=all ${XENSR_LAB_XEN_ARGS:-}"
dom0_args="console=hvc0 earlyprintk=xen loglevel=5 xensr.xs=$XS"
qemu=("${XENSR_LAB_QEMU:-qemu-system-x86_64}" -machine pc -accel "tcg,thread=${XENSR_LAB_TCG_THREAD:-multi}" -cpu "$CPU" -smp "$SMP" -m "$MEM"
	-nographic -no-reboot -monitor none -serial stdio
	-kernel "$CACHE/xen" -append "$xen_args"
	-initrd "$CACHE/vmlinuz $dom0_args,$CACHE/dom0.cpio.gz"
	-virtfs "local,path=$DIR,mount_tag=xensr,security_model=none,id=xensr")
# XENSR_LAB_QEMU_ARGS: extra QEMU arguments (word-split), e.g. the private
# link of internal/xenlab/pair.sh.
read -r -a extra <<<"${XENSR_LAB_QEMU_ARGS:-}"
qemu+=("${extra[@]}")

"${qemu[@]}" </dev/null >"$LOG" 2>&1 &
pid=$!
deadline=$((SECONDS + TIMEOUT))
while kill -0 "$pid" 2>/dev/null; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "xenlab: boot (xenstored=$XS) timed out after ${TIMEOUT}s; killing qemu" >&2
		kill "$pid"
		wait "$pid" || true
		exit 124
	fi
	sleep 1
done
wait "$pid"
