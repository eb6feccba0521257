#!/usr/bin/env bash
# internal/xenlab/trixie-fetch.sh APTDIR [--closure] PKG...: download Debian 13
# (trixie) packages into APTDIR/archives with a private apt root (its own
# sources list, state and cache under APTDIR), so nothing is installed on
# the host and the host's apt state is not touched. With --closure it also
# downloads every dependency (what an empty system would need), otherwise
# only the packages named. Prints the downloaded .deb paths, one per line.
# The package lists are refreshed when older than a day
# (XENSR_LAB_TRIXIE_MIRROR overrides http://deb.debian.org/debian).
set -euo pipefail
D=$1
shift
closure=0
if [ "${1:-}" = --closure ]; then closure=1; shift; fi
mkdir -p "$D"/etc "$D"/state/lists/partial "$D"/archives/partial
D=$(cd "$D" && pwd)
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${XENSR_LAB_TRIXIE_MIRROR:-http://deb.debian.org/debian} trixie main" >"$D/etc/sources.list"
[ -f "$D/state/status" ] || : >"$D/state/status"
opts=(-o "Dir::Etc::sourcelist=$D/etc/sources.list" -o Dir::Etc::sourceparts=/nonexistent
	-o "Dir::State=$D/state" -o "Dir::State::status=$D/state/status"
	-o "Dir::Cache=$D" -o "Dir::Cache::archives=$D/archives" -o APT::Architecture=amd64
	-o Debug::NoLocking=1 -o APT::Sandbox::User=root -q)
# apt's chatter goes to APTDIR/apt.log, shown when a step fails.
LOG=$D/apt.log
: >"$LOG"
quiet() { "$@" >>"$LOG" 2>&1 || { cat "$LOG" >&2; echo "trixie-fetch: $* failed" >&2; exit 1; }; }
if [ -z "$(find "$D/state/lists" -maxdepth 1 -name '*trixie_InRelease' -mtime -1 2>/dev/null)" ]; then
	quiet apt-get "${opts[@]}" update
fi
if [ "$closure" = 1 ]; then
	quiet apt-get "${opts[@]}" install -d -y --no-install-recommends "$@"
	# The closure as apt resolves it for an empty system:
	# "Inst NAME (VERSION SUITE [ARCH])".
	apt-get "${opts[@]}" -s install --no-install-recommends "$@" 2>/dev/null |
		awk '$1=="Inst" {sub(/^\(/, "", $3); print $2, $3}' >"$D/closure.txt"
else
	(cd "$D/archives" && quiet apt-get "${opts[@]}" download "$@")
	apt-cache "${opts[@]}" show --no-all-versions "$@" |
		awk '$1=="Package:" {n=$2} $1=="Version:" {print n, $2}' >"$D/closure.txt"
fi
while read -r n v; do
	f=$D/archives/${n}_${v//:/%3a}_$(dpkg --print-architecture).deb
	[ -f "$f" ] || f=$D/archives/${n}_${v//:/%3a}_all.deb
	[ -f "$f" ] || { echo "trixie-fetch: $n $v not downloaded" >&2; exit 1; }
	echo "$f"
done <"$D/closure.txt"
