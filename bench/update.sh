#!/usr/bin/env bash
# A rolling update under constant load: how long it takes, what clients see, and that none of
# their requests fail.
#   bench/update.sh              (root; a namespace lab of its own: LAB_ID, default "bench")
#   BENCH_SECONDS=N              the baseline window (default 10)
#   BENCH_CONNS=N                connections per wrk (default 4)
#
# Brings up a lab (LAB_ID, never the default one; it refuses to run when that lab is already
# up) with a scheduler and 3 nodes, and deploys 10 replicas of shoal/web:1 on bridge networks
# behind published port 9280: http health check on /healthz every 500ms, update parallelism 2,
# start-first, failure_action rollback, stop_grace 3s. Two wrk (-t1, BENCH_CONNS connections
# each, `Connection: close`) run in the scheduler's namespace, one through node1's proxy and
# one through node2's, asking for /version (a static file saying v1 or v2). busybox httpd
# closes every connection after one response anyway, so keep-alive would measure the same:
# each request is a new client connection, the proxy picks the next backend for each.
#   1. baseline: BENCH_SECONDS of load on v1;
#   2. update: wrk starts, `shoal apply` of shoal/web:2, then until `shoal services -o json`
#      says update_state "completed" (the update time) and then on until no v1 replica is left
#      running or stopping (the last ones may still drain); wrk is stopped there (SIGINT, it
#      prints its totals).
# Printed: update time (apply -> completed), requests and req/s, FAILED requests (wrk's
# non-2xx/3xx responses + socket errors: connect, read, write, timeout (2s)), p50 and p99
# latency, and which version answered (a wrk Lua counter); then 30 requests to / (10 through
# each node) after the update must all come from v2 ("web v2 on TASK").
# Failed requests must be 0: a replica leaves every proxy's rotation before it is stopped
# (scheduler/endpoints.c waits for every node to acknowledge the table without it), and the
# agent waits for its established connections to close before SIGTERM (agent/tasks_op.c
# drain_connections). The script exits 1 when a request failed or a page is not v2.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-4}
export LAB_ID=${LAB_ID:-bench}
BUILD=${BUILD:-build}
[ "$(id -u)" -eq 0 ] || { echo "bench/update.sh: needs root (network namespaces)" >&2; exit 1; }
for t in wrk jq busybox; do
	command -v $t >/dev/null || { echo "bench/update.sh: needs $t (bash vagrant/provision/deps.sh --bench)" >&2; exit 1; }
done
bin=$(cd "$BUILD" && pwd)
for b in shoal shoal-scheduler shoal-agent shoalrt shoal-shim; do
	[ -x "$bin/$b" ] || { echo "bench/update.sh: run make first" >&2; exit 1; }
done
LAB=$PWD/tests/lab/lab
lab() { bash "$LAB" "$@"; }
st=0
lab status >/dev/null 2>&1 || st=$?
[ "$st" -eq 3 ] || {
	echo "bench/update.sh: lab LAB_ID=$LAB_ID is up already; not touching it (LAB_ID=$LAB_ID $LAB down)" >&2
	exit 1
}
make -s BUILD="$BUILD" images >/dev/null

work=$(mktemp -d /tmp/shoal-update-bench.XXXXXX)
chmod 755 "$work"
wrk_pids=()
cleanup() {
	local p
	for p in "${wrk_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -z "${BENCH_KEEP:-}" ] || cp "/run/shoal-lab-$LAB_ID"/*.log "$work/" 2>/dev/null || true
	lab down >/dev/null 2>&1 || echo "bench/update.sh: LAB_ID=$LAB_ID lab down failed" >&2
	# BENCH_KEEP=1 keeps the work dir (daemon logs, wrk output) for a look by hand.
	if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$work"; else echo "bench/update.sh: kept $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SCHED=$(lab addr sched):7100
PORT=9280
shoal() {
	lab exec sched "$bin/shoal" --scheduler "$SCHED" --token-file "$work/sched/admin.token" "$@"
}
die() {
	echo "bench/update.sh: $*" >&2
	local f
	for f in "/run/shoal-lab-$LAB_ID"/*.log; do
		[ -e "$f" ] || continue
		cp "$f" "$work/" 2>/dev/null || true
		echo "----- $f (last 20 lines)" >&2
		tail -20 "$f" >&2
	done
	exit 1
}
# wait_for SECONDS CMD...: every 100 ms until CMD succeeds; fails after SECONDS.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.1
	done
}

lab up 3 >/dev/null
"$bin/shoal-scheduler" init --data-dir "$work/sched" >/dev/null
lab spawn sched sched "$bin/shoal-scheduler" run --data-dir "$work/sched" --listen "$SCHED" \
	--heartbeat-interval 1s >/dev/null
for i in 1 2 3; do
	lab spawn "agent$i" "node$i" "$bin/shoal-agent" --scheduler "$SCHED" \
		--token-file "$work/sched/worker.token" --name "node$i" --address "$(lab addr "node$i")" \
		--label "zone=$(lab zone "node$i")" --data-dir "$work/node$i" --image-dir "$bin/images" >/dev/null
done

manifest() { # VERSION
	cat <<EOF
service: benchupd
image: shoal/web:$1
replicas: 10
command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
ports: [{published: $PORT, target: 8080}]
health: {http: /healthz, port: 8080, interval: 500ms, timeout: 1s, retries: 2}
update: {parallelism: 2, delay: 500ms, order: start-first, failure_action: rollback, monitor: 5s}
restart: {policy: always, delay: 500ms}
stop_grace: 3s
EOF
}
manifest 1 >"$work/v1.yaml"
manifest 2 >"$work/v2.yaml"

ready_nodes() { [ "$(shoal nodes -o json | jq '[.[] | select(.status == "ready")] | length')" -eq 3 ]; }
healthy() { [ "$(shoal ps benchupd | awk '$4 == "running" && /running \(healthy\)/' | wc -l)" -eq 10 ]; }
get() { lab exec sched timeout 3 busybox wget -qO- "http://$1:$PORT/"; }
# serves_all ADDR: 10 requests through ADDR's proxy reach 10 distinct replicas.
serves_all() {
	local i
	[ "$(for ((i = 0; i < 10; i++)); do get "$1"; done | sort -u | wc -l)" -eq 10 ]
}
# old_left: tasks of an older version than the service's still running or stopping.
old_left() {
	local v
	v=$(shoal services -o json | jq '.[] | select(.name == "benchupd") | .version')
	shoal ps benchupd -a -o json | jq --argjson v "$v" \
		'[.[] | select(.version < $v and (.state == "running" or .state == "stopping"))] | length'
}
update_state() {
	shoal services -o json | jq -r '.[] | select(.name == "benchupd") | .update_state // ""'
}

wait_for 20 ready_nodes || die "3 nodes did not become ready"
shoal apply --detach -f - <"$work/v1.yaml" >/dev/null
wait_for 60 healthy || die "10 replicas of v1 did not become healthy"
A1=$(lab addr node1)
A2=$(lab addr node2)
for a in "$A1" "$A2"; do
	wait_for 20 serves_all "$a" || die "the proxy on $a does not rotate over 10 replicas"
done

cat >"$work/count.lua" <<'LUA'
-- Counts which version answered (the body of /version is "v1" or "v2").
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) v1 = 0; v2 = 0; other = 0 end
function response(status, headers, body)
	if body == nil then other = other + 1
	elseif body:find("v2", 1, true) then v2 = v2 + 1
	elseif body:find("v1", 1, true) then v1 = v1 + 1
	else other = other + 1 end
end
function done(summary, latency, requests)
	local a, b, c = 0, 0, 0
	for _, t in ipairs(threads) do a = a + t:get("v1"); b = b + t:get("v2"); c = c + t:get("other") end
	io.write(string.format("versions: %d %d %d\n", a, b, c))
end
LUA
chmod 644 "$work/count.lua"

# start_load NAME SECONDS: a wrk through node1 and one through node2, in the background.
start_load() {
	local name=$1 secs=$2 k a
	wrk_pids=()
	k=0
	for a in "$A1" "$A2"; do
		k=$((k + 1))
		# Not the function: $! must be wrk itself (lab exec execs it) for the SIGINT below.
		bash "$LAB" exec sched wrk -t1 -c"$CONNS" -d"${secs}s" --latency -H "Connection: close" \
			-s "$work/count.lua" "http://$a:$PORT/version" >"$work/$name.$k" 2>&1 &
		wrk_pids+=("$!")
	done
}
wait_load() {
	local p rc=0
	for p in "${wrk_pids[@]}"; do wait "$p" || rc=1; done
	wrk_pids=()
	return $rc
}
# to_ms "1.23ms" -> 1.23
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 0.001; else if (v ~ /ms$/) m = 1; else if (v ~ /s$/) m = 1000; else m = 1; printf "%.2f", n * m }'; }
# summary NAME -> "requests req/s failed p50ms p99ms v1 v2 other" over both wrk runs
# (latencies: the worse of the two, as both see the same backends)
summary() {
	local f reqs=0 rate=0 err=0 p50=0 p99=0 v1=0 v2=0 other=0 r e x y a b c
	for f in "$work/$1".*; do
		r=$(awk '/requests in/ { print $1 }' "$f")
		rate=$(awk -v a="$rate" '/^Requests\/sec:/ { printf "%.0f", a + $2 }' "$f")
		e=$(awk '/Socket errors/ { gsub(",", ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$f")
		x=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$f")")
		y=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$f")")
		read -r a b c < <(awk '/^versions:/ { print $2, $3, $4 }' "$f")
		reqs=$((reqs + r))
		err=$((err + e))
		v1=$((v1 + a))
		v2=$((v2 + b))
		other=$((other + c))
		p50=$(awk -v a="$p50" -v b="$x" 'BEGIN { print (b > a ? b : a) }')
		p99=$(awk -v a="$p99" -v b="$y" 'BEGIN { print (b > a ? b : a) }')
	done
	echo "$reqs $rate $err $p50 $p99 $v1 $v2 $other"
}

# benched: how often a proxy gave up on a backend so far (a connect that failed or timed out,
# 1 s, then retried on the next backend: no failed request, but a slow one).
benched() { cat "/run/shoal-lab-$LAB_ID"/agent*.log | grep -c 'proxy: benchupd backend .* benched' || true; }

# 1. Baseline.
k0=$(benched)
start_load base "$SECS"
wait_load || die "wrk failed: $(cat "$work"/base.*)"
k1=$(benched)

# 2. The update, under the same load (wrk stops at "completed"; 90 s is a ceiling).
start_load upd 90
sleep 0.3
t0=${EPOCHREALTIME/./}
shoal apply --detach -f - <"$work/v2.yaml" >/dev/null
state=
while :; do
	state=$(update_state)
	t1=${EPOCHREALTIME/./}
	[ "$state" != completed ] || break
	case "$state" in
	"rolled back"* | paused*) die "the update did not complete: $state" ;;
	esac
	[ $((t1 - t0)) -lt 85000000 ] || die "the update did not complete in 85 s: $state"
	sleep 0.1
done
# "completed" can come while the last replaced replicas still drain and stop: the load goes
# on until no task of an older version is left running or stopping.
while [ "$(old_left)" -ne 0 ]; do
	t2=${EPOCHREALTIME/./}
	[ $((t2 - t0)) -lt 85000000 ] || die "v1 replicas still run 85 s after the apply"
	sleep 0.1
done
t2=${EPOCHREALTIME/./}
for p in "${wrk_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
wait_load || true
k2=$(benched)
upd_s=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1e6 }')
gone_s=$(awk -v d=$((t2 - t0)) 'BEGIN { printf "%.1f", d / 1e6 }')

# 3. Every page from v2: 10 requests through each node's proxy.
pages=$(for a in "$A1" "$A2" "$(lab addr node3)"; do
	for ((i = 0; i < 10; i++)); do get "$a" || echo "FAILED"; done
done)
n_v2=$(grep -c '^web v2 on ' <<<"$pages" || true)
n_tasks=$(grep '^web v2 on ' <<<"$pages" | sort -u | wc -l)

for f in "$work"/base.* "$work"/upd.*; do
	grep -q 'requests in' "$f" || die "wrk gave no result: $(cat "$f")"
done
read -r br brate be bp50 bp99 bv1 bv2 bo < <(summary base)
read -r ur urate ue up50 up99 uv1 uv2 uo < <(summary upd)
echo "update: 10 replicas shoal/web:1 -> :2 on 3 nodes (parallelism 2, start-first, health every 500ms);"
echo "  2 x wrk -t1 -c$CONNS, Connection: close, GET /version through node1's and node2's proxies"
printf '  %-18s %7s %9s %7s %7s %8s %8s %8s   %s\n' "window" "seconds" "requests" "req/s" "FAILED" \
	"p50 ms" "p99 ms" "retried" "answered by v1/v2/other"
printf '  %-18s %7s %9s %7.0f %7s %8s %8s %8s   %s\n' "baseline (v1)" "$SECS" "$br" \
	"$brate" "$be" "$bp50" "$bp99" $((k1 - k0)) "$bv1/$bv2/$bo"
printf '  %-18s %7s %9s %7.0f %7s %8s %8s %8s   %s\n' "during the update" "$gone_s" "$ur" \
	"$urate" "$ue" "$up50" "$up99" $((k2 - k1)) "$uv1/$uv2/$uo"
echo "  update time: apply -> update_state completed ${upd_s} s; -> last v1 replica stopped ${gone_s} s"
echo "  after the update: $n_v2/30 pages from v2 ($n_tasks distinct replicas)"
echo "  (the update's wrk runs from 0.3 s before the apply until the last v1 replica stopped;"
echo "   FAILED = non-2xx/3xx + socket errors (connect, read, write, timeout 2s); must be 0;
   retried = a proxy's connect to a replica failed or timed out (1 s) and went to the next one:
   busybox httpd listens with a backlog of 9, so a CPU-starved replica drops SYNs)"
rc=0
if [ "$be" -ne 0 ] || [ "$ue" -ne 0 ] || [ "$bo" -ne 0 ] || [ "$uo" -ne 0 ]; then
	echo "bench/update.sh: FAILED requests (wrk output in $work, kept):" >&2
	cat "$work"/base.* "$work"/upd.* >&2
	for f in "/run/shoal-lab-$LAB_ID"/*.log; do cp "$f" "$work/" 2>/dev/null || true; done
	BENCH_KEEP=1
	rc=1
fi
if [ "$n_v2" -ne 30 ]; then
	echo "bench/update.sh: not every page came from v2:" >&2
	echo "$pages" >&2
	rc=1
fi
# The exit status (not `exit`: shellcheck 0.9 would call the trap's function unreachable).
[ "$rc" -eq 0 ]
