# Shared helpers of Shoal's integration tests (bats). In a .bats file:
#   load helpers
#   setup_file()    { lab up 3; }
#   teardown()      { dump_logs_on_failure; }
#   teardown_file() { lab down; }
# Every lab client runs inside a lab namespace (`lab exec HOST ...`), never in the
# root namespace: the lab's addresses are blackholed there.
# shellcheck shell=bash

SHOAL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB_BIN="$SHOAL_ROOT/tests/lab/lab"
export LAB_RUN=${LAB_RUN:-/run/shoal-lab${LAB_ID:+-$LAB_ID}}

# SHOAL_BIN: the directory of the built binaries, absolute ($BUILD, default build/).
if [ -z "${SHOAL_BIN:-}" ]; then
	SHOAL_BIN=${BUILD:-build}
	[[ $SHOAL_BIN == /* ]] || SHOAL_BIN="$SHOAL_ROOT/$SHOAL_BIN"
fi
export SHOAL_BIN

# lab ARGS...: the lab script (tests/lab/lab --help).
lab() {
	bash "$LAB_BIN" "$@"
}

# wait_until TIMEOUT_S CMD...: run CMD every 100 ms until it succeeds; after TIMEOUT_S
# seconds (may be fractional, e.g. 0.5) fail with a message and CMD's last output.
wait_until() {
	local timeout=$1 int frac now deadline out
	shift
	[[ $timeout =~ ^([0-9]+)(\.([0-9]{1,6}))?$ ]] || {
		echo "wait_until: bad timeout '$timeout'" >&2
		return 2
	}
	int=${BASH_REMATCH[1]}
	frac=${BASH_REMATCH[3]}
	frac=$((10#${frac:-0} * 10 ** (6 - ${#frac})))
	now=${EPOCHREALTIME/./}
	deadline=$((10#$now + 10#$int * 1000000 + frac))
	while true; do
		if out=$("$@" 2>&1); then
			return 0
		fi
		now=${EPOCHREALTIME/./}
		if [ "$((10#$now))" -ge "$deadline" ]; then
			echo "wait_until: timed out after ${timeout}s: $*" >&2
			[ -z "$out" ] || printf 'wait_until: last output:\n%s\n' "$out" >&2
			return 1
		fi
		sleep 0.1
	done
}

# dump_logs: print every log of the lab's spawned daemons ($LAB_RUN/*.log).
dump_logs() {
	local f any=0
	for f in "$LAB_RUN"/*.log; do
		[ -e "$f" ] || continue
		any=1
		echo "----- $f"
		cat "$f"
	done
	[ "$any" = 1 ] || echo "----- no logs in $LAB_RUN"
	echo "----- end of logs"
}

# sanitizer_reports: fail, printing them, when a daemon of the lab logged an ASan or UBSan
# report (make check builds them with sanitizers; their stderr is their log).
sanitizer_reports() {
	local f found=0
	for f in "$LAB_RUN"/*.log "$LAB_RUN"/hosts/*/var/log/*.log; do
		[ -e "$f" ] || continue
		if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f"; then
			echo "----- sanitizer report in $f"
			grep -A20 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" | head -40
			found=1
		fi
	done
	[ "$found" = 0 ]
}

# dump_logs_on_failure: dump_logs when the current test failed (for teardown).
dump_logs_on_failure() {
	[ -n "${BATS_TEST_COMPLETED:-}" ] || dump_logs
	sanitizer_reports
}

# ---- a cluster on the lab: one scheduler and N agents (services, update, proxy, netnode) ----
# DATA holds every daemon's data dir; IMAGES the demo images (make images); AGENT_ARGS adds
# flags to every agent, SCHED_ARGS to the scheduler.

SCHED=${SCHED:-192.168.56.10:7100}

start_sched() {
	# shellcheck disable=SC2086 # SCHED_ARGS is a list of flags
	lab spawn sched sched "$SHOAL_BIN/shoal-scheduler" run --data-dir "$DATA/sched" \
		--listen "$SCHED" --heartbeat-interval 1s ${SCHED_ARGS:-}
}

# start_agent I: the agent of nodeI, labelled with its zone, importing the demo images.
start_agent() {
	local i=$1
	# shellcheck disable=SC2086 # AGENT_ARGS is a list of flags
	lab spawn "agent$i" "node$i" "$SHOAL_BIN/shoal-agent" --scheduler "$SCHED" \
		--token-file "$DATA/sched/worker.token" --name "node$i" \
		--address "$(lab addr "node$i")" --label "zone=$(lab zone "node$i")" \
		--data-dir "$DATA/node$i" --image-dir "$IMAGES" ${AGENT_ARGS:-}
}

# cluster_setup [N]: for setup_file: a fresh lab, a new cluster, its scheduler and N agents.
cluster_setup() {
	local n=${1:-3} i
	lab_fresh "$n"
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/sched" >"$BATS_FILE_TMPDIR/init.out"
	start_sched
	for ((i = 1; i <= n; i++)); do start_agent "$i"; done
}

# The CLI runs in a lab namespace, never in the root namespace (the lab's addresses are
# blackholed there).
# running_is SERVICE N: N of its tasks are meant to run and do.
running_is() {
	[ "$(shoal ps "$1" | awk 'NR > 1 && $4 == "running" && $5 == "running"' | wc -l)" -eq "$2" ]
}

# ips SERVICE: "node ip" of its running tasks.
ips() {
	shoal ps "$1" -o json | jq -r '.[] | select(.desired == "running" and .state == "running") | "\(.node) \(.ip)"' | sort
}

# apply, scale and rollback wait for the rollout by default; here they get --detach (return at
# once, as before) unless SHOAL_WATCH=1: the suites check the outcome with their own waits, and
# many apply services that never converge on purpose (a missing image, a crash, a bad update)
# or compare apply's output whole. events.bats tests the waiting itself.
shoal() {
	local detach=()
	case "${1:-}" in
	apply | scale | rollback) [ "${SHOAL_WATCH:-}" = 1 ] || detach=(--detach) ;;
	esac
	# SHOAL_CLI_HOST: where the CLI runs (a lab with SCHEDULERS=3 has no host sched).
	lab exec "${SHOAL_CLI_HOST:-sched}" "$SHOAL_BIN/shoal" --scheduler "$SCHED" \
		--token-file "$DATA/sched/admin.token" "$@" "${detach[@]}"
}

# rt NODE ARGS...: that node's runtime, for checks from the outside.
rt() {
	local n=$1
	shift
	"$SHOAL_BIN/shoalrt" --root "$DATA/$n" "$@"
}

# healthy_is SERVICE N: N of its tasks run and pass their health check.
healthy_is() {
	[ "$(shoal ps "$1" | awk '$4 == "running" && /running \(healthy\)/' | wc -l)" -eq "$2" ]
}

# The proxy suites' lab (proxy, proxymode, overload.bats): 3 nodes, each agent's proxy on 2
# threads, up for the whole file; their setup_file, teardown and teardown_file call these.
proxy_lab_up() {
	export AGENT_ARGS="--proxy-threads 2"
	cluster_setup 3
}

proxy_lab_down() {
	timeout 60 bash "$LAB_BIN" down
}

# ---- shared by several suites (dns, services, ha, lifecycle) ----

# update_state SERVICE: its update state, as `shoal services` shows it.
update_state() {
	shoal services -o json | jq -r --arg s "$1" '.[] | select(.name == $s) | .update_state'
}

# settled SERVICE STATE N: the update state starts with STATE, N tasks healthy, every running
# task on the service's current version.
settled() {
	local v
	[[ "$(update_state "$1")" == "$2"* ]] || return 1
	healthy_is "$1" "$3" || return 1
	v=$(shoal services -o json | jq -r --arg s "$1" '.[] | select(.name == $s) | .version')
	[ "$(shoal ps "$1" -o json | jq --argjson v "$v" \
		'[.[] | select(.desired == "running" and .version != $v)] | length')" -eq 0 ]
}

# cluster_teardown_file: for teardown_file of a cluster_setup 3: the agents killed, every
# container they left removed, the lab down.
cluster_teardown_file() {
	local n id
	for n in node1 node2 node3; do
		lab kill "agent${n#node}" KILL 2>/dev/null || true
	done
	for n in node1 node2 node3; do
		[ -d "$DATA/$n" ] || continue
		for id in $(rt "$n" -o json ps -a 2>/dev/null | jq -r '.[].id'); do
			rt "$n" rm -f "$id" >/dev/null 2>&1 || true
		done
	done
	timeout 60 bash "$LAB_BIN" down
}

# lab_fresh N: for setup_file: DATA and IMAGES set, the demo images made, a fresh lab of N
# nodes (cluster_setup's first step; ha and observe start their daemons their own way).
lab_fresh() {
	export DATA="$BATS_FILE_TMPDIR/data"
	export IMAGES
	IMAGES=$(cd "$SHOAL_BIN" && pwd)/images
	make -s -C "$SHOAL_ROOT" BUILD="$(dirname "$IMAGES")" images >/dev/null
	timeout 60 bash "$LAB_BIN" down
	timeout 60 bash "$LAB_BIN" up "$1"
}

# ready_is N: N nodes are ready.
ready_is() {
	[ "$(shoal nodes | awk 'NR > 1 && $3 == "ready"' | wc -l)" -eq "$1" ]
}

# cluster_suite N: the hooks of a suite whose tests run in order on one cluster_setup N:
# setup_file, teardown (logs of a failed test) and teardown_file (the lab down).
# shellcheck disable=SC2317 # bats calls the hooks
cluster_suite() {
	CLUSTER_SUITE_NODES=$1
	setup_file() {
		cluster_setup "$CLUSTER_SUITE_NODES"
	}
	teardown() {
		dump_logs_on_failure
	}
	teardown_file() {
		timeout 60 bash "$LAB_BIN" down
	}
}

# shoalrt_setup: for setup_file of the runtime suites (shoalrt on this host, no lab): skipped
# unless root; SHOALRT and SHOAL_SHIM the built ones; the demo images made.
shoalrt_setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
	export SHOALRT=$SHOAL_BIN/shoalrt
	export SHOAL_SHIM=$SHOAL_BIN/shoal-shim
	[ -x "$SHOALRT" ] || {
		echo "build shoalrt first (make)" >&2
		return 1
	}
	make -s -C "$SHOAL_ROOT" BUILD="$SHOAL_BIN" images >/dev/null
}

# ---- load through a change (lifecycle, ha): two lifeclients, new-conn and keep-alive (as
# lc-new and lc-ka), against the proxies of node1 and node2 (port 9280), each counting its
# answers and failures in $BATS_FILE_TMPDIR/{new,ka}.stats ----

# load_answered: both clients have had an answer.
load_answered() {
	local f
	for f in "$BATS_FILE_TMPDIR"/new.stats "$BATS_FILE_TMPDIR"/ka.stats; do
		[[ "$(cat "$f" 2>/dev/null)" =~ ok=([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] || return 1
	done
}

# load_start HOST: both clients running on HOST, each with an answer, before the event.
load_start() {
	local proxies client="$SHOAL_BIN/tests/tools/lifeclient"
	proxies="$(lab addr node1):9280 $(lab addr node2):9280"
	rm -f "$BATS_FILE_TMPDIR/stop" "$BATS_FILE_TMPDIR"/*.stats
	# shellcheck disable=SC2086 # proxies is a list
	lab spawn lc-new "$1" "$client" --stop-file "$BATS_FILE_TMPDIR/stop" \
		--stats "$BATS_FILE_TMPDIR/new.stats" $proxies >/dev/null
	# shellcheck disable=SC2086
	lab spawn lc-ka "$1" "$client" --keepalive --stop-file "$BATS_FILE_TMPDIR/stop" \
		--stats "$BATS_FILE_TMPDIR/ka.stats" $proxies >/dev/null
	wait_until 20 load_answered
}

load_stopped() {
	! lab pid lc-new >/dev/null 2>&1 && ! lab pid lc-ka >/dev/null 2>&1
}

# load_stop CASE MAX: stop the clients after a last second of load, add their counts to $TABLE
# (when set), and fail when a client had no answer or more than MAX failed requests (printing
# each failure).
load_stop() {
	local name=$1 max=$2 c line bad=0 fails
	sleep 1
	touch "$BATS_FILE_TMPDIR/stop"
	wait_until 20 load_stopped
	for c in new ka; do
		line=$(grep '^ok=' "$LAB_RUN/lc-$c.log" | tail -1)
		[[ $line =~ ok=([0-9]+)\ refused=([0-9]+)\ reset=([0-9]+)\ timeout=([0-9]+)\ bad=([0-9]+)\ slow=([0-9]+) ]] || {
			echo "client $c printed no counts:"
			cat "$LAB_RUN/lc-$c.log"
			return 1
		}
		[ -z "${TABLE:-}" ] || printf '%-34s %-9s %6s %7s %5s %7s %3s %4s\n' "$name" \
			"$([ $c = new ] && echo new-conn || echo keepalive)" "${BASH_REMATCH[@]:1}" >>"$TABLE"
		fails=$((BASH_REMATCH[2] + BASH_REMATCH[3] + BASH_REMATCH[4] + BASH_REMATCH[5]))
		echo "# $name $c: $line" >&3
		if [ "${BASH_REMATCH[1]}" -eq 0 ] || [ "$fails" -gt "$max" ]; then
			echo "client $c: $line (at most $max failures allowed)"
			grep -v '^ok=' "$LAB_RUN/lc-$c.log" | grep -v ' ok in ' | head -20
			bad=1
		fi
	done
	return "$bad"
}
