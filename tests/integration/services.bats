#!/usr/bin/env bats
# Issue 4 on the namespace lab with real containers: a manifest becomes running replicas
# spread over the nodes, and the cluster keeps that many through crashes, lost nodes,
# scaling, draining and scheduler restarts. Tests run in order on one cluster;
# teardown_file removes every container, namespace and process.

load helpers

BATS_TEST_TIMEOUT=90
M="$BATS_TEST_DIRNAME/manifests"





# per_node SERVICE: "node1 N" lines for its running tasks.
per_node() {
	shoal ps "$1" | awk 'NR > 1 && $4 == "running" && $5 == "running" {print $3}' | sort | uniq -c |
		awk '{print $2, $1}'
}

# ids SERVICE: its running tasks' "name started_at" (to tell a restart).
task_ids() {
	shoal ps "$1" -o json | jq -r '.[] | select(.desired == "running" and .state == "running") | "\(.name) \(.started_at_ms)"' | sort
}

no_service() {
	! shoal services | grep -q "^$1 "
}

ps_has() {
	shoal ps "$1" -a | grep -q -- "$2"
}

none_on() {
	! per_node "$1" | grep -q "^$2 "
}

node_ready() {
	shoal nodes | grep -q "^$1 .*ready"
}

# replaced_off SERVICE NODE COUNT: COUNT replicas run, none on NODE.
replaced_off() {
	none_on "$1" "$2" && running_is "$1" "$3"
}

# Kill every container of a node and the shims that own them.
kill_node_containers() {
	local n=$1 pid
	for pid in $(rt "$n" -o json ps -a | jq -r '.[] | select(.state == "running") | .pid, .shim_pid'); do
		kill -9 "$pid" 2>/dev/null || true
	done
}

setup_file() {
	cluster_setup 3
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	cluster_teardown_file
}

@test "a bad manifest is refused with every FILE:LINE:COL error and changes nothing" {
	run shoal apply -f "$M/bad.yaml"
	[ "$status" -eq 1 ]
	[[ $output == *"bad.yaml:3:11: "*"replicas"* ]]
	[[ $output == *"bad.yaml:4:1: "*"restrat"* ]]
	[[ $output == *"bad.yaml:5:21: "*"64MB"* ]]
	run shoal services
	[ "$status" -eq 0 ]
	[[ $output != *broken* ]]
}

@test "apply 3 replicas: one per node, all running" {
	run shoal apply -f "$M/sleeper.yaml"
	[ "$status" -eq 0 ]
	[[ $output == *"sleeper created"* ]]
	wait_until 30 running_is sleeper 3
	[ "$(per_node sleeper)" = "$(printf 'node1 1\nnode2 1\nnode3 1')" ]
	run shoal services
	[[ $output == *"sleeper"*"shoal/web:1"*"3/3"* ]]
	# Applying the same file again changes nothing.
	run shoal apply -f "$M/sleeper.yaml"
	[[ $output == *"sleeper unchanged"* ]]
}

@test "the demo image serves its replica's name on each node (host network)" {
	shoal apply -f "$M/web-host.yaml"
	wait_until 30 running_is webhost 3
	for i in 1 2 3; do
		addr=$(lab addr "node$i")
		wait_until 5 lab exec "node$i" timeout 2 busybox wget -qO- "http://$addr:8080/"
		run lab exec "node$i" timeout 2 busybox wget -qO- "http://$addr:8080/"
		[[ $output == *"web v1 on webhost."* ]]
	done
	shoal rm webhost
	wait_until 20 no_service webhost
}

@test "scale to 6 gives two per node; scale to 1 leaves one" {
	shoal scale sleeper=6
	wait_until 30 running_is sleeper 6
	[ "$(per_node sleeper)" = "$(printf 'node1 2\nnode2 2\nnode3 2')" ]
	shoal scale sleeper=1
	wait_until 30 running_is sleeper 1
	shoal scale sleeper=3
	wait_until 30 running_is sleeper 3
	[ "$(per_node sleeper)" = "$(printf 'node1 1\nnode2 1\nnode3 1')" ]
}

@test "a container whose process is killed is restarted per its policy" {
	wait_until 30 running_is sleeper 3
	victim=$(shoal ps sleeper | awk 'NR > 1 && $5 == "running" && $3 == "node2" {print $1; exit}')
	[ -n "$victim" ]
	pid=$(rt node2 inspect "$victim" | jq -r .pid)
	kill -9 "$pid"
	wait_until 10 ps_has sleeper "^$victim .*failed"
	wait_until 15 running_is sleeper 3
	run shoal ps sleeper -a
	[[ $output == *"$victim"*"failed"* ]]
}

@test "kill -9 an agent and its containers: its replicas run elsewhere within 5 s" {
	wait_until 30 running_is sleeper 3
	lab kill agent3 KILL
	kill_node_containers node3
	SECONDS=0
	wait_until 8 replaced_off sleeper node3 3
	echo "replaced after ${SECONDS}s" >&3
	[ "$(per_node sleeper | grep -c node3)" -eq 0 ]
	start_agent 3
	wait_until 10 node_ready node3
}

@test "drain moves a node's tasks elsewhere and keeps new ones off; activate undoes it" {
	shoal scale sleeper=3
	wait_until 30 running_is sleeper 3
	run shoal drain node1
	[ "$status" -eq 0 ]
	wait_until 20 none_on sleeper node1
	wait_until 10 running_is sleeper 3
	shoal nodes | grep -q 'node1 .*drain'
	shoal scale sleeper=6
	wait_until 30 running_is sleeper 6
	none_on sleeper node1
	shoal activate node1
	shoal nodes | grep -q 'node1 .*active'
	shoal scale sleeper=3
	wait_until 30 running_is sleeper 3
}

@test "kill -9 the scheduler and restart it: same services, no container restarted" {
	wait_until 30 running_is sleeper 3
	before=$(task_ids sleeper)
	lab kill sched KILL
	start_sched
	wait_until 10 running_is sleeper 3
	sleep 2
	[ "$(task_ids sleeper)" = "$before" ]
	grep -q 'adopted' "$LAB_RUN/sched.log"
}

@test "kill -9 an agent and restart it: its containers were never restarted" {
	wait_until 30 running_is sleeper 3
	before=$(task_ids sleeper)
	lab kill agent2 KILL
	start_agent 2
	sleep 2
	wait_until 10 running_is sleeper 3
	[ "$(task_ids sleeper)" = "$before" ]
	grep -q 're-adopted' "$LAB_RUN/agent2.log"
}

@test "a re-adopted container that dies is reported and restarted" {
	wait_until 30 running_is sleeper 3
	# agent2 was restarted by the previous test: its container is watched through a pidfd.
	victim=$(shoal ps sleeper | awk 'NR > 1 && $4 == "running" && $3 == "node2" {print $1; exit}')
	[ -n "$victim" ]
	grep -q 're-adopted' "$LAB_RUN/agent2.log"
	kill -9 "$(rt node2 inspect "$victim" | jq -r .pid)"
	wait_until 10 ps_has sleeper "^$victim .*failed"
	wait_until 15 running_is sleeper 3
}

@test "a missing image fails its tasks with a message that names it" {
	printf 'service: ghost\nimage: shoal/web:9\nreplicas: 1\nrestart: {policy: never}\n' >"$BATS_TEST_TMPDIR/ghost.yaml"
	shoal apply -f "$BATS_TEST_TMPDIR/ghost.yaml"
	wait_until 20 ps_has ghost 'image shoal/web:9 not found on node'

	shoal rm ghost
}

@test "shoal logs prints a service's or one task's output, relayed from its node" {
	shoal apply -f "$M/talker.yaml"
	wait_until 30 running_is talker 2
	t1=$(shoal ps talker | awk 'NR > 1 && $5 == "running" {print $1; exit}')
	run shoal logs talker
	[ "$status" -eq 0 ]
	[[ $output == *"| hello from talker."* ]]
	[ "$(echo "$output" | grep -c 'hello from talker')" -eq 2 ]
	run shoal logs "$t1"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | head -1)" = "hello from $t1" ]
	run shoal logs --tail 1 "$t1"
	[ "$output" = "second line" ]
	run shoal logs nosuch
	[ "$status" -eq 1 ]
	[[ $output == *"no such service or task: nosuch"* ]]
	shoal rm talker
}

@test "rm removes a service and all its containers" {
	shoal rm sleeper
	wait_until 30 no_service sleeper
	for n in node1 node2 node3; do
		[ "$(rt "$n" -o json ps -a | jq length)" -eq 0 ]
	done
}
