#!/usr/bin/env bats
# Issue 6 on the namespace lab: health checks decide who serves, and rolling updates move a
# service to a new version in careful batches, rolling back a version that is not healthy.
# The services run on bridge networks; checks reach into a container's own network
# namespace (nsenter), never outside the lab.

load helpers

BATS_TEST_TIMEOUT=120
M="$BATS_TEST_DIRNAME/manifests"





ps_has() {
	shoal ps "$1" -a | grep -q -- "$2"
}

state_is() {
	[[ "$(update_state "$1")" == "$2"* ]]
}

# versions SERVICE: the distinct spec versions of its running tasks.
versions() {
	shoal ps "$1" -o json | jq -r '.[] | select(.desired == "running" and .state == "running") | .version' | sort -u | tr '\n' ' '
}

# page NODE TASK: what the task's web server answers, from inside its own network namespace.
page() {
	local pid
	pid=$(rt "$1" inspect "$2" | jq -r .pid)
	nsenter -t "$pid" -n timeout 2 busybox wget -qO- http://127.0.0.1:8080/
}

cluster_suite 3

@test "health checks: tasks show running (healthy) once /healthz answers" {
	shoal apply -f "$M/webupd.yaml"
	wait_until 40 healthy_is webupd 6
	run shoal ps webupd
	[[ $output == *"running (healthy)"* ]]
}

@test "a replica whose /healthz starts failing is marked unhealthy and replaced" {
	wait_until 40 healthy_is webupd 6
	line=$(shoal ps webupd | awk 'NR > 1 && $5 == "running" {print $1, $3; exit}')
	read -r task node <<<"$line"
	pid=$(rt "$node" inspect "$task" | jq -r .pid)
	# Break the health endpoint inside that one container.
	nsenter -t "$pid" -m rm /www/healthz
	wait_until 10 ps_has webupd "^$task .*failed"
	wait_until 20 healthy_is webupd 6
	run shoal ps webupd -a
	[[ $output == *"$task"*"unhealthy: GET /healthz: 404"* ]]
}

@test "rolling update to shoal/web:2, 2 at a time, start-first: every replica ends on v2" {
	wait_until 40 healthy_is webupd 6
	v1=$(versions webupd)
	sed 's#shoal/web:1#shoal/web:2#' "$M/webupd.yaml" >"$BATS_FILE_TMPDIR/webupd-v2.yaml"
	shoal apply -f "$BATS_FILE_TMPDIR/webupd-v2.yaml"
	wait_until 5 state_is webupd updating
	wait_until 90 state_is webupd completed
	wait_until 10 healthy_is webupd 6
	[ "$(versions webupd | wc -w)" -eq 1 ]
	[ "$(versions webupd)" != "$v1" ]
	run shoal services
	[[ $output == *"webupd"*"shoal/web:2"*"6/6"* ]]
	line=$(shoal ps webupd | awk 'NR > 1 && $5 == "running" {print $1, $3; exit}')
	read -r task node <<<"$line"
	run page "$node" "$task"
	[[ $output == "web v2 on $task"* ]]
}

@test "an update whose tasks never become healthy rolls back and says why" {
	wait_until 40 healthy_is webupd 6
	before=$(versions webupd)
	sed 's#/healthz#/nonexistent#' "$BATS_FILE_TMPDIR/webupd-v2.yaml" >"$BATS_FILE_TMPDIR/webupd-bad.yaml"
	shoal apply -f "$BATS_FILE_TMPDIR/webupd-bad.yaml"
	wait_until 60 state_is webupd "rolled back"
	run update_state webupd
	[[ $output == *"unhealthy: GET /nonexistent: 404"* ]]
	wait_until 20 healthy_is webupd 6
	[ "$(versions webupd)" = "$before" ]
	# Only the first batch was ever tried: at most 2 tasks of the bad version existed.
	[ "$(shoal ps webupd -a -o json | jq '[.[] | select(.message | test("nonexistent"))] | length')" -le 2 ]
}

@test "shoal rollback returns to the previous spec by hand" {
	wait_until 40 healthy_is webupd 6
	# From web:2 (after the automatic rollback) to web:1, then back by hand.
	shoal apply -f "$M/webupd.yaml"
	wait_until 60 state_is webupd completed
	run shoal services
	[[ $output == *"webupd"*"shoal/web:1"* ]]
	run shoal rollback webupd
	[ "$status" -eq 0 ]
	[[ $output == *"webupd rolling back"* ]]
	wait_until 60 state_is webupd "rolled back: rollback requested"
	wait_until 20 healthy_is webupd 6
	run shoal services
	[[ $output == *"webupd"*"shoal/web:2"* ]]
	run lab exec sched "$SHOAL_BIN/shoal" --scheduler "$SCHED" --token-file "$DATA/sched/admin.token" rollback nosuch
	[ "$status" -eq 1 ]
	[[ $output == *"no such service: nosuch"* ]]
}

@test "kill -9 the scheduler in the middle of an update: after restart it completes" {
	wait_until 40 healthy_is webupd 6
	sed 's#delay: 500ms, order#delay: 3s, order#; s#shoal/web:[12]#shoal/web:1#' "$M/webupd.yaml" >"$BATS_FILE_TMPDIR/slow-v1.yaml"
	sed 's#shoal/web:1#shoal/web:2#' "$BATS_FILE_TMPDIR/slow-v1.yaml" >"$BATS_FILE_TMPDIR/slow-v2.yaml"
	shoal apply -f "$BATS_FILE_TMPDIR/slow-v1.yaml"
	wait_until 60 state_is webupd completed
	shoal apply -f "$BATS_FILE_TMPDIR/slow-v2.yaml"
	wait_until 20 state_is webupd "updating 2/6"
	lab kill sched KILL
	start_sched
	wait_until 90 state_is webupd completed
	wait_until 10 healthy_is webupd 6
	[ "$(versions webupd | wc -w)" -eq 1 ]
	run shoal services
	[[ $output == *"webupd"*"shoal/web:2"*"6/6"* ]]
}
