#!/usr/bin/env bash
# scripts/speed.sh: whole-process speed of the example commands against
# their rivals on real save images (issue 16), as a user sees it: each
# command is run as a process, several times, in turn with its rival
# (A B A B ...), after one warm-up run of each, and the script prints the
# median wall time of each and the median of the pairwise ratios.
#
#   bash scripts/speed.sh [-n RUNS] IMAGE...
#
# For each IMAGE (an `xl save` file; the lab keeps some, see
# stream/image's lab test and stream/compat's):
#   verify  `xsrdump -verify IMAGE` (seeks over page contents) against Xen's
#           `verify-stream-v2 -f xl -i IMAGE`; target: at least 5x faster
#   pipe    `cat IMAGE | xsrdump -verify -` (reads every byte) against
#           `cat IMAGE | cat >/dev/null` (the same pipe, read by cat) and
#           against `cat IMAGE >/dev/null`; target: throughput at least 0.8
#   pack    `xsrpack pack -q IMAGE` against `zstd -3 -T0 -c IMAGE`, both
#           to /dev/null; target: at least as fast, and smaller
# Ratios are "rival time / our time" (above 1: ours is faster), the median
# of the ratios of the pairs, for wall-clock time (what a user waits) and
# for CPU time (user+system, less sensitive to other load). Needs go, zstd,
# python3 and Debian's xen-utils-4.17 for verify-stream-v2 (skipped, loudly,
# without it). On a shared machine read the figures with the load average
# printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

runs=7
if [ "${1:-}" = "-n" ]; then
	runs=$2
	shift 2
fi
[ $# -gt 0 ] || { echo "usage: bash scripts/speed.sh [-n RUNS] IMAGE..." >&2; exit 2; }

V2=${XENSR_VERIFY_STREAM_V2:-/usr/lib/xen-4.17/bin/verify-stream-v2}
export PYTHONPATH=/usr/lib/xen-4.17/lib/python

bin=$(mktemp -d /tmp/xensr-speed.XXXXXX)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/xsrdump" ./examples/xsrdump
go build -o "$bin/xsrpack" ./examples/xsrpack

# pair NAME OURS RIVAL: one warm-up run of each, then RUNS runs of each in
# turn (OURS RIVAL OURS RIVAL ...), each a shell command line run by
# /bin/sh with its output to /dev/null; prints the median wall and CPU
# (user+system of the whole command, pipelines included, from wait4)
# seconds of each, and the median of rival/ours over the pairs.
pair() {
	/usr/bin/python3 - "$runs" "$@" <<'PY'
import os, subprocess, statistics, sys, time
runs, name, ours, rival = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def once(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(["/bin/sh", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit("speed.sh: failed (%d): %s" % (status, cmd))
    return wall, ru.ru_utime + ru.ru_stime
once(ours); once(rival)
a, b = [], []
for _ in range(runs):
    a.append(once(ours)); b.append(once(rival))
med = lambda xs: statistics.median(xs)
wa, wb = med([x[0] for x in a]), med([x[0] for x in b])
ca, cb = med([x[1] for x in a]), med([x[1] for x in b])
rw = med([y[0] / x[0] for x, y in zip(a, b)])
rc = med([y[1] / x[1] for x, y in zip(a, b)])
print("%-36s ours %7.3f s (cpu %6.3f)  rival %7.3f s (cpu %6.3f)  rival/ours: wall %5.2f, cpu %5.2f" % (name, wa, ca, wb, cb, rw, rc))
PY
}

echo "speed.sh: $(date -u '+%F %T') UTC, $(nproc) cores, load:$(cut -d' ' -f1-3 /proc/loadavg), $runs runs each"
for img in "$@"; do
	q=$(printf '%q' "$img")
	echo "== $img ($(stat -c %s "$img") bytes)"
	"$bin/xsrdump" -verify "$img" | sed 's/^/   /'
	if [ -x "$V2" ]; then
		pair "verify: verify-stream-v2/xsrdump" "$bin/xsrdump -verify $q" "/usr/bin/python3 $V2 -f xl -i $q"
	else
		echo "SKIP verify: $V2 is not installed (apt-get install xen-utils-4.17)"
	fi
	pair "pipe: cat|cat / cat|xsrdump" "cat $q | $bin/xsrdump -verify -" "cat $q | cat >/dev/null"
	pair "pipe: cat>/dev/null / cat|xsrdump" "cat $q | $bin/xsrdump -verify -" "cat $q >/dev/null"
	pair "pack: zstd -3 -T0 / xsrpack pack" "$bin/xsrpack pack -q $q" "zstd -3 -T0 -q -c $q"
	ours=$("$bin/xsrpack" pack -q "$img" | wc -c)
	theirs=$(zstd -3 -T0 -q -c "$img" | wc -c)
	awk -v o="$ours" -v t="$theirs" 'BEGIN { printf "pack size: xsrpack %d bytes, zstd -3 %d bytes (%.1f%% smaller)\n", o, t, 100 * (t - o) / t }'
done
echo "speed.sh: done, load:$(cut -d' ' -f1-3 /proc/loadavg)"
