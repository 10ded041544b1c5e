#!/usr/bin/env bats
# Issue 20 on the namespace lab: replicas limited to 0.1 CPU, saturated by 50 concurrent
# clients through one node's proxy. A busy replica is not a dead one: no client is closed
# without an answer while the queue timeout has not passed, and the queue shows in
# `shoal services --stats`. Clients run in the scheduler's namespace (no replica, no proxy).

load helpers

BATS_TEST_TIMEOUT=150
M="$BATS_TEST_DIRNAME/manifests"
CLIENT="$SHOAL_BIN/tests/tools/overload_client"

# answers ADDR PORT: one request through the proxy gets the page.
answers() {
	lab exec sched timeout 3 busybox wget -qO- "http://$1:$2/" | grep -q "web v1"
}

# field NAME: NAME=VALUE from the client's summary in $output.
field() {
	echo "$output" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'
}

# stat SERVICE KEY: KEY of the service total in `shoal services --stats -o json`.
stat() {
	shoal services --stats -o json | jq -r --arg s "$1" --arg k "$2" \
		'.[] | select(.name == $s) | .stats[] | select(.backend == "") | .[$k]'
}

# stat_is SERVICE KEY OP N: that stat compared with test's OP (-eq, -gt...), read anew at
# each call. (`wait_until 20 test "$(stat ...)" -eq 0` expands the stat once, before the
# first try: a heartbeat taken while clients still waited kept reading as a stuck gauge.)
stat_is() {
	[ "$(stat "$1" "$2")" "$3" "$4" ]
}

# saturate SERVICE REPLICAS NODE PORT CONNS SECONDS: apply manifests/SERVICE.yaml, wait for
# it to answer through NODE's proxy on PORT, then CONNS clients for SECONDS from the
# scheduler's host, each waiting up to 25 s for its answer; their summary in $output.
saturate() {
	local addr
	shoal apply -f "$M/$1.yaml"
	wait_until 60 healthy_is "$1" "$2"
	addr=$(lab addr "$3")
	wait_until 10 answers "$addr" "$4"
	run lab exec sched timeout 60 "$CLIENT" "$addr" "$4" "$5" "$6" 25
	echo "$output" >&3
	[ "$status" -eq 0 ]
}

# queue_drained SERVICE: no client waits for it any more (the queue gauge, summed over the
# nodes' proxies, is 0); the stats shown when it is not, generous for a loaded CI machine.
queue_drained() {
	wait_until 30 stat_is "$1" queue_len -eq 0 || {
		shoal services --stats >&3
		return 1
	}
}

setup_file() { proxy_lab_up; }
teardown() { dump_logs_on_failure; }
teardown_file() { proxy_lab_down; }

@test "50 clients on 3 replicas at 0.1 CPU: every connection answered, the rest queued" {
	saturate webload 3 node1 8090 50 8
	[ "$(field closed)" -eq 0 ]
	[ "$(field timeouts)" -eq 0 ]
	[ "$(field responses)" -gt 20 ]
	# The queue was used, and shows (the heartbeat brings the counters within a second).
	wait_until 5 stat_is webload queued -gt 0
	[ "$(stat webload queue_timeouts)" -eq 0 ]
	run shoal services --stats
	echo "$output" >&3
	echo "$output" | grep -qE 'RETRIES +QUEUED +WAIT +QUEUE TIMEOUTS$'
	echo "$output" | grep -E '^webload +total ' | grep -qE ' [0-9]+ms '
	# Every client answered: none waits.
	queue_drained webload
}

@test "queue_timeout 1s on a saturated replica: a client is closed only after waiting 1s" {
	saturate webqto 1 node2 8091 40 6
	[ "$(field responses)" -gt 0 ]
	# Some waited past the timeout and were closed, none sooner.
	[ "$(field closed)" -gt 0 ]
	[ "$(field closed_min_ms)" -ge 1000 ]
	wait_until 5 stat_is webqto queue_timeouts -gt 0
	# Every client answered or timed out: none waits.
	queue_drained webqto
}
