#!/usr/bin/env bash
# scripts/lab-pair.sh: the two-host migration lab (issue #18): two Xen hosts
# under QEMU joined by a private link, migrate/transport's TestLabPair run on
# both (see internal/xenlab/pair.sh for the knobs). Run it under the lab lock:
#   XENSR_LAB_OUT=/work/scratch/lab-pair flock /tmp/xensr-lab.lock bash scripts/lab-pair.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${XENSR_LAB_OUT:-$(mktemp -d /tmp/xensr-lab-pair.XXXXXX)}
exec bash internal/xenlab/pair.sh "$OUT"
