#!/usr/bin/env bats
# Lifecycle events that must change nothing they need not (issue 14, "Also found"):
#   - scheduler restarts with random downtimes restart no container: a restarted scheduler
#     gives the nodes it knows a grace period longer than the agents' reconnect back-off
#   - `shoal rm` then `shoal apply` creates the service afresh (created, slots 1..N)
#   - spread holds (one replica per node) after a start-first rolling update and a rollback
# Tests run in order on one cluster of 3 nodes.
#   RESTARTS=N        scheduler restarts (default 4)
#   RESTART_DOWN=A-B  downtimes in A..B seconds (default 5-15): the first is A, the last B
#                     (below and above the agents' back-off and the grace), the rest random

load helpers

RESTARTS=${RESTARTS:-4}
RESTART_DOWN=${RESTART_DOWN:-5-15}
# Per test; the restarts take the longest: each downtime, plus ~10 s to be ready again.
# shellcheck disable=SC2034 # read by bats
BATS_TEST_TIMEOUT=$((RESTARTS * (${RESTART_DOWN#*-} + 10) + 60))

cluster_suite 3

# containers: every container on every node (running or not) with its pid and start time;
# a container restarted or replaced changes this.
containers() {
	local i
	for i in 1 2 3; do
		rt "node$i" -o json ps -a | jq -r --arg n "node$i" '.[] | "\($n) \(.id) \(.state) \(.pid) \(.started_ms)"'
	done | sort
}

# per_node SERVICE: "N N N", its tasks wanted running on node1, node2, node3.
per_node() {
	local json
	json=$(shoal ps "$1" -o json)
	for n in node1 node2 node3; do
		jq --arg n "$n" '[.[] | select(.desired == "running" and .node == $n)] | length' <<<"$json"
	done | tr '\n' ' ' | sed 's/ $//'
}

state_is() {
	[[ "$(update_state "$1")" == "$2"* ]]
}

@test "scheduler restarts with random downtimes restart no container" {
	cat >"$BATS_FILE_TMPDIR/steady.yaml" <<-'EOF'
		service: steady
		image: shoal/web:1
		replicas: 6
		command: ["sleep", "100000"]
		restart: {policy: always, delay: 500ms}
		stop_grace: 1s
	EOF
	shoal apply -f "$BATS_FILE_TMPDIR/steady.yaml"
	wait_until 30 running_is steady 6
	before=$(containers)
	[ "$(wc -l <<<"$before")" -eq 6 ]
	lo=${RESTART_DOWN%-*} hi=${RESTART_DOWN#*-}
	for ((r = 1; r <= RESTARTS; r++)); do
		down=$((lo + RANDOM % (hi - lo + 1)))
		[ "$r" -ne 1 ] || down=$lo
		[ "$r" -ne "$RESTARTS" ] || down=$hi
		echo "# restart $r/$RESTARTS: scheduler down ${down}s" >&3
		# Each spawn starts a fresh log: keep every run's.
		cat "$LAB_RUN/sched.log" >>"$BATS_TEST_TMPDIR/sched.log"
		lab kill sched KILL
		sleep "$down"
		start_sched
		wait_until 20 ready_is 3
		wait_until 10 running_is steady 6
	done
	# Long enough for a node declared down to show it: the grace (10 s) has passed.
	sleep 11
	cat "$LAB_RUN/sched.log" >>"$BATS_TEST_TMPDIR/sched.log"
	[ "$(grep -c 'scheduler ready' "$BATS_TEST_TMPDIR/sched.log")" -eq $((RESTARTS + 1)) ]
	run grep -E 'down \(no heartbeat|replacing' "$BATS_TEST_TMPDIR/sched.log"
	echo "$output"
	[ "$status" -eq 1 ]
	after=$(containers)
	diff <(echo "$before") <(echo "$after")
	[ "$after" = "$before" ]
	running_is steady 6
	shoal rm steady
}

@test "shoal rm then shoal apply creates the service afresh: created, slots 1..N" {
	cat >"$BATS_FILE_TMPDIR/again.yaml" <<-'EOF'
		service: again
		image: shoal/web:1
		replicas: 3
		command: ["sleep", "100000"]
		stop_grace: 2s
	EOF
	shoal apply -f "$BATS_FILE_TMPDIR/again.yaml"
	wait_until 30 running_is again 3
	shoal rm again
	# At once, while the old tasks stop (sleep ignores SIGTERM: 2 s of stop_grace).
	run shoal apply -f "$BATS_FILE_TMPDIR/again.yaml"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"service again created"* ]]
	[[ $output != *"updated"* ]]
	wait_until 30 running_is again 3
	slots=$(shoal ps again | awk 'NR > 1 && $4 == "running" {split($1, p, "."); print p[2]}' | sort -n | tr '\n' ' ')
	[ "$slots" = "1 2 3 " ]
	run shoal services
	[[ $output == *"again"*"3/3"* ]]
	[[ $output != *"again"*"completed"* ]]
	shoal rm again
}

@test "spread holds after a start-first rolling update and its rollback" {
	cat >"$BATS_FILE_TMPDIR/spread.yaml" <<-'EOF'
		service: spread
		image: shoal/web:1
		replicas: 3
		command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
		health: {http: /healthz, port: 8080, interval: 500ms, timeout: 1s, retries: 2}
		update: {parallelism: 1, delay: 200ms, order: start-first, failure_action: pause, monitor: 3s}
		stop_grace: 2s
	EOF
	shoal apply -f "$BATS_FILE_TMPDIR/spread.yaml"
	wait_until 30 running_is spread 3
	[ "$(per_node spread)" = "1 1 1" ]
	sed 's#shoal/web:1#shoal/web:2#' "$BATS_FILE_TMPDIR/spread.yaml" >"$BATS_FILE_TMPDIR/spread2.yaml"
	shoal apply -f "$BATS_FILE_TMPDIR/spread2.yaml"
	wait_until 60 state_is spread completed
	wait_until 10 running_is spread 3
	echo "after the update: $(per_node spread)"
	[ "$(per_node spread)" = "1 1 1" ]
	shoal rollback spread
	wait_until 60 state_is spread "rolled back"
	wait_until 10 running_is spread 3
	echo "after the rollback: $(per_node spread)"
	[ "$(per_node spread)" = "1 1 1" ]
	shoal rm spread
}

# spread_is SERVICE "A B C": its tasks wanted running per node, and 3 in all running.
spread_is() {
	[ "$(per_node "$1")" = "$2" ] && running_is "$1" 3
}

# off_node3 SERVICE: 3 running, none wanted on node3.
off_node3() {
	[[ "$(per_node "$1")" == *" 0" ]] && running_is "$1" 3
}

@test "spread holds after a node returns: a task moves back, one at a time" {
	cat >"$BATS_FILE_TMPDIR/back.yaml" <<-'EOF'
		service: back
		image: shoal/web:1
		replicas: 3
		command: ["sleep", "100000"]
		stop_grace: 1s
	EOF
	shoal apply -f "$BATS_FILE_TMPDIR/back.yaml"
	wait_until 30 spread_is back "1 1 1"
	lab kill agent3 KILL
	# node3 down (3 missed heartbeats): its replica runs elsewhere, 2/1 on the live nodes.
	wait_until 15 off_node3 back
	start_agent 3
	wait_until 15 ready_is 3
	wait_until 30 spread_is back "1 1 1"
	grep -q 'service back: moving slot [0-9]* off node node[12] to even the spread' "$LAB_RUN/sched.log"
	shoal rm back
}
