#!/bin/sh
# Runs inside dom0 with the shared folder as the working directory: every
# test binary in bin/ with the lab tests selected, one log and one exit code
# file per binary under results-$XENSR_XS/ and artifacts in artifacts/NAME/
# (Xen 4.17), or results-$XENSR_LAB_XEN-$XENSR_XS/ and
# artifacts-$XENSR_LAB_XEN/NAME/ (other flavours). Tests see XENSR_LAB_XEN
# (the flavour) and XENSR_LAB_ROOT (the shared folder, where an earlier
# boot's artifacts are, e.g. a 4.17 image for a 4.20 restore).
[ -f suite.env ] && . ./suite.env
XENSR_LAB_XEN=${XENSR_LAB_XEN:-4.17}
if [ "$XENSR_LAB_XEN" = 4.17 ]; then
	R=results-$XENSR_XS A=artifacts
else
	R=results-$XENSR_LAB_XEN-$XENSR_XS A=artifacts-$XENSR_LAB_XEN
fi
mkdir -p "$R"
export XENSR_LAB=1 XENSR_LAB_XEN XENSR_LAB_ROOT=$(pwd)
# Guests pinned to pCPU 1: with a guest's vCPU free to move between the
# two pCPUs, QEMU's TCG emulation of SVM kills a PVH guest now and then (a
# triple fault right after its upcall set-up, README "The lab"); pinned,
# none died (lab runs of 2026-12-02). dom0 keeps both pCPUs. The lab's
# guest configurations get cpus = "1", so xl and the Go restore (from the
# configuration in the stream) set the hard affinity before a guest first
# runs, a migrated or restored one too. A watch on @introduceDomain pins
# any domain made without it (a test's own configuration); that pin comes
# a moment late (two xl calls under TCG), after the guest's first instants,
# as every pin did before the cpus= line (CI of stop 23: a guest restored
# by the Go receiver died on pCPU 0 just before its pin). XENSR_LAB_PIN=0
# turns both off.
pin_guests() {
	for d in $(xl vcpu-list 2>/dev/null | awk 'NR>1 && $2!=0 && $7!="1" {print $2}' | sort -u); do
		xl vcpu-pin "$d" all 1 2>/dev/null && echo "xenlab-pin: d$d on pCPU 1" >/dev/console
	done
}
if [ "${XENSR_LAB_PIN:-1}" = 1 ] && [ "$(xl info nr_cpus 2>/dev/null)" -ge 2 ] 2>/dev/null; then
	echo "XENSR-LAB: guests pinned to pCPU 1"
	for f in /lab/guest*.cfg; do
		grep -q '^cpus' "$f" || echo 'cpus = "1"' >>"$f"
	done
	(
		while :; do
			xenstore-watch @introduceDomain | while read -r _; do pin_guests; done
			sleep 1
		done
	) >/dev/null 2>&1 &
fi
for bin in bin/*.test; do
	[ -e "$bin" ] || continue
	name=$(basename "$bin" .test)
	if [ "$XENSR_XS" != c ] && ! grep -qx "$name" xs-pkgs.txt 2>/dev/null; then continue; fi
	mkdir -p "$A/$name"
	echo "XENSR-LAB: running $name (Xen $XENSR_LAB_XEN, xenstored=$XENSR_XS)"
	start=$(cut -d' ' -f1 /proc/uptime)
	cp "$bin" /tmp/t.test && chmod +x /tmp/t.test
	try=1
	while :; do
		( cd "$A/$name" && XENSR_LAB_OUT=$(pwd) /tmp/t.test -test.run "${XENSR_LAB_RUN:-^TestLab}" -test.count "${XENSR_LAB_COUNT:-1}" \
			-test.v -test.timeout "${XENSR_LAB_TEST_TIMEOUT:-15m}" ) >"$R/$name.log" 2>&1
		echo $? >"$R/$name.rc"
		for d in $(xl list 2>/dev/null | awk 'NR>2 {print $1}'); do xl destroy "$d"; done
		# A guest that triple-faulted or stopped counting is what QEMU's TCG
		# emulation of SVM does to PVH guests now and then, fresh ones too
		# (README, "The lab"): such a package runs once more, from the
		# start, and its first log is kept as NAME.try1.log. A second
		# failure stands; XENSR_LAB_RETRY=0 turns this off.
		[ "$(cat "$R/$name.rc")" != 0 ] && [ "$try" = 1 ] && [ "${XENSR_LAB_RETRY:-1}" = 1 ] || break
		# The first line that says so is the reason, kept in NAME.retried
		# for lab.sh.
		grep -m1 -E "a guest died during the test|the guest does not carry on|counter stayed at|shows the counter going on|the guest rebooted while waiting" \
			"$R/$name.log" >"$R/$name.retried" || { rm -f "$R/$name.retried"; break; }
		mv "$R/$name.log" "$R/$name.try1.log"
		echo "XENSR-LAB: $name retried: a guest died or stopped (log of try 1: $R/$name.try1.log)"
		try=2
	done
	end=$(cut -d' ' -f1 /proc/uptime)
	echo "XENSR-LAB: $name rc=$(cat "$R/$name.rc") seconds=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')"
done
echo "XENSR-LAB: suite-done"
