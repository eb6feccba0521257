#!/usr/bin/env bash
# internal/xenlab/pair.sh OUT: the two-host lab. Boots two Xen hosts at once
# with boot.sh (one QEMU each, -smp 1), joined by a private virtio-net link
# that QEMU carries over a loopback socket (the source listens on
# 127.0.0.1:PORT, the target connects; nothing leaves this machine). Inside,
# each dom0 loads virtio_net from its shared folder, takes 10.99.0.1
# (source) or 10.99.0.2 (target) and runs migrate/transport's TestLabPair in
# its role (internal/xenlab/pair-suite.sh). Logs and results come back in
# OUT/source and OUT/target.
#
# Knobs: XENSR_LAB_RUN (default ^TestLabPair), XENSR_PAIR_DIRTY (MiB/s of
# the loaded runs, default 4), XENSR_PAIR_PATHS (default "xl->xl go-raw
# go-zstd go-pack go->xl xl->go"), XENSR_PAIR_LOADS (default "idle dirty"),
# XENSR_PAIR_FAILURES (0 skips the failure cases), XENSR_PAIR_PORT (default random),
# XENSR_LAB_TIMEOUT, XENSR_LAB_MEM (default 3072 per host).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PATH:/usr/local/go/bin
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
KVER=$(cd /lib/modules && ls -d *-amd64 2>/dev/null | sort -V | tail -1)

bash internal/xenlab/build.sh
CGO_ENABLED=0 go test -c -o "$OUT/transport.test" ./migrate/transport

export XENSR_LAB_TIMEOUT=${XENSR_LAB_TIMEOUT:-1500} # a hung run must not hold the lab lock for long
PORT=${XENSR_PAIR_PORT:-$((20000 + RANDOM % 20000))}
for role in source target; do
	D=$OUT/$role
	rm -rf "$D"
	mkdir -p "$D/modules"
	cp "$OUT/transport.test" "$D/"
	cp internal/xenlab/pair-suite.sh "$D/dom0-suite.sh"
	for m in failover net_failover virtio_net; do
		ko=$(modinfo -k "$KVER" -n "$m")
		case "$ko" in
		*.xz) xz -dc "$ko" >"$D/modules/$m.ko" ;;
		*.zst) zstd -qdc "$ko" >"$D/modules/$m.ko" ;;
		*) cp "$ko" "$D/modules/$m.ko" ;;
		esac
	done
	if [ "$role" = source ]; then addr=10.99.0.1 peer=10.99.0.2 mac=52:54:00:99:00:01; else addr=10.99.0.2 peer=10.99.0.1 mac=52:54:00:99:00:02; fi
	{
		printf 'ROLE=%s\nADDR=%s\nPEER=%s\n' "$role" "$addr" "$peer"
		printf 'XENSR_LAB_RUN=%q\n' "${XENSR_LAB_RUN:-^TestLabPair}"
		printf 'XENSR_PAIR_DIRTY=%q\n' "${XENSR_PAIR_DIRTY:-4}"
		printf 'XENSR_PAIR_PATHS=%q\n' "${XENSR_PAIR_PATHS:-}"
		printf 'XENSR_PAIR_LOADS=%q\n' "${XENSR_PAIR_LOADS:-}"
		printf 'XENSR_PAIR_FAILURES=%q\n' "${XENSR_PAIR_FAILURES:-1}"
	} >"$D/role.env"
	echo "$mac" >"$D/mac"
done

boot() { # role listen|connect
	local D=$OUT/$1
	XENSR_LAB_SMP=1 XENSR_LAB_MEM=${XENSR_LAB_MEM:-3072} \
		XENSR_LAB_QEMU_ARGS="-netdev socket,id=pair,$2=127.0.0.1:$PORT -device virtio-net-pci,netdev=pair,mac=$(cat "$D/mac")" \
		bash internal/xenlab/boot.sh "$D" c
}
echo "== xenlab pair: booting source (listens on 127.0.0.1:$PORT) and target"
t0=$SECONDS
boot source listen &
src=$!
# The target's QEMU connects once: wait until the source's QEMU listens.
for _ in $(seq 60); do
	ss -ltn 2>/dev/null | grep -q "127.0.0.1:$PORT " && break
	sleep 0.5
done
boot target connect &
dst=$!
rc=0
wait "$src" || rc=1
wait "$dst" || rc=1
echo "   boot+suite seconds: $((SECONDS - t0))"
for role in source target; do
	grep -a "XENSR-LAB:" "$OUT/$role/serial-c.log" | sed "s/^/   $role: /" || true
	r=$(cat "$OUT/$role/results/pair.rc" 2>/dev/null || echo missing)
	echo "   $role: TestLabPair rc=$r"
	[ "$r" = 0 ] || rc=1
done
grep -a "PAIR-RESULT" "$OUT/source/results/pair.log" | sed 's/^ *//' || true
[ -f "$OUT/source/artifacts/pair-results.tsv" ] && column -t -s"$(printf '\t')" "$OUT/source/artifacts/pair-results.tsv" || true
exit $rc
