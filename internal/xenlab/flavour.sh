# internal/xenlab/flavour.sh, sourced by build.sh and boot.sh: which Xen the
# lab boots. XENSR_LAB_XEN=4.17 (default) is Debian 12's Xen 4.17 with the
# host's own packages; 4.20 is Debian 13 (trixie)'s Xen 4.20 with trixie's
# dom0 userland (its .debs unpacked into the initramfs, never installed on
# the host). Sets XEN_VER, XENLIB and CACHE (one cache folder per flavour:
# $XENSR_LAB_CACHE for 4.17, $XENSR_LAB_CACHE-4.20 for 4.20).
XEN_VER=${XENSR_LAB_XEN:-4.17}
case "$XEN_VER" in
4.17 | 4.20) ;;
*) echo "xenlab: XENSR_LAB_XEN=$XEN_VER: the lab boots 4.17 or 4.20" >&2; exit 2 ;;
esac
XENLIB=/usr/lib/xen-$XEN_VER
CACHE=${XENSR_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xensr-lab}
[ "$XEN_VER" = 4.17 ] || CACHE=$CACHE-$XEN_VER
