#!/usr/bin/env bats
# Issue 16 on the namespace lab: the scheduler's event stream (`shoal events`: nodes, tasks,
# services, updates, with filters and -o json), rollouts that `shoal apply`, `scale` and
# `rollback` wait for and show slot by slot, and a stuck rollout's reason and timeout.

load helpers

BATS_TEST_TIMEOUT=120
# apply, scale and rollback wait here (helpers.bash detaches them elsewhere).
export SHOAL_WATCH=1

setup_file() {
	cluster_setup 3
	export MF="$BATS_FILE_TMPDIR/manifests"
	mkdir -p "$MF"
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# evweb.yaml with VERSION of the image, REPLICAS and any extra line (update: ...).
evweb() {
	cat >"$MF/evweb.yaml" <<-YAML
		service: evweb
		image: shoal/web:$1
		replicas: $2
		command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
		health: {http: /healthz, port: 8080, interval: 500ms, timeout: 1s, retries: 2}
		restart: {policy: always, delay: 500ms}
		stop_grace: 1s
		${3:-}
	YAML
}

services_say() {
	shoal services | grep -q -- "$1"
}

# past SERVICE [ARGS...]: the events of the last 10 minutes that were about SERVICE, as JSON
# lines (--until 0s: the past only, no follow).
past() {
	local svc=$1
	shift
	shoal -o json events --since 10m --until 0s --filter "service=$svc" "$@"
}

@test "apply waits until the service converged and prints each slot's progress (not a tty)" {
	evweb 1 2 "update: {parallelism: 1, delay: 200ms, order: start-first, monitor: 2s}"
	run shoal apply -f "$MF/evweb.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"service evweb created"* ]]
	[[ $output == *"evweb: slot 1: running evweb.1."*" v1 on node"* ]]
	[[ $output == *"evweb: slot 2: healthy evweb.2."* ]]
	[[ $output == *"evweb: converged: 2/2 running"* ]]
	# It returned once both run: nothing left to wait for.
	running_is evweb 2
}

@test "in a terminal, apply draws one live progress line per slot" {
	cat >"$MF/tty.yaml" <<-YAML
		service: evtty
		image: shoal/web:1
		replicas: 2
		command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
		health: {http: /healthz, port: 8080, interval: 500ms, timeout: 1s, retries: 2}
		stop_grace: 1s
	YAML
	# script(1) gives the CLI a pseudo-terminal, as a user's shell would.
	run lab exec sched env TERM=xterm script -qefc "'$SHOAL_BIN/shoal' --scheduler $SCHED --token-file '$DATA/sched/admin.token' apply -f '$MF/tty.yaml'" /dev/null
	echo "$output" | cat -v
	[ "$status" -eq 0 ]
	# Lines redrawn in place (clear line, cursor up), a bar per slot, full once converged.
	[[ $output == *$'\e[2K'* ]]
	[[ $output == *$'\e[3A'* ]]
	[[ $output == *"evtty: converged: 2/2 running"* ]]
	[[ $output == *"slot 1   healthy   v1   [==========] node"* ]]
	[[ $output == *"slot 2   healthy   v1   [==========] node"* ]]
	# No plain event lines in a terminal.
	[[ $output != *"evtty: slot 1:"* ]]
	shoal rm evtty
}

@test "events: the past with filters (service, type, task) as lines and -o json" {
	run past evweb
	echo "$output"
	[ "$status" -eq 0 ]
	# One JSON object per line, in seq order, every one about evweb.
	[ "$(echo "$output" | jq -r .service | sort -u)" = "evweb" ]
	echo "$output" | jq -e -s 'map(.seq) == (map(.seq) | sort)'
	echo "$output" | jq -e -s 'any(.type == "service" and .action == "created")'
	echo "$output" | jq -e -s 'any(.type == "task" and .action == "running" and .slot == 1 and .version == 1)'
	echo "$output" | jq -e -s 'any(.type == "service" and .action == "converged")'
	run past evweb --filter type=task
	[ "$(echo "$output" | jq -r .type | sort -u)" = "task" ]
	task=$(echo "$output" | jq -r 'select(.slot == 2) | .task' | head -1)
	run past evweb --filter "task=$task"
	[ "$(echo "$output" | jq -r .task | sort -u)" = "$task" ]
	# Plain lines: TIME TYPE ACTION OBJECT node=N.
	run shoal events --since 10m --until 0s --filter service=evweb --filter type=service
	echo "$output"
	[[ ${lines[0]} =~ ^20[0-9-]+T[0-9:.]+Z\ service\ created\ evweb ]]
	# Bad filters and times are refused with the reason.
	run shoal events --filter colour=red --until 0s
	[ "$status" -eq 1 ]
	[[ $output == *"unknown key"* ]]
	run shoal events --since yesterday
	[ "$status" -eq 1 ]
	[[ $output == *"invalid time"* ]]
}

@test "events follow: an update, a scale and a drain as they happen" {
	shoal events --filter service=evweb >"$BATS_TEST_TMPDIR/follow.out" 2>&1 &
	follower=$!
	shoal events --filter type=node >"$BATS_TEST_TMPDIR/nodes.out" 2>&1 &
	nodes=$!
	sleep 0.5
	evweb 2 2 "update: {parallelism: 1, delay: 200ms, order: start-first, monitor: 2s}"
	run shoal apply -f "$MF/evweb.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"service evweb updated"* ]]
	[[ $output == *"evweb: update progress: updating 1/2"* ]]
	[[ $output == *"evweb: update completed"* ]]
	[[ $output == *"evweb: converged: 2/2 running"* ]]
	run shoal scale evweb=3
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"evweb: slot 3: running"* ]]
	[[ $output == *"evweb: converged: 3/3 running"* ]]
	running_is evweb 3
	shoal drain node1
	wait_until 30 grep -q "replaced evweb.*node=node1 .*(node drained)" "$BATS_TEST_TMPDIR/follow.out"
	shoal activate node1
	wait_until 10 grep -q "node active node1" "$BATS_TEST_TMPDIR/nodes.out"
	kill "$follower" "$nodes"
	cat "$BATS_TEST_TMPDIR/follow.out"
	grep -q "update started evweb version=2" "$BATS_TEST_TMPDIR/follow.out"
	grep -q "update completed evweb" "$BATS_TEST_TMPDIR/follow.out"
	grep -q "service scaled evweb (replicas 2 -> 3)" "$BATS_TEST_TMPDIR/follow.out"
	grep -q "task running evweb.1.* node=node.* version=2" "$BATS_TEST_TMPDIR/follow.out"
	grep -q "node drain node1" "$BATS_TEST_TMPDIR/nodes.out"
	# The node filter kept the task events out.
	! grep -q " task " "$BATS_TEST_TMPDIR/nodes.out"
}

@test "apply of an update that fails exits 1 with the reason once it rolled back" {
	evweb 2 3 "update: {parallelism: 1, order: start-first, failure_action: rollback, monitor: 3s}"
	shoal apply -d -f "$MF/evweb.yaml"
	wait_until 40 running_is evweb 3
	# Version 3 exits at once: the update rolls back to version 2.
	sed -i 's|^command: .*|command: ["sh", "-c", "echo broken; exit 3"]|' "$MF/evweb.yaml"
	run shoal apply -f "$MF/evweb.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"evweb: update rollback: task evweb."* ]]
	[[ $output == *"shoal: service evweb: update rolled back: task evweb."* ]]
	run shoal -o json events --since 1m --until 0s --filter service=evweb --filter type=update
	echo "$output" | jq -e -s 'any(.action == "rolled back")'
}

@test "rollback waits until rolled back" {
	evweb 1 3 "update: {parallelism: 0, order: start-first, monitor: 1s}"
	shoal apply -f "$MF/evweb.yaml"
	run shoal rollback evweb
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"evweb rolling back"* ]]
	[[ $output == *"evweb: rolled back"* ]]
	[ "$(shoal ps evweb -o json | jq -r '[.[] | select(.desired == "running") | .version] | unique | length')" -eq 1 ]
}

@test "a stuck rollout says why in services and inspect, and update.timeout ends it" {
	shoal rm evweb
	# One per node on three nodes: a fourth replica has nowhere to go.
	cat >"$MF/stuck.yaml" <<-YAML
		service: evstuck
		image: shoal/web:1
		replicas: 3
		command: ["sleep", "100000"]
		placement: {max_per_node: 1}
		update: {order: start-first, failure_action: pause, timeout: 4s}
		stop_grace: 1s
	YAML
	shoal apply -f "$MF/stuck.yaml"
	shoal scale evstuck=4 >"$BATS_TEST_TMPDIR/scale.out" 2>&1 &
	scaler=$!
	wait_until 10 services_say "waiting: every eligible node has max_per_node=1 tasks"
	run shoal inspect evstuck
	[[ $(echo "$output" | jq -r .update_state) == "waiting: every eligible node has max_per_node=1 tasks"* ]]
	# No progress for update.timeout: the waiting scale gives up with the reason.
	status=0
	wait "$scaler" || status=$?
	cat "$BATS_TEST_TMPDIR/scale.out"
	[ "$status" -eq 1 ]
	grep -q "shoal: service evstuck: stuck: no progress for 4s: waiting: every eligible node has max_per_node=1 tasks" "$BATS_TEST_TMPDIR/scale.out"
	shoal scale evstuck=3
	# An update no node can take: the timeout fires failure_action (pause).
	sed -i 's|^placement: .*|placement: {max_per_node: 1, constraints: ["node.labels.zone==nowhere"]}|' "$MF/stuck.yaml"
	shoal apply -f "$MF/stuck.yaml" >"$BATS_TEST_TMPDIR/apply.out" 2>&1 &
	applier=$!
	wait_until 10 services_say "updating 0/3, waiting: no node satisfies the placement constraints"
	status=0
	wait "$applier" || status=$?
	cat "$BATS_TEST_TMPDIR/apply.out"
	[ "$status" -eq 1 ]
	grep -q "shoal: service evstuck: update paused: no progress for 4s: waiting: no node satisfies the placement constraints" "$BATS_TEST_TMPDIR/apply.out"
	run shoal services
	echo "$output"
	[[ $output == *"paused: no progress for 4s"* ]]
	# The old tasks kept running (start-first).
	running_is evstuck 3
	shoal rm evstuck
}

@test "a new service that never runs makes apply exit 1 after update.timeout (stuck)" {
	cat >"$MF/crash.yaml" <<-YAML
		service: evcrash
		image: shoal/web:1
		replicas: 1
		command: ["sh", "-c", "exit 7"]
		restart: {policy: always, delay: 200ms}
		update: {timeout: 3s}
	YAML
	run shoal apply -f "$MF/crash.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"evcrash: slot 1: failed evcrash.1."*"exited with code 7"* ]]
	[[ $output == *"shoal: service evcrash: stuck: no progress for 3s: task evcrash.1."*"exited with code 7 (restarting)"* ]]
	# --detach returns at once, as before.
	run shoal apply -d -f "$MF/crash.yaml"
	[ "$status" -eq 0 ]
	[[ $output == "service evcrash unchanged" ]]
	shoal rm evcrash
}
