#!/usr/bin/env bash
# internal/xenlab/build.sh: install what the lab needs from Debian's packages
# and build the dom0 and domU initramfs into $XENSR_LAB_CACHE
# (default ~/.cache/xensr-lab). The build is skipped when its inputs (this
# directory's files and the installed package versions) are unchanged.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${XENSR_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xensr-lab}
PKGS="xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils linux-image-amd64
      qemu-system-x86 busybox-static cpio gzip zstd kmod python3"
log() { echo "[xenlab-build $(date +%T)] $*" >&2; }

missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	log "installing:$missing"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS >/dev/null
fi

XENLIB=/usr/lib/xen-4.17
KVER=$(cd /lib/modules && ls -d *-amd64 2>/dev/null | sort -V | tail -1)
[ -n "$KVER" ] && [ -f "/boot/vmlinuz-$KVER" ] || { echo "xenlab: no Debian -amd64 kernel installed" >&2; exit 1; }
[ -f /boot/xen-4.17-amd64.gz ] || { echo "xenlab: /boot/xen-4.17-amd64.gz missing" >&2; exit 1; }

key=$( { cat "$HERE"/build.sh "$HERE"/dom0-init.sh "$HERE"/domU-init.sh "$HERE"/guests/*.cfg
	echo "$KVER"; dpkg-query -W -f='${Package} ${Version}\n' $PKGS; } | sha256sum | cut -c1-16)
if [ -f "$CACHE/key" ] && [ "$(cat "$CACHE/key")" = "$key" ] &&
	[ -f "$CACHE/xen" ] && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/dom0.cpio.gz" ]; then
	log "cache $CACHE is current ($key)"
	exit 0
fi
log "building into $CACHE (kernel $KVER)"
mkdir -p "$CACHE"
W=$(mktemp -d /tmp/xensr-lab-build.XXXXXX)
trap 'rm -rf "$W"' EXIT

zcat /boot/xen-4.17-amd64.gz >"$CACHE/xen"
cp "/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"

# copyko MODULE DIR: the module and what it depends on, decompressed, into
# DIR, their names appended to DIR/order.
copyko() {
	for ko in $(modprobe -S "$KVER" --show-depends "$1" | awk '$1=="insmod" {print $2}'); do
		base=$(basename "$ko")
		case "$ko" in
		*.ko.xz) base=${base%.xz}; xz -dc "$ko" >"$2/$base" ;;
		*.ko.zst) base=${base%.zst}; zstd -qdc "$ko" >"$2/$base" ;;
		*) cp "$ko" "$2/$base" ;;
		esac
		grep -qx "$base" "$2/order" 2>/dev/null || echo "$base" >>"$2/order"
	done
}

# The domU: busybox, xen-blkfront (for the disks blkback's lab test gives
# it) and an init that prints a counter every second.
U=$W/domU
mkdir -p "$U"/{bin,proc,sys,dev,tmp,lib/modules}
cp /bin/busybox "$U/bin/busybox"
copyko xen-blkfront "$U/lib/modules"
cp "$HERE/domU-init.sh" "$U/init"
chmod +x "$U/init"
(cd "$U" && find . | sort | cpio -o -H newc --quiet) | gzip -9 >"$W/domU.cpio.gz"

# The dom0: busybox, Xen's tools with their shared libraries, the Xen and 9p
# kernel modules, the guests.
R=$W/dom0
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,mnt,etc/xen,root,lab}
mkdir -p "$R"/var/{lib/xen,lib/xenstored,log/xen,lock}
ln -s ../run "$R/var/run"
cp /bin/busybox "$R/bin/busybox"
mkdir -p "$R$XENLIB/bin"
for b in xl xenstored oxenstored xenconsoled xen-init-dom0 libxl-save-helper xenstore-control \
	lsevtchn xen-hvmctx test-xenstore xenctx; do
	[ -e "$XENLIB/bin/$b" ] && cp -L "$XENLIB/bin/$b" "$R$XENLIB/bin/"
done
for b in /usr/bin/xenstore /usr/bin/xenstore-*; do cp -a "$b" "$R/usr/bin/"; done
for b in xl xenstored oxenstored xenconsoled xen-init-dom0 xenstore-control; do
	ln -sf "$XENLIB/bin/$b" "$R/usr/sbin/$b"
done
cp -a /etc/xen/xl.conf /etc/xen/oxenstored.conf "$R/etc/xen/"
[ -d /etc/xen/scripts ] && cp -a /etc/xen/scripts "$R/etc/xen/"
# Python and verify-stream-v2 stay on the host: dom0 keeps to what xl needs.
addlib() { [ -e "$R$1" ] || { mkdir -p "$R$(dirname "$1")"; cp -L "$1" "$R$1"; }; }
for elf in "$R$XENLIB"/bin/* "$R"/usr/bin/xenstore*; do
	[ -L "$elf" ] && continue
	for lib in $(ldd "$elf" 2>/dev/null | awk '/=>/ {print $3} /^[[:space:]]*\// {print $1}'); do
		[ -e "$lib" ] && addlib "$lib"
	done
done
# glibc loads libgcc_s at run time for pthread_cancel; xl needs it.
addlib /lib/x86_64-linux-gnu/libgcc_s.so.1
mkdir -p "$R/lib64" && cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"
if [ -d "$R/usr/lib/x86_64-linux-gnu" ] && [ ! -e "$R/lib" ]; then ln -s usr/lib "$R/lib"; fi

M=$R/lib/xenlab-modules
mkdir -p "$M"
: >"$M/order"
for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc virtio_pci 9pnet_virtio 9p; do
	for ko in $(modprobe -S "$KVER" --show-depends "$m" | awk '$1=="insmod" {print $2}'); do
		base=$(basename "$ko")
		case "$ko" in
		*.ko.xz) base=${base%.xz}; xz -dc "$ko" >"$M/$base" ;;
		*.ko.zst) base=${base%.zst}; zstd -qdc "$ko" >"$M/$base" ;;
		*) cp "$ko" "$M/$base" ;;
		esac
		grep -qx "$base" "$M/order" || echo "$base" >>"$M/order"
	done
done

# Loaded by blkback's lab test only (kernel blkback would claim every vbd
# backend directory if loaded at boot): /lib/xenlab-modules/extra.
mkdir -p "$M/extra"
copyko loop "$M/extra"
copyko xen-blkback "$M/extra"

cp "/boot/vmlinuz-$KVER" "$R/lab/vmlinuz"
cp "$W/domU.cpio.gz" "$R/lab/domU.cpio.gz"
cp "$HERE"/guests/*.cfg "$R/lab/"
cp "$HERE/dom0-init.sh" "$R/init"
chmod +x "$R/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
(cd "$R" && find . | sort | cpio -o -H newc --quiet) | gzip -6 >"$CACHE/dom0.cpio.gz"
echo "$key" >"$CACHE/key"
log "done: $(du -sh "$CACHE/dom0.cpio.gz" | cut -f1) dom0 initramfs"
