#!/usr/bin/env bash
# internal/xenlab/build.sh: install what the lab needs from Debian's packages
# and build the dom0 and domU initramfs into the flavour's cache folder
# (flavour.sh: XENSR_LAB_XEN=4.17|4.20; default ~/.cache/xensr-lab and
# ~/.cache/xensr-lab-4.20). The build is skipped when its inputs (this
# directory's files, the installed package versions and, for 4.20, the
# trixie .debs) are unchanged.
#
# Xen 4.20: the hypervisor, Xen's tools, xenstore-utils and their shared
# libraries down to trixie's glibc come from Debian 13's .debs
# (trixie-fetch.sh downloads them into $CACHE/apt; dpkg-deb -x unpacks them
# into a scratch folder); only what dom0 runs is copied into the initramfs.
# The dom0 and domU kernel stays Debian 12's linux-image-amd64 (6.1) in both
# flavours, so the two differ only in Xen and its userland; busybox is
# Debian 12's static one in both.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/flavour.sh"
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

KVER=$(cd /lib/modules && ls -d *-amd64 2>/dev/null | sort -V | tail -1)
[ -n "$KVER" ] && [ -f "/boot/vmlinuz-$KVER" ] || { echo "xenlab: no Debian -amd64 kernel installed" >&2; exit 1; }
[ -f /boot/xen-4.17-amd64.gz ] || { echo "xenlab: /boot/xen-4.17-amd64.gz missing" >&2; exit 1; }

# S is the root Xen's files come from: / for 4.17, unpacked trixie for 4.20.
S=
debs=
if [ "$XEN_VER" != 4.17 ]; then
	log "fetching Debian 13's Xen $XEN_VER packages into $CACHE/apt"
	debs=$(bash "$HERE/trixie-fetch.sh" "$CACHE/apt" --closure \
		"xen-hypervisor-$XEN_VER-amd64" "xen-utils-$XEN_VER" xenstore-utils)
fi

key=$( { cat "$HERE"/build.sh "$HERE"/flavour.sh "$HERE"/dom0-init.sh "$HERE"/domU-init.sh "$HERE"/guests/*.cfg
	echo "$XEN_VER $KVER"; dpkg-query -W -f='${Package} ${Version}\n' $PKGS
	for d in $debs; do basename "$d"; done; } | sha256sum | cut -c1-16)
if [ -f "$CACHE/key" ] && [ "$(cat "$CACHE/key")" = "$key" ] &&
	[ -f "$CACHE/xen" ] && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/dom0.cpio.gz" ]; then
	log "cache $CACHE (Xen $XEN_VER) is current ($key)"
	exit 0
fi
log "building into $CACHE (Xen $XEN_VER, kernel $KVER)"
mkdir -p "$CACHE"
W=$(mktemp -d /tmp/xensr-lab-build.XXXXXX)
trap 'rm -rf "$W"' EXIT

if [ -n "$debs" ]; then
	# Python, systemd, perl and the like are dependencies of the packages but
	# nothing dom0 runs; they are left packed.
	S=$W/trixie
	mkdir -p "$S"
	for d in $debs; do
		case "$(basename "$d")" in
		libpython* | python3* | libsystemd-shared* | systemd_* | udev_* | perl-base_* | tzdata_* | libdb5*) continue ;;
		esac
		dpkg-deb -x "$d" "$S"
	done
fi
zcat "$S/boot/xen-$XEN_VER-amd64.gz" >"$CACHE/xen"
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
	[ -e "$S$XENLIB/bin/$b" ] && cp -L "$S$XENLIB/bin/$b" "$R$XENLIB/bin/"
done
for b in "$S"/usr/bin/xenstore "$S"/usr/bin/xenstore-*; do cp -a "$b" "$R/usr/bin/"; done
# Xen 4.20's oxenstored loads its xenctrl glue as a plugin at start-up
# (ocaml/xsd_glue/xenctrl_plugin/*.cmxs); without it, it dies at boot.
[ -d "$S$XENLIB/ocaml" ] && cp -a "$S$XENLIB/ocaml" "$R$XENLIB/"
for b in xl xenstored oxenstored xenconsoled xen-init-dom0 xenstore-control; do
	ln -sf "$XENLIB/bin/$b" "$R/usr/sbin/$b"
done
cp -a "$S"/etc/xen/xl.conf "$S"/etc/xen/oxenstored.conf "$R/etc/xen/"
[ -d "$S"/etc/xen/scripts ] && cp -a "$S"/etc/xen/scripts "$R/etc/xen/"
printf 'XENSR_LAB_XEN=%s\nXENLIB=%s\n' "$XEN_VER" "$XENLIB" >"$R/etc/xensr-lab"
# Python and verify-stream-v2 stay on the host: dom0 keeps to what xl needs.
# addlib copies $S$1 to $R$1 (paths as dom0 sees them).
addlib() { [ -e "$R$1" ] || { mkdir -p "$R$(dirname "$1")"; cp -L "$S$1" "$R$1"; }; }
if [ -z "$S" ]; then
	libs_of() { ldd "$1" 2>/dev/null | awk '/=>/ {print $3} /^[[:space:]]*\// {print $1}'; }
	LDSO=/lib64/ld-linux-x86-64.so.2
else
	# trixie's own loader lists trixie's libraries (the host's ldd would mix
	# in Debian 12's); paths are printed under $S and mapped back.
	LIBDIR=/usr/lib/x86_64-linux-gnu
	libs_of() {
		"$S$LIBDIR/ld-linux-x86-64.so.2" --library-path "$S$LIBDIR" --list "$1" 2>/dev/null |
			awk '/=>/ {print $3}' | grep "^$S/" | sed "s|^$S||"
	}
	LDSO=$LIBDIR/ld-linux-x86-64.so.2
fi
for elf in "$R$XENLIB"/bin/* "$R"/usr/bin/xenstore* "$R$XENLIB"/ocaml/*/*/*.cmxs; do
	[ -e "$elf" ] || continue
	[ -L "$elf" ] && continue
	if [ -n "$S" ] && "$S$LIBDIR/ld-linux-x86-64.so.2" --library-path "$S$LIBDIR" --list "$elf" 2>&1 | grep -q 'not found'; then
		echo "xenlab: $elf needs a library the unpacked trixie packages lack" >&2
		exit 1
	fi
	for lib in $(libs_of "$elf"); do
		[ -e "$S$lib" ] && addlib "$lib"
	done
done
# glibc loads libgcc_s at run time for pthread_cancel; xl needs it.
if [ -z "$S" ]; then addlib /lib/x86_64-linux-gnu/libgcc_s.so.1; else addlib /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; fi
mkdir -p "$R/lib64" && cp -L "$S$LDSO" "$R/lib64/ld-linux-x86-64.so.2"
if [ -d "$R/usr/lib/x86_64-linux-gnu" ] && [ ! -e "$R/lib" ]; then ln -s usr/lib "$R/lib"; fi
[ -z "$S" ] || [ -e "$R/lib/x86_64-linux-gnu/libc.so.6" ] || { echo "xenlab: trixie libc missing in dom0" >&2; exit 1; }

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

# The guests boot the kernel's ELF image (vmlinux, with its Xen notes),
# taken out of the bzImage: from a bzImage, xl decompresses the xz payload
# in dom0 at every guest creation (1.2 s natively, ~10 s under TCG): lab of
# 2026-12-02, `xl create` 10.6 -> 1.0-4.7 s, first counters after 22.7 ->
# 12.1-15.7 s, examples/xeninfo 47.1 -> 15.8 s.
python3 - "/boot/vmlinuz-$KVER" "$W/vmlinux.xz" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
i = b.find(b"\xfd7zXZ\x00")
if i < 0:
    sys.exit("xenlab: no xz payload in " + sys.argv[1])
open(sys.argv[2], "wb").write(b[i:])
PY
xz -dc "$W/vmlinux.xz" 2>/dev/null >"$R/lab/vmlinux" || [ -s "$R/lab/vmlinux" ] # trailing bytes after the stream
head -c 4 "$R/lab/vmlinux" | grep -q ELF || { echo "xenlab: no ELF kernel out of /boot/vmlinuz-$KVER" >&2; exit 1; }
cp "$W/domU.cpio.gz" "$R/lab/domU.cpio.gz"
cp "$HERE"/guests/*.cfg "$R/lab/"
cp "$HERE/dom0-init.sh" "$R/init"
chmod +x "$R/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
(cd "$R" && find . | sort | cpio -o -H newc --quiet) | gzip -6 >"$CACHE/dom0.cpio.gz"
echo "$key" >"$CACHE/key"
log "done: Xen $XEN_VER, $(du -sh "$CACHE/dom0.cpio.gz" | cut -f1) dom0 initramfs"
