#!/usr/bin/env bash
# Soak: continuous load plus churn for DURATION, watching for failed requests and for memory
# or fd growth in the scheduler, the agents and the shims.
#   bench/soak.sh [DURATION]     (root; DURATION like 10m (default), 3m, 90s, or N minutes;
#                                 at most 60m; a namespace lab of its own: LAB_ID, default
#                                 "soak")
# Brings up a lab with a scheduler and 3 nodes and deploys tests/integration/manifests/
# lifecycle-web.yaml (6 replicas of shoal/web, health-checked, start-first updates 2 at a
# time). Two tests/tools/lifeclient run in the scheduler's namespace through the proxies of
# node1 and node2 (round-robin, 2 s timeout): one opens a new HTTP/1.0 connection per
# request, the other speaks HTTP/1.1 keep-alive. A churn loop repeats: update to shoal/web:2,
# scale to 3, scale to 6, update back to shoal/web:1, kill -9 and restart node3's agent
# (node3's: node1's and node2's agents carry the clients' proxies; restarting those is a lost
# process, the lifecycle suite's case). Once a minute it samples RSS and open fds of the
# scheduler, the agents of node1+node2 (summed), node3's agent (restarted: its numbers start
# over) and every shim of the lab (count, mean RSS, mean fds), and the requests and failures
# since the last sample. Printed: that table, then the growth from minute 2 to the end.
# Exit 1 when a request failed, or when scheduler/agent1+2 RSS grew by more than 20% and
# 2 MiB, or their fds by more than 8 (a sample may catch a few connections in flight),
# between minute 2 and the end.
# Functions below are called through wait_until and the EXIT trap, which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10m}
case $dur in
*m) secs=$((${dur%m} * 60)) ;;
*s) secs=${dur%s} ;;
*[!0-9]* | '') echo "bench/soak.sh: DURATION like 10m, 3m or 90s" >&2; exit 2 ;;
*) secs=$((dur * 60)) ;;
esac
if [ "$secs" -lt 60 ] || [ "$secs" -gt 3600 ]; then
	echo "bench/soak.sh: DURATION from 1m to 60m" >&2
	exit 2
fi
export LAB_ID=${LAB_ID:-soak}
export BUILD=${BUILD:-build}
[ "$(id -u)" -eq 0 ] || { echo "bench/soak.sh: needs root (network namespaces)" >&2; exit 1; }
for b in shoal shoal-scheduler shoal-agent shoalrt shoal-shim tests/tools/lifeclient; do
	[ -x "$BUILD/$b" ] || { echo "bench/soak.sh: run make first" >&2; exit 1; }
done
work=$(mktemp -d /tmp/shoal-soak.XXXXXX)
chmod 755 "$work"
export BATS_FILE_TMPDIR=$work
# shellcheck source=tests/integration/helpers.bash
source tests/integration/helpers.bash
st=0
lab status >/dev/null 2>&1 || st=$?
[ "$st" -eq 3 ] || {
	echo "bench/soak.sh: lab LAB_ID=$LAB_ID is up already; not touching it" >&2
	exit 1
}
churn_pid=
cleanup() {
	[ -z "$churn_pid" ] || kill "$churn_pid" 2>/dev/null || true
	touch "$work/stop"
	# A failed run keeps the daemons' and clients' logs and the churn log, to find out why.
	if [ "${rc:-1}" -ne 0 ] || [ -n "${SOAK_KEEP:-}" ]; then
		keep=$(mktemp -d /tmp/shoal-soak-logs.XXXXXX)
		cp "$LAB_RUN"/*.log "$work/churn.log" "$keep/" 2>/dev/null || true
		echo "bench/soak.sh: logs kept in $keep" >&2
	fi
	lab down >/dev/null 2>&1 || echo "bench/soak.sh: LAB_ID=$LAB_ID lab down failed" >&2
	rm -rf "$work"
}
trap cleanup EXIT
M=tests/integration/manifests
cluster_setup 3 >"$work/setup.log" 2>&1
shoal apply -f "$M/lifecycle-web.yaml" >/dev/null
healthy6() { [ "$(shoal ps life | awk '$4 == "running" && /running \(healthy\)/' | wc -l)" -eq 6 ]; }
wait_until 120 healthy6

proxies="$(lab addr node1):9280 $(lab addr node2):9280"
# shellcheck disable=SC2086
lab spawn soak-new sched "$SHOAL_BIN/tests/tools/lifeclient" --stop-file "$work/stop" \
	--stats "$work/new.stats" $proxies >/dev/null
# shellcheck disable=SC2086
lab spawn soak-ka sched "$SHOAL_BIN/tests/tools/lifeclient" --keepalive --stop-file "$work/stop" \
	--stats "$work/ka.stats" $proxies >/dev/null

settled() {
	local s
	s=$(shoal services -o json | jq -r '.[] | select(.name == "life") | .update_state')
	[[ $s == completed* || $s == "rolled back"* ]] && healthy6
}
node3_ready() { shoal nodes | grep -q '^node3 .*ready'; }
churn() {
	local v
	set +e # a step that fails (a slow settle) is logged by its absence; the loop goes on
	while [ ! -e "$work/stop" ]; do
		for v in 2 1; do
			sed "s#shoal/web:1#shoal/web:$v#" "$M/lifecycle-web.yaml" >"$work/life.yaml"
			shoal apply -f "$work/life.yaml" >/dev/null && wait_until 120 settled
			echo "$(date +%T.%3N) update to web:$v" >>"$work/churn.log"
			shoal scale life=3 >/dev/null && sleep 3
			shoal scale life=6 >/dev/null && wait_until 120 healthy6
			echo "$(date +%T.%3N) scale 3, 6" >>"$work/churn.log"
		done
		lab kill agent3 KILL >/dev/null 2>&1 || true
		if start_agent 3 >/dev/null && wait_until 60 node3_ready && wait_until 120 healthy6; then
			echo "$(date +%T.%3N) agent3 restarted" >>"$work/churn.log"
		else
			echo "$(date +%T.%3N) agent3 restart FAILED" >>"$work/churn.log"
		fi
		sleep 2
	done
}
churn >/dev/null 2>&1 &
churn_pid=$!

# rss_fds PID: "RSS_KIB FDS" (0 0 when gone).
rss_fds() {
	local rss fds
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null) || rss=0
	fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || fds=0
	echo "${rss:-0} ${fds:-0}"
}
counts() {
	local n=0 f=0 file
	for file in "$work/new.stats" "$work/ka.stats"; do
		[[ "$(cat "$file" 2>/dev/null)" =~ ok=([0-9]+)\ refused=([0-9]+)\ reset=([0-9]+)\ timeout=([0-9]+)\ bad=([0-9]+) ]] || continue
		n=$((n + BASH_REMATCH[1] + BASH_REMATCH[2] + BASH_REMATCH[3] + BASH_REMATCH[4] + BASH_REMATCH[5]))
		f=$((f + BASH_REMATCH[2] + BASH_REMATCH[3] + BASH_REMATCH[4] + BASH_REMATCH[5]))
	done
	echo "$n $f"
}
sample() {
	local min=$1 s a12r=0 a12f=0 a3 shr=0 shf=0 nsh=0 p r f req fail
	s=$(rss_fds "$(lab pid sched)")
	for p in 1 2; do
		read -r r f <<<"$(rss_fds "$(lab pid "agent$p")")"
		a12r=$((a12r + r)) a12f=$((a12f + f))
	done
	a3=$(rss_fds "$(lab pid agent3 2>/dev/null || echo 0)")
	for p in $(pgrep -x shoal-shim || true); do
		tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q -- "--root $work/" || continue
		read -r r f <<<"$(rss_fds "$p")"
		shr=$((shr + r)) shf=$((shf + f)) nsh=$((nsh + 1))
	done
	read -r req fail <<<"$(counts)"
	[ "$nsh" -gt 0 ] || nsh=1
	# s and a3 are "RSS FDS" pairs: split on purpose, two columns each.
	# shellcheck disable=SC2086
	printf '%6s %9s %5s %11s %6s %9s %4s %5s %9s %8s %8s %8s\n' "$min" ${s} "$a12r" "$a12f" ${a3} \
		"$nsh" "$((shr / nsh))" "$((shf / nsh))" "$((req - last_req))" "$((fail - last_fail))"
	last_req=$req last_fail=$fail
	echo "$min $s $a12r $a12f" >>"$work/samples"
}
last_req=0 last_fail=0
printf '%6s %9s %5s %11s %6s %9s %4s %5s %9s %8s %8s %8s\n' minute sched_kib fds agent12_kib fds \
	agent3_kib fds shims shim_kib shim_fds requests failed
start=$SECONDS
for ((m = 1; m * 60 <= secs; m++)); do
	left=$((start + m * 60 - SECONDS))
	[ "$left" -le 0 ] || sleep "$left"
	sample "$m"
done
touch "$work/stop"
kill "$churn_pid" 2>/dev/null || true
wait "$churn_pid" 2>/dev/null || true
churn_pid=
wait_until 20 bash -c "! bash tests/lab/lab pid soak-new >/dev/null 2>&1" || true
echo
echo "churn: $(grep -c "update to" "$work/churn.log" 2>/dev/null || echo 0) updates, $(grep -c "scale 3, 6" "$work/churn.log" 2>/dev/null || echo 0) scale cycles, $(grep -c "agent3 restarted" "$work/churn.log" 2>/dev/null || echo 0) agent restarts"
for c in new ka; do echo "client $c: $(grep '^ok=' "$LAB_RUN/soak-$c.log" | tail -1)"; grep -v '^ok=' "$LAB_RUN/soak-$c.log" | grep -v ' ok in ' | head -10 || true; done
rc=0
read -r total fail <<<"$(counts)"
[ "$fail" -eq 0 ] || { echo "FAILED requests: $fail of $total"; rc=1; }
if [ "$(wc -l <"$work/samples")" -ge 3 ]; then
	read -r _ s2r s2f a2r a2f <<<"$(sed -n 2p "$work/samples")"
	read -r _ ser sef aer aef <<<"$(tail -1 "$work/samples")"
	echo "minute 2 -> end: scheduler RSS ${s2r} -> ${ser} KiB, fds ${s2f} -> ${sef}; agents 1+2 RSS ${a2r} -> ${aer} KiB, fds ${a2f} -> ${aef}"
	grew() { [ "$2" -gt $(($1 + $1 / 5)) ] && [ "$2" -gt $(($1 + 2048)) ]; }
	if grew "$s2r" "$ser" || grew "$a2r" "$aer" || [ "$sef" -gt $((s2f + 8)) ] || [ "$aef" -gt $((a2f + 8)) ]; then
		echo "GROWTH between minute 2 and the end"
		rc=1
	fi
fi
exit $rc
