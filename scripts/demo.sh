#!/usr/bin/env bash
# scripts/demo.sh: the main example on a real image. It sets up the lab
# (Xen 4.17, QEMU and the Debian kernel from Debian's packages, first run
# only), boots Xen, creates the lab's PVH guest, saves it with `xl save`,
# runs examples/xsrdump on the image inside dom0 (-verify, and -rewrite
# through the Writers), restores the REWRITTEN image with `xl restore` and
# checks that the guest counts on. Back on the host it prints xsrdump's
# report and compares it with Xen's own verify-stream-v2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
bash internal/xenlab/build.sh
OUT=${XENSR_DEMO_OUT:-$(mktemp -d /tmp/xensr-demo.XXXXXX)}
mkdir -p "$OUT"
CGO_ENABLED=0 go build -o "$OUT/xsrdump" ./examples/xsrdump
cat >"$OUT/dom0-suite.sh" <<'DOM0'
#!/bin/sh
counter() { grep -o 'counter=[0-9]*' /var/log/xen/console/guest-guest3.log 2>/dev/null | tail -1 | cut -d= -f2; }
wait_above() { i=0; while [ $i -lt 300 ]; do c=$(counter); [ -n "$c" ] && [ "$c" -gt "$1" ] && return 0; sleep 1; i=$((i+1)); done; return 1; }
xl create /lab/guest3.cfg && wait_above 2 || { echo "DEMO: guest did not start"; exit 1; }
xl save guest3 /tmp/guest3.save || { echo "DEMO: xl save failed"; exit 1; }
before=$(counter)
./xsrdump -verify -rewrite /tmp/guest3-rewritten.save /tmp/guest3.save > xsrdump.txt 2>&1
echo "DEMO: xsrdump rc=$?"
cmp /tmp/guest3.save /tmp/guest3-rewritten.save && echo "DEMO: rewritten image is byte-identical"
xl restore /tmp/guest3-rewritten.save && wait_above "$before" && echo "DEMO: restored from the rewritten image, counter $before -> $(counter)"
cp /tmp/guest3.save ./guest3-pvh.save
xl destroy guest3
DOM0
bash internal/xenlab/boot.sh "$OUT" c
grep -a "DEMO:" "$OUT/serial-c.log" | sed 's/^/  /'
echo "== xsrdump, run in dom0 on the fresh xl save image:"
head -n 40 "$OUT/xsrdump.txt"
echo "== Xen's verify-stream-v2 on the same image:"
PYTHONPATH=/usr/lib/xen-4.17/lib/python python3 /usr/lib/xen-4.17/bin/verify-stream-v2 -f xl -i "$OUT/guest3-pvh.save" && echo "verify-stream-v2: valid"
grep -aq "DEMO: restored from the rewritten image" "$OUT/serial-c.log"
echo "demo ok: output in $OUT"
