#!/usr/bin/env bash
# scripts/lab.sh: the real-Xen lab suite. It installs Xen 4.17, QEMU and the
# Debian kernel (apt-get, first run only), builds the lab's initramfs (for
# Xen 4.20 from Debian 13's .debs, unpacked, not installed), builds every
# package that has *_lab_test.go files into a static test binary, boots Xen
# under QEMU (TCG) and runs the binaries' TestLab* tests inside dom0 as root,
# once with the C xenstored and once more with oxenstored for the packages
# that talk to xenstore, for each Xen flavour asked for. It prints
# per-package counts, a total per flavour and a closing total, and exits
# non-zero when any test fails, a binary dies, a boot times out or no lab
# test ran at all.
#
# Knobs (environment):
#   XENSR_LAB_XEN       Xen flavours to boot, in order (default 4.17; "4.17 4.20"
#                       boots both, sharing one output folder, so a 4.20 boot
#                       finds what the 4.17 boot left in artifacts/)
#   XENSR_LAB_PARALLEL  1: boot the flavours at the same time, one QEMU each
#   XENSR_LAB_PKGS      packages to run (default: all with *_lab_test.go)
#   XENSR_LAB_RUN       -test.run pattern (default ^TestLab)
#   XENSR_LAB_COUNT     -test.count for every test binary (default 1), to repeat a test in one boot
#   XENSR_LAB_XS        xenstored flavours to boot (default "c ocaml")
#   XENSR_LAB_XS_PKGS   packages also run under oxenstored (default ./xenstore)
#   XENSR_LAB_OUT       output folder kept after the run (default: a temp dir)
#   XENSR_LAB_TIMEOUT   seconds one boot may take (default 2400)
#   XENSR_LAB_CACHE, XENSR_LAB_CPU, XENSR_LAB_SMP, XENSR_LAB_MEM, XENSR_LAB_DOM0_MEM,
#   XENSR_LAB_TCG_THREAD (multi or single: QEMU's TCG threads)
#   XENSR_LAB_XEN_ARGS  more Xen command-line options (internal/xenlab/boot.sh)
#   XENSR_LAB_PIN       0: leave the guests unpinned (default 1: dom0-suite.sh pins them to pCPU 1)
#   Any other XENSR_LAB_* variable is passed to the tests in dom0 (the
#   knobs of gated cells, e.g. XENSR_LAB_BLK_LONG=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
t0=$SECONDS

XENS=${XENSR_LAB_XEN:-4.17}
for xen in $XENS; do XENSR_LAB_XEN=$xen bash internal/xenlab/build.sh; done
t_build=$((SECONDS - t0))

if [ -n "${XENSR_LAB_PKGS:-}" ]; then
	pkgs=$XENSR_LAB_PKGS
else
	pkgs=$(git ls-files --cached --others --exclude-standard -- '*_lab_test.go' | xargs -rn1 dirname | sort -u | sed 's|^|./|')
fi
[ -n "$pkgs" ] || { echo "xenlab: no package has *_lab_test.go" >&2; exit 1; }

OUT=${XENSR_LAB_OUT:-$(mktemp -d /tmp/xensr-lab.XXXXXX)}
mkdir -p "$OUT/bin"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT"/bin/* "$OUT"/results-* "$OUT"/artifacts "$OUT"/artifacts-*
cp internal/xenlab/dom0-suite.sh "$OUT/"
{
	printf 'XENSR_LAB_RUN=%q\n' "${XENSR_LAB_RUN:-^TestLab}"
	printf 'export XENSR_LAB_RUN\n'
	# The tests' own knobs (XENSR_LAB_BLK_LONG, XENSR_LAB_PV_GUEST2, ...)
	# reach dom0 too; the harness's own are set there by dom0-suite.sh.
	for v in $(compgen -e | grep '^XENSR_LAB_' | grep -vx 'XENSR_LAB_\(RUN\|OUT\|XEN\|ROOT\|PKGS\|XS\|XS_PKGS\|CACHE\|TIMEOUT\|CPU\|SMP\|MEM\|DOM0_MEM\|QEMU_ARGS\)'); do
		printf '%s=%q\nexport %s\n' "$v" "${!v}" "$v"
	done
} >"$OUT/suite.env"
: >"$OUT/xs-pkgs.txt"
name_of() { echo "${1#./}" | tr / _; }
for p in ${XENSR_LAB_XS_PKGS:-./xenstore}; do name_of "$p" >>"$OUT/xs-pkgs.txt"; done

echo "== xenlab: building lab test binaries"
for p in $pkgs; do
	CGO_ENABLED=0 go test -c -o "$OUT/bin/$(name_of "$p").test" "$p"
done
ls "$OUT/bin"
t_compile=$((SECONDS - t0 - t_build))

rc=0
sfx() { [ "$1" = 4.17 ] && echo "$2" || echo "$1-$2"; } # serial-*/results-* names
# flavour XEN: every boot of one Xen flavour, in turn; exits non-zero when
# a boot failed.
flavour() {
	local xen=$1 xs frc=0 tb log want b
	for xs in ${XENSR_LAB_XS:-c ocaml}; do
		if [ "$xs" != c ]; then
			want=0
			for b in "$OUT"/bin/*.test; do grep -qx "$(basename "$b" .test)" "$OUT/xs-pkgs.txt" && want=1; done
			[ "$want" = 1 ] || continue
		fi
		echo "== xenlab: boot Xen $xen with xenstored=$xs"
		tb=$SECONDS
		log=$OUT/serial-$(sfx "$xen" "$xs").log
		if ! XENSR_LAB_XEN=$xen bash internal/xenlab/boot.sh "$OUT" "$xs"; then
			echo "xenlab: boot of Xen $xen with xenstored=$xs failed; console tail:"
			tail -n 40 "$log"
			frc=1
		fi
		grep -a "XENSR-LAB:" "$log" | sed 's/^/   /' || true
		echo "   boot+suite seconds (Xen $xen, xenstored=$xs): $((SECONDS - tb))"
	done
	return $frc
}
# XENSR_LAB_PARALLEL=1 boots the Xen flavours side by side, one QEMU each
# (each prints its lines when it is done); the 4.20 boot's restore of the
# 4.17 image waits for the 4.17 boot to save it.
if [ "${XENSR_LAB_PARALLEL:-0}" = 1 ] && [ "$(echo $XENS | wc -w)" -gt 1 ]; then
	pids=()
	for xen in $XENS; do
		flavour "$xen" >"$OUT/flavour-$xen.out" 2>&1 &
		pids+=($!)
	done
	i=0
	for xen in $XENS; do
		wait "${pids[$i]}" || rc=1
		cat "$OUT/flavour-$xen.out"
		i=$((i + 1))
	done
else
	for xen in $XENS; do flavour "$xen" || rc=1; done
fi

# Count the results: one line per package and flavour, a total per Xen, then
# the total.
python3 - "$OUT" "$pkgs" "${XENSR_LAB_XS:-c ocaml}" "$XENS" <<'PY' || rc=1
import os, re, sys
out, pkgs, flavours, xens = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
xs_pkgs = open(os.path.join(out, "xs-pkgs.txt")).read().split()
tot = {"pass": 0, "fail": 0, "skip": 0}
bad = []
retried = []
for xen in xens:
  per = {"pass": 0, "fail": 0, "skip": 0}
  for fl in flavours:
    for p in pkgs:
        name = p.lstrip("./").replace("/", "_")
        if fl != "c" and name not in xs_pkgs:
            continue
        res = "results-" + (fl if xen == "4.17" else xen + "-" + fl)
        log = os.path.join(out, res, name + ".log")
        rcf = os.path.join(out, res, name + ".rc")
        if not os.path.exists(rcf):
            bad.append(f"{p} (Xen {xen}, xenstored={fl}): never ran or did not finish")
            continue
        text = open(log, errors="replace").read()
        c = {k: len(re.findall(r"^\s*--- %s: " % k.upper(), text, re.M)) for k in tot}
        top = {k: len(re.findall(r"^--- %s: " % k.upper(), text, re.M)) for k in tot}
        rc = open(rcf).read().strip()
        for k in tot:
            tot[k] += c[k]
            per[k] += c[k]
        print(f"lab {p:24} xen={xen} xenstored={fl:5} pass={c['pass']:3} fail={c['fail']:2} skip={c['skip']:2} (top-level {top['pass']}/{top['fail']}/{top['skip']}) rc={rc}")
        for m in re.finditer(r"^\s*--- (FAIL|SKIP): (\S+).*$", text, re.M):
            print("     ", m.group(0).strip())
        why = os.path.join(out, res, name + ".retried")
        if os.path.exists(why):
            # dom0-suite.sh ran the package again: a guest died or stopped;
            # NAME.retried holds the line of try 1 that said so.
            line = open(why, errors="replace").read().strip()
            retried.append(f"{p} (Xen {xen}, xenstored={fl}): {line[:300]}")
            print(f"     RETRIED (try 1 failed; log {os.path.join(out, res, name + '.try1.log')}):")
            print("     |", line[:400])
        if rc != "0" or c["fail"]:
            bad.append(f"{p} (Xen {xen}, xenstored={fl}): rc={rc}, {c['fail']} failed; log {log}")
            # CI keeps only what is printed: the failing tests' own messages
            # (t.Fatal/t.Error lines name file:line) and the log's tail.
            lines = text.splitlines()
            msgs = [l for l in lines if re.search(r"_test\.go:\d+: ", l) and re.search(r"(?i)fail|error|not |never|refus|want|got", l)]
            print(f"     --- messages of the failed tests in {name}.log (up to 40):")
            for l in msgs[-40:]:
                print("     |", l[:400])
            print(f"     --- last 30 lines of {name}.log:")
            for l in lines[-30:]:
                print("     |", l[:400])
  print(f"lab (Xen {xen}): {per['pass']} passed, {per['fail']} failed, {per['skip']} skipped")
print(f"lab: {tot['pass']} passed, {tot['fail']} failed, {tot['skip']} skipped, {len(retried)} packages retried")
for r in retried:
    print("LAB RETRIED after a guest died or stopped (TCG):", r)
if tot["pass"] == 0:
    bad.append("no lab test passed: the lab ran nothing")
for b in bad:
    print("LAB FAILURE:", b)
sys.exit(1 if bad else 0)
PY
echo "xenlab: build ${t_build}s, compile ${t_compile}s, total $((SECONDS - t0))s; output in $OUT"
exit $rc
