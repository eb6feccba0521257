#!/bin/busybox sh
# /init of the lab's dom0. It starts the Xen daemons, mounts the host folder
# shared over virtio-9p (tag "xensr") at /mnt/io, runs /mnt/io/dom0-suite.sh
# there and powers off. Kernel command line: xensr.xs=c|ocaml picks xenstored.
# /etc/xensr-lab (written by build.sh) names the flavour: XENSR_LAB_XEN (4.17
# or 4.20) and XENLIB, where that Xen's tools live.
/bin/busybox mkdir -p /proc /sys /dev /run /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox --install -s
XENSR_LAB_XEN=4.17 XENLIB=/usr/lib/xen-4.17
. /etc/xensr-lab
export XENSR_LAB_XEN
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$XENLIB/bin HOME=/root
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mkdir -p /run/xen /run/xenstored /run/lock /var/log/xen/console /var/lib/xen /var/lib/xenstored
exec </dev/console >/dev/console 2>&1
echo "XENSR-LAB: dom0 $(uname -r) up, Xen $XENSR_LAB_XEN userland"

XS=c
for a in $(cat /proc/cmdline); do
	case "$a" in xensr.xs=*) XS=${a#xensr.xs=} ;; esac
done
for m in $(cat /lib/xenlab-modules/order); do
	insmod /lib/xenlab-modules/$m || echo "XENSR-LAB: insmod $m failed"
done
mkdir -p /proc/xen
mount -t xenfs xenfs /proc/xen
mdev -s 2>/dev/null

if [ "$XS" = ocaml ]; then
	oxenstored --pid-file /run/xen/xenstored.pid || echo "XENSR-LAB: oxenstored failed"
else
	xenstored --pid-file /run/xen/xenstored.pid || echo "XENSR-LAB: xenstored failed"
fi
i=0
while [ $i -lt 50 ] && ! xenstore-read -s / >/dev/null 2>&1; do sleep 0.2; i=$((i + 1)); done
xenstore-write /xensr-lab/xenstored "$XS"
xen-init-dom0 || echo "XENSR-LAB: xen-init-dom0 failed"
xenconsoled --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console ||
	echo "XENSR-LAB: xenconsoled failed"

mkdir -p /mnt/io
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none xensr /mnt/io; then
	echo "XENSR-LAB: dom0-ready xenstored=$XS hypervisor=$(xl info xen_version 2>/dev/null)"
	(cd /mnt/io && XENSR_XS="$XS" sh /mnt/io/dom0-suite.sh) 2>&1
	cp /var/log/xen/console/*.log /mnt/io/ 2>/dev/null
	dmesg >/mnt/io/dom0-dmesg.txt
	sync
	umount /mnt/io
else
	echo "XENSR-LAB: 9p mount failed"
fi
echo "XENSR-LAB: done"
reboot -f
