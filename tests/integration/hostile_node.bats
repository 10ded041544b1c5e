#!/usr/bin/env bats
# Issue 12, "Node impersonation" and "unlimited names", played against real daemons on the
# namespace lab. The attacker holds the worker token (every agent has it):
#   - it starts a real shoal-agent with its own data dir (so its own fresh node key) under the
#     name of a node that exists: refused; the real node keeps its address, subnet and tasks,
#     and the impostor is given nothing to run;
#   - it invents node names as fast as it can (tests/tools/regflood): refused past the cap.
# And the way back for a node that really lost its key: `shoal node rm`, then it joins anew.
# Tests run in file order and share one cluster; teardown_file always removes it.

load helpers
bats_require_minimum_version 1.5.0

BATS_TEST_TIMEOUT=120

M="$BATS_TEST_DIRNAME/manifests"

# field NODE COLUMN: one column of `shoal nodes` for one node.
field() {
	shoal nodes | awk -v n="$1" -v c="$2" '$1 == n { print $c }'
}

node_is() {
	[ "$(field "$1" 3)" = "$2" ]
}

all_ready() {
	node_is node1 ready && node_is node2 ready && node_is node3 ready
}

# tasks_on NODE: ids of sleeper's running tasks on NODE, sorted.
tasks_on() {
	shoal ps sleeper -o json |
		jq -r --arg n "$1" '.[] | select(.node == $n and .state == "running") | .id' | sort
}

setup_file() {
	cluster_setup 3
	wait_until 20 all_ready
	shoal apply -f "$M/sleeper.yaml" >/dev/null
	wait_until 60 running_is sleeper 3
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

@test "each agent made a node key of its own in its data dir, mode 0600" {
	for i in 1 2 3; do
		[ "$(stat -c %a "$DATA/node$i/node.key")" = 600 ]
		grep -qE '^[0-9a-f]{128}$' "$DATA/node$i/node.key"
	done
	[ "$(sort -u "$DATA"/node{1,2,3}/node.key | wc -l)" -eq 3 ]
	# shoal nodes -o json shows the fingerprint the name is bound to, as the scheduler logged.
	fp=$(shoal nodes -o json | jq -r '.[] | select(.name == "node2") | .key')
	[[ $fp =~ ^[0-9a-f]{16}$ ]]
	grep -q "new node node2 with key $fp" "$LAB_RUN/sched.log"
	grep -q "new node node2 with key [0-9a-f]\{16\}" "$LAB_RUN/sched.log"
	# The key itself never reaches a log.
	run ! grep -rqF "$(cut -c1-64 "$DATA/node2/node.key")" "$LAB_RUN"/*.log
}

@test "an impostor agent with the worker token and node2's name is refused; node2 keeps its address, subnet and tasks" {
	wait_until 10 all_ready
	wait_until 30 running_is sleeper 3
	addr2=$(field node2 2)
	subnet2=$(field node2 8)
	tasks2=$(tasks_on node2)
	[ -n "$tasks2" ]
	# A real agent, its own fresh key, in another namespace with another address.
	lab spawn impostor sched "$SHOAL_BIN/shoal-agent" --scheduler "$SCHED" \
		--token-file "$DATA/sched/worker.token" --name node2 \
		--address "$(lab addr sched)" --data-dir "$DATA/impostor" --image-dir "$IMAGES"
	# Its first answer, then a few retries with its back-off.
	wait_until 10 grep -qE "scheduler refused registration|registered with scheduler" "$LAB_RUN/impostor.log"
	sleep 3
	# What the attack is after: node2's address (every node routes its /24 there), its
	# tasks (their specs and env). None of it moved.
	node_is node2 ready
	[ "$(field node2 2)" = "$addr2" ]
	[ "$(field node2 8)" = "$subnet2" ]
	[ "$(tasks_on node2)" = "$tasks2" ]
	running_is sleeper 3
	# Given nothing: never registered, no container in its store.
	run ! grep -q "registered with scheduler" "$LAB_RUN/impostor.log"
	[ "$("$SHOAL_BIN/shoalrt" --root "$DATA/impostor" ps | wc -l)" -eq 1 ]
	# Both ends say why, with the key fingerprints.
	grep -q "register node2 from $(lab addr sched):[0-9]* refused: the name is bound to key" "$LAB_RUN/sched.log"
	grep -q "scheduler refused registration: node name node2 is bound to another node key" "$LAB_RUN/impostor.log"
	# One line per attempt, no more.
	attempts=$(grep -c "scheduler refused registration" "$LAB_RUN/impostor.log")
	[ "$(grep -c "register node2 from .* refused" "$LAB_RUN/sched.log")" -le "$attempts" ]
	lab kill impostor
	all_ready
}

@test "the real node2, restarted with its key, registers again with the same subnet" {
	wait_until 10 all_ready
	subnet2=$(field node2 8)
	lab kill agent2
	# (lab spawn starts the daemon's log afresh)
	start_agent 2
	wait_until 10 node_is node2 ready
	grep -q "node key [0-9a-f]* loaded" "$LAB_RUN/agent2.log"
	grep -q "registered with scheduler" "$LAB_RUN/agent2.log"
	[ "$(field node2 2)" = "$(lab addr node2)" ]
	[ "$(field node2 8)" = "$subnet2" ]
	wait_until 30 running_is sleeper 3
}

@test "shoal node rm refuses a ready node without --force, and an unknown one" {
	run shoal node rm node2
	[ "$status" -eq 1 ]
	[[ $output == *"node node2 is ready: stop its agent first"*"--force"* ]]
	node_is node2 ready
	run shoal node rm nosuchnode
	[ "$status" -eq 1 ]
	[[ $output == *"no such node: nosuchnode"* ]]
	run shoal node
	[ "$status" -eq 1 ]
	[[ $output == *"usage: shoal node rm"* ]]
}

@test "node2 lost its key: refused until shoal node rm node2, then it joins anew and its tasks are replaced" {
	wait_until 10 all_ready
	lab kill agent2
	mv "$DATA/node2/node.key" "$DATA/node2/node.key.lost"
	start_agent 2
	wait_until 10 grep -q "scheduler refused registration: node name node2 is bound" "$LAB_RUN/agent2.log"
	grep -q "node key [0-9a-f]* created" "$LAB_RUN/agent2.log"
	wait_until 6 node_is node2 down
	[ "$(stat -c %a "$DATA/node2/node.key")" = 600 ]
	run shoal node rm node2
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = node2 ]
	grep -q "node node2 removed" "$LAB_RUN/sched.log"
	# Its next attempt (back-off at most 5 s) joins with the new key.
	wait_until 10 node_is node2 ready
	[ "$(grep -c "new node node2 with key" "$LAB_RUN/sched.log")" -eq 2 ]
	[ "$(field node2 2)" = "$(lab addr node2)" ]
	wait_until 60 running_is sleeper 3
}

@test "one connection registering many new names: one node per connection; a flood of new names stops at the burst" {
	wait_until 10 all_ready
	run lab exec sched "$SHOAL_BIN/tests/tools/regflood" "$SCHED" "$DATA/sched/worker.token" flood 1 10
	echo "$output"
	[ "$status" -eq 0 ]
	# One name, then refusals; past 4, short ones that cost the scheduler nothing.
	[[ $output == *"accepted=1 refused=9 closed=0"* ]]
	[[ $output == *"one node per connection"* ]]
	[[ $output == *"4 registrations refused on this connection: reconnect"* ]]
	# 70 connections, one new name each, as fast as the scheduler answers: the burst (50,
	# minus the names this file already used) and what refills at 5 a second, then refusals.
	run lab exec sched "$SHOAL_BIN/tests/tools/regflood" "$SCHED" "$DATA/sched/worker.token" burst 70 1
	[ "$status" -eq 0 ]
	summary=$(echo "$output" | tail -1)
	echo "$summary"
	[[ $summary =~ ^accepted=([0-9]+)\ refused=([0-9]+)\ closed=0$ ]]
	accepted=${BASH_REMATCH[1]}
	refused=${BASH_REMATCH[2]}
	[ "$accepted" -ge 40 ]
	[ "$accepted" -le 60 ]
	[ "$refused" -ge 10 ]
	[[ $output == *"too many new node names"* ]]
	# The refusals are logged at most once a second, however many there were.
	[ "$(grep -c "refused: too many new node names" "$LAB_RUN/sched.log")" -le 3 ]
	# The real nodes did not notice, and the CLI answers.
	all_ready
	running_is sleeper 3
	# Clean up the invented nodes (down or not: --force).
	for n in $(shoal nodes | awk '$1 ~ /^(flood|burst)-/ { print $1 }'); do
		shoal node rm --force "$n" >/dev/null
	done
	[ "$(shoal nodes | awk 'NR > 1' | wc -l)" -eq 3 ]
}

@test "shoal node rm --force on a ready node with a task: its session closes, its task is replaced, its agent joins again as a new node" {
	wait_until 10 all_ready
	wait_until 60 running_is sleeper 3
	id3=$(shoal nodes -o json | jq -r '.[] | select(.name == "node3") | .id')
	[ -n "$(tasks_on node3)" ]
	run shoal node rm --force node3
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "node node3 removed (forced)" "$LAB_RUN/sched.log"
	# The agent still runs: it reconnects, and with the name free its key binds anew.
	wait_until 15 node_is node3 ready
	[ "$(shoal nodes -o json | jq -r '.[] | select(.name == "node3") | .id')" != "$id3" ]
	wait_until 60 running_is sleeper 3
	all_ready
}
