#!/usr/bin/env bash
# The scheduler at scale: a real shoal-scheduler on 127.0.0.1 and thousands of simulated agents
# (bench/simagents: real handshake, Register, heartbeats, a TaskReport per Assignments) in one
# process; 100 replicas per node.
#   bench/scale.sh                       rows for 100, 1,000 and 10,000 nodes
#   SCALE_NODES="100 1000" bench/scale.sh   other sizes
#   SCALE_KEEP=1 bench/scale.sh          keep the work dirs (logs, state.db) in /tmp
#   SCALE_PERF=1 bench/scale.sh          perf record -g the scheduler during each apply
#   SCALE_RECONNECT=1 bench/scale.sh     then every agent re-registers at once: the time until
#                                        all are back and the Endpoints bytes they received
#   SCALE_PERF_ARGS="--call-graph dwarf" other perf record options (default -g)
#   SCALE_HEARTBEAT=5s bench/scale.sh    the agents' heartbeat interval (default 1s, the
#                                        scheduler's default; Swarm's is 5s)
#   SCALE_MAX_HEARTBEATS=0 bench/scale.sh
#                                        the scheduler's --max-heartbeats (default: its own,
#                                        5,000 a second; 0: the interval never grows)
#   BENCH_AB=DIR bench/scale.sh          use the shoal-scheduler built in DIR (an A/B)
#   STORE=etcd bench/scale.sh            the etcd store: a local 3-member etcd on loopback
#                                        (tests/integration/etcd_cluster.bash), the scheduler
#                                        leading it alone; default sizes then: 1,000 nodes
#   STORE=etcd SCALE_LEASE_TTL=15 bench/scale.sh
#                                        the leader's lease TTL (default 3 s)
#   STORE=etcd SCALE_FAILOVER=10 bench/scale.sh
#                                        then also the failover time, N times: two schedulers,
#                                        kill -9 of the leader -> the other answers as leader
#                                        (its state loaded from etcd); min/median/max
#
# For each size: init and start a scheduler with a fresh data dir on a free port, start
# simagents, wait until every node is registered, then `shoal apply` nodes/100 services of
# 10,000 replicas (the per-service maximum), resources 0.01 CPU and 4Mi each, and measure:
#   register    simagents start -> every node registered (ramp of 256 handshakes in flight)
#   assigned    apply -> the agents hold every task (placement, store, Assignments)
#   running     apply -> `shoal services` counts every replica running, i.e. the scheduler
#               has processed every agent's acknowledgement
#   CPU         the scheduler's CPU time from the apply to all running
#   sim CPU     simagents' over the same time: it shares the machine's CPUs with the
#               scheduler, so (CPU + sim CPU) / CPUs bounds how soon all can be running
#   place/s     tasks / assigned
#   RSS, HWM    the scheduler's VmRSS after the apply, VmHWM (peak)
#   B/task      (VmRSS after - VmRSS before the apply) / tasks
#   hb us       scheduler CPU per heartbeat while idle: its CPU time (ns, /proc/PID/task/*/
#               schedstat, which utime+stime would give only in 10 ms ticks) over an idle
#               window with every node heartbeating, divided by the heartbeats answered
#   told        the heartbeat interval the scheduler told the agents (s): HEARTBEAT, longer
#               past --max-heartbeats (5,000 a second by default) nodes
#   idle CPU    the scheduler's CPU share over that window
#   recon       agent reconnections (a scheduler silent for 5 heartbeats loses its agents)
# Other arguments (bench/run passes its own) are ignored.
set -eEuo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
STORE=${STORE:-sqlite}
if [ "$STORE" = etcd ]; then NODES=${SCALE_NODES:-1000}; else NODES=${SCALE_NODES:-100 1000 10000}; fi
PER_NODE=100
PER_SERVICE=10000
TIMEOUT=${SCALE_TIMEOUT:-300}
IDLE_S=${SCALE_IDLE:-5}
HEARTBEAT=${SCALE_HEARTBEAT:-1s}
hb_args=()
[ -z "${SCALE_MAX_HEARTBEATS:-}" ] || hb_args=(--max-heartbeats "$SCALE_MAX_HEARTBEATS")

make -s BUILD="$BUILD" "$BUILD/bench/simagents" >/dev/null
bin=$(cd "$BUILD" && pwd)
sched_bin=$bin/shoal-scheduler
[ -z "${BENCH_AB:-}" ] || sched_bin=$(cd "$BENCH_AB" && pwd)/shoal-scheduler
for b in "$sched_bin" "$bin/shoal" "$bin/bench/simagents"; do
	[ -x "$b" ] || { echo "bench/scale.sh: $b missing: run make first" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "bench/scale.sh: needs jq" >&2; exit 1; }
# One descriptor per connection, in the scheduler and in simagents.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=
sched_pid=
sim_pid=
# On failure the work dir (logs, state.db) stays for a look.
trap '[ "$BASHPID" = "$$" ] || exit 1; if [ -n "$work" ]; then SCALE_KEEP=1; echo "bench/scale.sh: logs in $work" >&2; fi; stop_all' ERR
stop_all() {
	[ -z "$sim_pid" ] || { kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; }
	[ -z "$sched_pid" ] || { kill "$sched_pid" 2>/dev/null || true; wait "$sched_pid" 2>/dev/null || true; }
	sim_pid=
	sched_pid=
	if [ -n "$work" ] && [ -z "${SCALE_KEEP:-}" ]; then rm -rf "$work"; fi
	work=
}
etcd_args=()
etcd_run=0
if [ "$STORE" = etcd ]; then
	command -v etcd >/dev/null || { echo "bench/scale.sh: etcd-server is not installed" >&2; exit 1; }
	# shellcheck source=tests/integration/etcd_cluster.bash
	. tests/integration/etcd_cluster.bash
	etcd_cluster_up "$(mktemp -d /tmp/shoal-scale-etcd.XXXXXX)"
fi
trap 'stop_all; [ "$STORE" != etcd ] || etcd_cluster_down' EXIT
trap 'exit 1' TERM INT
# The scheduler's store arguments for the next run: a fresh prefix each time.
next_store() {
	etcd_args=()
	[ "$STORE" = etcd ] || return 0
	etcd_run=$((etcd_run + 1))
	etcd_args=(--store "$ETCD_ENDPOINTS" --store-prefix "/scale$$-$etcd_run/" --http off
		--lease-ttl "${SCALE_LEASE_TTL:-3}")
}

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# The scheduler's (or process $1's) CPU time in ns, summed over its threads.
cpu_ns() { cat /proc/"${1:-$sched_pid}"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
# utime+stime in clock ticks, as a cross-check of the above.
cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$sched_pid"/stat; }
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' /proc/"$sched_pid"/status; }
# Wait for simagents' line starting with $1; print its wall ms.
wait_line() {
	local what=$1 deadline=$(($(now_ms) + TIMEOUT * 1000)) l
	while :; do
		l=$(grep -m1 "^$what " "$work/sim.out" || true)
		[ -z "$l" ] || { echo "$l" | cut -d' ' -f2; return 0; }
		kill -0 "$sim_pid" 2>/dev/null || { echo "bench/scale.sh: simagents died" >&2; return 1; }
		[ "$(now_ms)" -lt "$deadline" ] || { echo "bench/scale.sh: no '$what' within ${TIMEOUT}s" >&2; return 1; }
		sleep 0.02
	done
}
# A fresh stats line from simagents; print field $1 of it.
sim_stat() {
	local before after
	before=$(grep -c '^stats ' "$work/sim.out" || true)
	kill -USR1 "$sim_pid"
	for _ in $(seq 200); do
		after=$(grep -c '^stats ' "$work/sim.out" || true)
		[ "$after" -gt "$before" ] && break
		sleep 0.01
	done
	grep '^stats ' "$work/sim.out" | tail -1 | tr ' ' '\n' | sed -n "s/^$1=//p"
}
cli() { "$bin/shoal" --scheduler "127.0.0.1:$port" --token-file "$work/data/admin.token" "$@"; }
running() { cli services -o json | jq '[.[].replicas.running] | add // 0'; }

declare -a rows eprows
run_one() {
	local n=$1 tasks nsvc per t_start t_ready t0 t_assigned t_running rss0 rss1 hwm
	local c0 c1 k0 k1 h0 h1 w0 w1 a0 a1 s0 s1 recon downs load perf_pid=
	tasks=$((n * PER_NODE))
	nsvc=$(((tasks + PER_SERVICE - 1) / PER_SERVICE))
	per=$((tasks / nsvc))
	tasks=$((per * nsvc))
	work=$(mktemp -d /tmp/shoal-scale.XXXXXX)
	# The machine may be shared: each row says how loaded it was when the row started.
	load=$(cut -d' ' -f1 /proc/loadavg)
	port=$(free_port)
	"$sched_bin" init --data-dir "$work/data" >/dev/null
	next_store
	# A /8 cluster CIDR: one /24 per node for up to 65,535 nodes.
	"$sched_bin" run --data-dir "$work/data" --listen "127.0.0.1:$port" --cluster-cidr 10.0.0.0/8 --no-routes --join-rate 1000000 --heartbeat-interval "$HEARTBEAT" ${hb_args[@]+"${hb_args[@]}"} ${etcd_args[@]+"${etcd_args[@]}"} 2>"$work/sched.log" &
	sched_pid=$!
	for _ in $(seq 200); do cli nodes >/dev/null 2>&1 && break; sleep 0.05; done
	t_start=$(now_ms)
	"$bin/bench/simagents" --scheduler "127.0.0.1:$port" --token-file "$work/data/worker.token" \
		--nodes "$n" --expect "$tasks" >"$work/sim.out" 2>"$work/sim.err" &
	sim_pid=$!
	t_ready=$(wait_line ready)
	sleep 1
	rss0=$(status_kb VmRSS)
	for ((i = 0; i < nsvc; i++)); do
		printf -- '---\nservice: s%03d\nimage: shoal/web:1\nreplicas: %d\nresources: {cpus: 0.01, memory: 4Mi}\n' \
			"$i" "$per"
	done >"$work/services.yaml"
	if [ -n "${SCALE_PERF:-}" ]; then
		read -ra perf_args <<<"${SCALE_PERF_ARGS:--g}"
		perf record "${perf_args[@]}" -o "$work/perf.data" -p "$sched_pid" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
	fi
	t0=$(now_ms)
	a0=$(cpu_ns)
	s0=$(cpu_ns "$sim_pid")
	cli apply --detach -f "$work/services.yaml" >/dev/null
	t_assigned=$(wait_line assigned)
	while [ "$(running)" -lt "$tasks" ]; do
		[ $(($(now_ms) - t0)) -lt $((TIMEOUT * 1000)) ] || { echo "bench/scale.sh: $n nodes: not all running after ${TIMEOUT}s" >&2; return 1; }
		sleep 0.05
	done
	t_running=$(now_ms)
	a1=$(cpu_ns)
	s1=$(cpu_ns "$sim_pid")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
		echo "perf data: $work/perf.data" >&2
	fi
	rss1=$(status_kb VmRSS)
	hwm=$(status_kb VmHWM)
	# Idle: every node heartbeating, nothing else to do.
	sleep 2
	c0=$(cpu_ns) k0=$(cpu_ticks) h0=$(sim_stat replies) w0=$(now_ms)
	sleep "$IDLE_S"
	c1=$(cpu_ns) k1=$(cpu_ticks) h1=$(sim_stat replies) w1=$(now_ms)
	recon=$(sim_stat closed)
	told=$(sim_stat hbms)
	# Nodes the scheduler declared down meanwhile (none should be: every agent heartbeats).
	downs=$(grep -c 'down (no heartbeat' "$work/sched.log" || true)
	local rc_s=- rc_b=0 r0 ep_f ep_b as_b
	ep_f=$(sim_stat endpoints) ep_b=$(sim_stat epbytes) as_b=$(sim_stat asbytes)
	if [ -n "${SCALE_RECONNECT:-}" ]; then
		# Every agent comes back at once (a scheduler restart, a network cut): each gets the
		# full table at registration, so its size times the nodes is what the storm costs.
		local n_ready
		n_ready=$(grep -c '^ready ' "$work/sim.out" || true)
		r0=$(now_ms)
		kill -USR2 "$sim_pid"
		until [ "$(grep -c '^ready ' "$work/sim.out" || true)" -gt "$n_ready" ]; do
			[ $(($(now_ms) - r0)) -lt $((TIMEOUT * 1000)) ] || { echo "bench/scale.sh: agents not back within ${TIMEOUT}s" >&2; return 1; }
			sleep 0.05
		done
		rc_s=$(awk -v ms=$(($(now_ms) - r0)) 'BEGIN { printf "%.2f", ms / 1000 }')
		rc_b=$(($(sim_stat epbytes) - ep_b))
	fi
	eprows+=("$(awk -v n="$n" -v f="$ep_f" -v b="$ep_b" -v rs="$rc_s" -v rb="$rc_b" -v a="$as_b" 'BEGIN {
		printf "  %6d %9d %10.1f %10.1f %12s %12.1f %14.1f\n", n, f, b / 1048576, b / 1024 / n, rs, rb / 1048576, a / 1048576 }')")
	rows+=("$(awk -v n="$n" -v t="$tasks" -v reg=$((t_ready - t_start)) -v as=$((t_assigned - t0)) \
		-v run=$((t_running - t0)) -v acpu=$((a1 - a0)) -v scpu=$((s1 - s0)) -v r0="$rss0" -v r1="$rss1" -v hwm="$hwm" -v c=$((c1 - c0)) \
		-v k=$((k1 - k0)) -v h=$((h1 - h0)) -v w=$((w1 - w0)) -v told="$told" -v recon="$recon" -v downs="$downs" -v load="$load" 'BEGIN {
		printf "  %6d %8d %9.2f %9.2f %9.2f %7.2f %7.2f %9.0f %8.1f %8.1f %7.0f %6.1f %6.1f %5.1f %6.1f%% %5d %5d %5s\n",
			n, t, reg / 1000, as / 1000, run / 1000, acpu / 1e9, scpu / 1e9, t / (as / 1000), r1 / 1024, hwm / 1024,
			(r1 - r0) * 1024 / t, c / 1000 / h, k * 10000 / h, told / 1000, c / 1e4 / w, recon, downs, load }')")
	stop_all
}

# failover N: two schedulers on one etcd prefix with a service of 1,000 replicas stored; N
# times kill -9 the leader, time until the other answers as leader, start the killed one again.
fover=()
failover() {
	local rounds=$1 pids=() ports=() l o t0 i k
	work=$(mktemp -d /tmp/shoal-scale.XXXXXX)
	"$sched_bin" init --data-dir "$work/data" >/dev/null
	next_store
	ports=("$(free_port)" "$(free_port)")
	start() {
		"$sched_bin" run --data-dir "$work/data" --listen "127.0.0.1:${ports[$1]}" \
			--advertise "127.0.0.1:${ports[$1]}" "${etcd_args[@]}" 2>>"$work/sched$1.log" &
		pids[$1]=$!
	}
	start 0
	start 1
	# The one `shoal nodes` names as leader (a follower's answer is followed to the leader,
	# so that one answering at all says nothing about who leads).
	lead() {
		local a
		a=$("$bin/shoal" --scheduler "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}" \
			--token-file "$work/data/admin.token" nodes 2>/dev/null | awk '$1 == "Leader:" {print $2}') || return 1
		for k in 0 1; do
			[ "$a" = "127.0.0.1:${ports[$k]}" ] && { echo "$k"; return 0; }
		done
		return 1
	}
	for _ in $(seq 200); do l=$(lead) && break; sleep 0.05; done
	port=${ports[$l]}
	printf -- 'service: f\nimage: shoal/web:1\nreplicas: 1000\n' >"$work/f.yaml"
	cli apply --detach -f "$work/f.yaml" >/dev/null
	for ((i = 0; i < rounds; i++)); do
		l=$(lead)
		o=$((1 - l))
		t0=$(now_ms)
		kill -9 "${pids[$l]}"
		wait "${pids[$l]}" 2>/dev/null || true
		until [ "$(lead || true)" = "$o" ]; do
			[ $(($(now_ms) - t0)) -lt 30000 ] || { echo "bench/scale.sh: no new leader in 30s" >&2; return 1; }
			sleep 0.02
		done
		fover+=($(($(now_ms) - t0)))
		start "$l"
		sleep 1
	done
	kill "${pids[0]}" "${pids[1]}" 2>/dev/null || true
	wait "${pids[0]}" "${pids[1]}" 2>/dev/null || true
	[ -n "${SCALE_KEEP:-}" ] || rm -rf "$work"
	work=
}

for n in $NODES; do
	run_one "$n"
done
if [ "$STORE" = etcd ] && [ "${SCALE_FAILOVER:-0}" -gt 0 ]; then
	failover "$SCALE_FAILOVER"
fi
echo "scale: shoal-scheduler ($STORE store) with simulated agents on 127.0.0.1, $PER_NODE replicas per node, heartbeat $HEARTBEAT, --max-heartbeats ${SCALE_MAX_HEARTBEATS:-default} ($(nproc) CPUs)"
printf '  %6s %8s %9s %9s %9s %7s %7s %9s %8s %8s %7s %6s %6s %5s %7s %5s %5s %5s\n' nodes tasks "register" "assigned" \
	"running" "CPU" "sim CPU" "place/s" "RSS MiB" "HWM MiB" "B/task" "hb us" "(tick)" "told" "idle" recon down load
printf '  %6s %8s %9s %9s %9s %7s %7s %9s %8s %8s %7s %6s %6s %5s %7s %5s %5s %5s\n' "" "" s s s s s "" "" "" "" "" "" s CPU "" "" 1min
printf '%s\n' "${rows[@]}"
echo "Endpoints (and Assignments) the agents received, registration to the end of the idle window:"
printf '  %6s %9s %10s %10s %12s %12s %14s\n' nodes frames "MiB" "KiB/node" "reconnect s" "reconnect MiB" "Assign. MiB"
printf '%s\n' "${eprows[@]}"
if [ "${#fover[@]}" -gt 0 ]; then
	printf '%s\n' "${fover[@]}" | sort -n | awk '{ v[NR] = $1 } END {
		printf "failover (kill -9 of the leader -> the other leads, lease TTL '"${SCALE_LEASE_TTL:-3}"'s), %d runs: min %.2fs, median %.2fs, max %.2fs\n",
			NR, v[1] / 1000, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) / 1000, v[NR] / 1000 }'
fi
