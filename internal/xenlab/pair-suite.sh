#!/bin/sh
# Runs inside each dom0 of the two-host lab (copied as dom0-suite.sh by
# internal/xenlab/pair.sh): brings up the private link and runs
# TestLabPair in this host's role. Results under results/, artifacts under
# artifacts/.
. ./role.env
mkdir -p results artifacts
for m in failover net_failover virtio_net; do
	insmod "modules/$m.ko" || echo "XENSR-LAB: insmod $m failed"
done
i=0
while [ -z "$(ls /sys/class/net | grep -v '^lo$')" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
IF=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ip link set lo up
ip addr add "$ADDR/24" dev "$IF"
ip link set "$IF" up
echo "XENSR-LAB: pair $ROLE on $IF $ADDR (peer $PEER)"
ping -c 2 -W 5 "$PEER" >results/ping.txt 2>&1 || echo "XENSR-LAB: first ping of $PEER failed (the peer may still boot)"
export XENSR_LAB=1 XENSR_PAIR_ROLE="$ROLE" XENSR_PAIR_PEER="$PEER" XENSR_PAIR_DIRTY XENSR_PAIR_PATHS XENSR_PAIR_LOADS XENSR_PAIR_FAILURES
cp transport.test /tmp/t.test && chmod +x /tmp/t.test
start=$(cut -d' ' -f1 /proc/uptime)
(cd artifacts && XENSR_LAB_OUT=$(pwd) /tmp/t.test -test.run "${XENSR_LAB_RUN:-^TestLabPair}" -test.v -test.timeout 20m) >results/pair.log 2>&1
echo $? >results/pair.rc
end=$(cut -d' ' -f1 /proc/uptime)
echo "XENSR-LAB: pair $ROLE rc=$(cat results/pair.rc) seconds=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')"
xl list >results/xl-list.txt 2>&1
for d in $(xl list 2>/dev/null | awk 'NR>2 {print $1}'); do xl destroy "$d"; done
echo "XENSR-LAB: suite-done"
