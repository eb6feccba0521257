#!/bin/busybox sh
# The lab's domU: prints "XENLAB-DOMU counter=N" once a second, so a restored
# or migrated guest can be seen to carry on where it stopped.
#
# It also loads xen-blkfront and watches for virtual disks: for each xvdX
# that appears it reads the disk's first sector, and when that holds
#   XSRLAB-CMD check SECONDS   writes 8 random 64 KiB blocks from 1 MiB on,
#                              keeps their SHA-256 in memory, syncs, drops
#                              the page cache and verifies every block read
#                              back, round after round for SECONDS;
#   XSRLAB-CMD bench MIB       dd-writes MIB MiB from 1 MiB on (fsync), drops
#                              the page cache and dd-reads them back;
# it prints "XENLAB-BLK xvdX ..." lines (see blkback's lab test).
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp 2>/dev/null
for m in $(cat /lib/modules/order 2>/dev/null); do
	insmod "/lib/modules/$m" 2>/dev/null || echo "XENLAB-DOMU: insmod $m failed"
done
echo "XENLAB-DOMU: up, $(nproc) vcpu(s)"

uptime_s() { cut -d. -f1 /proc/uptime; }

# check NAME SECONDS
check() {
	dev=/dev/$1 bs=65536 base=16 blocks=8
	end=$(($(uptime_s) + $2))
	round=0 errs=0
	while [ "$(uptime_s)" -lt "$end" ] && [ -b "$dev" ]; do
		i=0
		while [ $i -lt $blocks ]; do
			dd if=/dev/urandom of=/tmp/blk bs=$bs count=1 2>/dev/null
			eval "sum_$i=$(sha256sum /tmp/blk | cut -c1-64)"
			dd if=/tmp/blk of="$dev" bs=$bs seek=$((base + i)) count=1 conv=notrunc 2>/dev/null ||
				echo "XENLAB-BLK $1 write error round=$round block=$i"
			i=$((i + 1))
		done
		sync
		echo 3 >/proc/sys/vm/drop_caches
		i=0
		while [ $i -lt $blocks ]; do
			got=$(dd if="$dev" bs=$bs skip=$((base + i)) count=1 2>/dev/null | sha256sum | cut -c1-64)
			eval "want=\$sum_$i"
			if [ "$got" != "$want" ]; then
				errs=$((errs + 1))
				echo "XENLAB-BLK $1 BAD round=$round block=$i"
			fi
			i=$((i + 1))
		done
		round=$((round + 1))
		echo "XENLAB-BLK $1 round=$round errors=$errs"
	done
	echo "XENLAB-BLK $1 done rounds=$round errors=$errs"
}

# centis: /proc/uptime in hundredths of a second.
centis() {
	t=$(cut -d' ' -f1 /proc/uptime)
	echo $((${t%.*} * 100 + 1${t#*.} - 100))
}

# bench NAME MIB: busybox's dd prints no rate, so the time is taken here.
bench() {
	t0=$(centis)
	dd if=/dev/zero of="/dev/$1" bs=1M seek=1 count="$2" conv=fsync 2>/dev/null || echo "XENLAB-BLK $1 bench write error"
	t1=$(centis)
	echo 3 >/proc/sys/vm/drop_caches
	t2=$(centis)
	dd if="/dev/$1" of=/dev/null bs=1M skip=1 count="$2" 2>/dev/null || echo "XENLAB-BLK $1 bench read error"
	t3=$(centis)
	echo "XENLAB-BLK $1 bench mib=$2 write_cs=$((t1 - t0)) read_cs=$((t3 - t2))"
	echo "XENLAB-BLK $1 bench done"
}

disk() {
	set -- "$1" $(dd if="/dev/$1" bs=512 count=1 2>/dev/null | tr -d '\000' | head -1)
	echo "XENLAB-BLK $1 appeared: $2 $3 $4"
	case "$2 $3" in
	"XSRLAB-CMD check") check "$1" "$4" ;;
	"XSRLAB-CMD bench") bench "$1" "$4" ;;
	esac
}

agent() {
	seen=
	while :; do
		keep=
		for d in /sys/block/xvd*; do
			[ -e "$d" ] || continue
			n=${d##*/}
			keep="$keep $n"
			case " $seen " in *" $n "*) continue ;; esac
			i=0
			while [ ! -b "/dev/$n" ] && [ $i -lt 10 ]; do sleep 0.2; i=$((i + 1)); done
			disk "$n" &
		done
		seen=$keep
		sleep 1
	done
}
agent &

# xenlab.dirty=N on the kernel command line: rewrite N MiB of a tmpfs file
# with fresh random bytes every second (a memory-dirtying workload for the
# migration lab, internal/xenlab/pair.sh).
for a in $(cat /proc/cmdline); do
	case "$a" in xenlab.dirty=*)
		n=${a#xenlab.dirty=}
		(while :; do dd if=/dev/urandom of=/tmp/dirty bs=1M count="$n" conv=notrunc 2>/dev/null; sleep 1; done) &
		echo "XENLAB-DOMU dirtying $n MiB/s" ;;
	esac
done

i=0
while :; do
	echo "XENLAB-DOMU counter=$i"
	i=$((i + 1))
	sleep 1
done
