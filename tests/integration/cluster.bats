#!/usr/bin/env bats
# Issue 2 on the namespace lab: a scheduler and three agents find each other over the
# encrypted RPC, nodes go down and come back with their identity, the scheduler survives
# kill -9, and wrong tokens are refused without disturbing anyone else.
# Tests run in file order and share one cluster; teardown_file always removes it.

load helpers

BATS_TEST_TIMEOUT=60




# field NODE COLUMN: one column of `shoal nodes` for one node.
field() {
	shoal nodes | awk -v n="$1" -v c="$2" '$1 == n { print $c }'
}

node_is() {
	[ "$(field "$1" 3)" = "$2" ]
}

all_ready() {
	ready_is 3
}

cluster_suite 3

@test "init writes 0600 token files and refuses to replace a cluster without --force" {
	[ "$(stat -c %a "$DATA/sched/worker.token")" = 600 ]
	[ "$(stat -c %a "$DATA/sched/admin.token")" = 600 ]
	[ "$(stat -c %a "$DATA/sched/scheduler.key")" = 600 ]
	grep -q "$(cat "$DATA/sched/worker.token")" "$BATS_FILE_TMPDIR/init.out"
	grep -q '^SHOAL1-worker-[0-9a-f]\{64\}-[0-9a-f]\{64\}$' "$DATA/sched/worker.token"
	grep -q '^SHOAL1-admin-' "$DATA/sched/admin.token"
	before=$(cat "$DATA/sched/worker.token")
	run "$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/sched"
	[ "$status" -eq 1 ]
	[[ $output == *"already holds a cluster"*"--force"* ]]
	[ "$(cat "$DATA/sched/worker.token")" = "$before" ]
}

@test "three agents register: shoal nodes shows 3 ready nodes with CPUs, memory, distinct subnets" {
	wait_until 10 all_ready
	run shoal nodes
	[ "$status" -eq 0 ]
	echo "$output"
	[ "$(echo "$output" | head -1 | tr -s ' ')" = "NAME ADDRESS STATUS AVAILABILITY CPUS MEMORY TASKS SUBNET AGE" ]
	for i in 1 2 3; do
		line=$(echo "$output" | awk -v n="node$i" '$1 == n')
		[ "$(echo "$line" | awk '{print $2}')" = "$(lab addr "node$i")" ]
		[ "$(echo "$line" | awk '{print $4}')" = active ]
		[[ $(echo "$line" | awk '{print $5}') =~ ^[0-9]+\.[0-9]{2}$ ]]
		[[ $(echo "$line" | awk '{print $6}') =~ ^[0-9.]+(Ki|Mi|Gi|Ti)$ ]]
	done
	[ "$(echo "$output" | awk 'NR > 1 {print $8}' | sort -u | grep -c '^10\.244\.[0-9]*\.0/24$')" -eq 3 ]
	run shoal nodes -o json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c '"status": "ready"')" -eq 3 ]
	[ "$(echo "$output" | grep -c '"zone": "a"')" -eq 2 ]
}

@test "kill -9 an agent: its node is down within 3.5 s; restarted, it is ready with the same subnet" {
	wait_until 10 all_ready
	subnet=$(field node2 8)
	id=$(shoal nodes -o json | awk '/"id"/ {id=$2} /"name": "node2"/ {print id}')
	lab kill agent2 KILL
	wait_until 3.5 node_is node2 down
	node_is node1 ready
	node_is node3 ready
	grep -q 'node node2 down (no heartbeat for' "$LAB_RUN/sched.log"
	start_agent 2
	wait_until 5 node_is node2 ready
	[ "$(field node2 8)" = "$subnet" ]
	[ "$(shoal nodes -o json | awk '/"id"/ {id=$2} /"name": "node2"/ {print id}')" = "$id" ]
}

@test "kill -9 the scheduler and restart it: all nodes ready within 3 heartbeats, same subnets" {
	wait_until 10 all_ready
	before=$(shoal nodes | awk 'NR > 1 {print $1, $8}')
	lab kill sched KILL
	start_sched
	wait_until 3 all_ready
	[ "$(shoal nodes | awk 'NR > 1 {print $1, $8}')" = "$before" ]
	grep -q 'lost scheduler' "$LAB_RUN/agent1.log"
}

@test "an agent with a wrong token is refused, the scheduler logs why, the others stay ready" {
	wait_until 10 all_ready
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/other" >/dev/null
	lab spawn intruder node3 "$SHOAL_BIN/shoal-agent" --scheduler "$SCHED" \
		--token-file "$DATA/other/worker.token" --name intruder \
		--address "$(lab addr node3)" --data-dir "$DATA/intruder"
	wait_until 5 grep -q "$(lab addr node3):[0-9]*.*MAC" "$LAB_RUN/sched.log"
	lab kill intruder
	run shoal nodes
	[[ $output != *intruder* ]]
	all_ready
	grep -q 'cannot reach scheduler\|MAC\|scheduler' "$LAB_RUN/intruder.log"
}

@test "the CLI with the worker token is refused for admin requests with a clear message" {
	run lab exec sched "$SHOAL_BIN/shoal" --scheduler "$SCHED" --token-file "$DATA/sched/worker.token" nodes
	[ "$status" -eq 1 ]
	[[ $output == *"permission denied: this is a worker token"* ]]
}

@test "an unreachable scheduler is reported in one line within 5 s" {
	# A port nobody listens on: refused at once.
	SECONDS=0
	run lab exec node1 "$SHOAL_BIN/shoal" --scheduler 192.168.56.10:7199 --token-file "$DATA/sched/admin.token" nodes
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ $output == "shoal: cannot reach scheduler at 192.168.56.10:7199"* ]]
	# An address in the lab network where no host answers: times out.
	run lab exec node1 "$SHOAL_BIN/shoal" --scheduler 192.168.56.99:7100 --token-file "$DATA/sched/admin.token" nodes
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ $output == "shoal: cannot reach scheduler at 192.168.56.99:7100"* ]]
	[ "$SECONDS" -le 8 ]
}

@test "no token secret ever reaches a log" {
	for f in worker admin; do
		secret=$(cut -d- -f4 "$DATA/sched/$f.token")
		[ -n "$secret" ]
		# (not `! grep`: a negated command never fails a bats test)
		[ -z "$(grep -rl "$secret" "$LAB_RUN"/*.log)" ]
	done
}

@test "--max-heartbeats: 3 nodes at 1 a second are told 3 s, stay ready, and a lost one is down within 3 of them" {
	wait_until 10 all_ready
	lab kill sched
	SCHED_ARGS="--max-heartbeats 1" start_sched
	for i in 1 2 3; do
		wait_until 10 grep -q 'heartbeat=3000ms' "$LAB_RUN/agent$i.log"
	done
	# Past 3 of the old 1 s intervals, no node is down: each is judged by what it was told.
	sleep 5
	all_ready
	! grep -q 'down (no heartbeat' "$LAB_RUN/sched.log"
	lab kill agent2 KILL
	wait_until 12 node_is node2 down
	node_is node1 ready
	lab kill sched
	start_sched
	start_agent 2
	wait_until 10 all_ready
	# Registered again, at the configured interval.
	[ "$(grep -c 'heartbeat=1000ms' "$LAB_RUN/agent1.log")" -ge 2 ]
}

@test "SIGTERM stops the scheduler and agents cleanly" {
	lab kill agent3
	lab kill sched
	grep -q 'shutting down' "$LAB_RUN/sched.log"
	grep -q 'shutting down' "$LAB_RUN/agent3.log"
	! lab pid sched
}
