#!/usr/bin/env bats
# Operating a cluster from the CLI (issue 16): a crashed task's output outlives it (logs of
# ended tasks, --previous, -t, --since, --tail, the last lines in `shoal ps`), `logs -f`
# follows tasks that start after it began.
# Tests run in order on one cluster of 2 nodes.

load helpers

bats_require_minimum_version 1.5.0

# shellcheck disable=SC2034 # read by bats
BATS_TEST_TIMEOUT=180

setup_file() {
	cluster_setup 2
	export M="$BATS_FILE_TMPDIR/m"
	mkdir -p "$M"
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# ended_at_least SERVICE N: at least N of its tasks failed (history included).
ended_at_least() {
	[ "$(shoal ps -a "$1" -o json | jq '[.[] | select(.state == "failed")] | length')" -ge "$2" ]
}

# kept_on NODE PREFIX: how many containers named PREFIX* the node has, running or not.
kept_on() {
	rt "$1" -o json ps -a | jq --arg p "$2" '[.[] | select(.name | startswith($p))] | length'
}

kept_is() {
	[ "$(kept_on "$1" "$2")" -eq "$3" ]
}

# failed_at_least N: node1's agent saw N tasks of crash2 fail.
failed_at_least() {
	[ "$(grep -c 'task crash2\.1\.[a-z0-9]* failed' "$LAB_RUN/agent1.log")" -ge "$1" ]
}

# service_gone NAME: no longer listed (its tasks have stopped).
service_gone() {
	! shoal services -q | grep -qx "$1"
}

@test "a crashed task's output outlives it: logs, --previous, -t, --since, --tail, ps, shoalrt" {
	cat >"$M/crash.yaml" <<'Y'
service: crash
image: shoal/web:1
replicas: 1
command: ["sh", "-c", "echo starting $HOSTNAME; echo FATAL no config >&2; exit 3"]
restart: {policy: always, delay: 1s}
Y
	shoal apply -f "$M/crash.yaml"
	wait_until 60 ended_at_least crash 2
	# The record keeps the last lines: ps shows the last one after the exit message.
	run shoal ps -a crash
	echo "$output" >&3
	[[ "$output" == *"exited with code 3: FATAL no config"* ]]
	shoal inspect crash | jq -e '[.tasks[] | select(.last_output == "starting \(.name)\nFATAL no config")] | length >= 1'
	# Every task of the service still in the history, each under its name.
	run shoal logs crash
	echo "$output" >&3
	[ "$status" -eq 0 ]
	[ "$(grep -cE '^crash\.1\.[a-z0-9]{4} \| FATAL no config$' <<<"$output")" -ge 2 ]
	# A failed task by name, and the slot's earlier one.
	task=$(shoal ps -a crash -o json | jq -r '[.[] | select(.state == "failed")] | sort_by(.state_since_ms) | last | .name')
	run shoal logs "$task"
	[ "$status" -eq 0 ]
	[ "$output" = "starting $task
FATAL no config" ]
	run shoal logs --previous "$task"
	echo "previous of $task: $output" >&3
	[ "$status" -eq 0 ]
	[[ "$output" == "starting crash.1."* ]]
	[[ "$output" != "starting $task"* ]]
	run shoal logs --previous crash.1
	[ "$status" -eq 0 ]
	[[ "$output" == *"FATAL no config" ]]
	run shoal logs --previous crash
	[ "$status" -eq 1 ]
	[[ "$output" == *"--previous wants a task or SERVICE.SLOT"* ]]
	# -t: the time each line was written; --tail.
	run shoal logs -t --tail 1 "$task"
	echo "$output" >&3
	[[ "$output" =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z\ FATAL\ no\ config$ ]]
	# --since: a time after the task ended shows nothing; a duration covering it, all.
	run shoal logs --since "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)" "$task"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	run shoal logs --since 10m "$task"
	[ "$(wc -l <<<"$output")" -eq 2 ]
	run shoal logs --since yesterday "$task"
	[ "$status" -eq 1 ]
	# The node keeps the ended container (stripped: its log and state): shoalrt logs reads it.
	node=$(shoal ps -a crash -o json | jq -r --arg t "$task" '.[] | select(.name == $t) | .node')
	run rt "$node" logs "$task"
	[ "$status" -eq 0 ]
	[[ "$output" == *"FATAL no config" ]]
	[ ! -d "$(rt "$node" -o json inspect "$task" | jq -r '.dir // empty')/upper" ]
	shoal rm crash
}

@test "the agent keeps 4 ended containers per slot (the history and the last), none after rm" {
	cat >"$M/crash2.yaml" <<'Y'
service: crash2
image: shoal/web:1
replicas: 1
command: ["sh", "-c", "echo bye; exit 1"]
restart: {policy: always, delay: 200ms}
placement: {constraints: ["node.name == node1"]}
Y
	shoal apply -f "$M/crash2.yaml"
	wait_until 90 failed_at_least 7
	# Scaled to 0, its last task is stopped too: the 4 newest stay (the scheduler's history of
	# 3 and the slot's last).
	shoal scale crash2=0
	wait_until 30 kept_is node1 crash2.1. 4
	rt node1 ps -a | grep crash2 >&3
	# Removed, the service keeps nothing.
	shoal rm crash2
	wait_until 30 kept_is node1 crash2.1. 0
}

@test "logs -f of a service follows tasks that start after it began" {
	cat >"$M/talk.yaml" <<'Y'
service: talk
image: shoal/web:1
replicas: 1
command: ["sh", "-c", "echo hello from $HOSTNAME; exec sleep 100000"]
stop_grace: 1s
Y
	shoal apply -f "$M/talk.yaml"
	wait_until 30 running_is talk 1
	out="$BATS_TEST_TMPDIR/follow"
	shoal logs -f talk >"$out" 2>&1 &
	follower=$!
	wait_until 20 grep -q "hello from talk.1" "$out"
	shoal scale talk=3
	wait_until 30 grep -q "hello from talk.2" "$out"
	wait_until 30 grep -q "hello from talk.3" "$out"
	kill "$follower"
	wait "$follower" || true
	cat "$out" >&3
	grep -qE '^talk\.2\.[a-z0-9]{4} \| hello from talk\.2\.' "$out"
	shoal rm talk
}

@test "shoal exec runs a command in the task's container as confined as its process" {
	cat >"$M/ex.yaml" <<'Y'
service: ex
image: shoal/web:1
replicas: 1
command: ["sleep", "100000"]
stop_grace: 1s
Y
	shoal apply -f "$M/ex.yaml"
	wait_until 30 running_is ex 1
	read -r task node < <(shoal ps ex -o json | jq -r '.[0] | "\(.name) \(.node)"')
	# The container's init, read from the outside: what the command must match.
	init=$(rt "$node" exec "$task" cat /proc/1/status | grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):')
	run shoal exec ex.1 -- cat /proc/self/status
	[ "$status" -eq 0 ]
	echo "$output" | grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' >&3
	[ "$(echo "$output" | grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):')" = "$init" ]
	# Same PID namespace as the task: its init is the task's sleep.
	run shoal exec "$task" -- cat /proc/1/cmdline
	[ "$output" = "$(printf 'sleep\0100000\0' | tr '\0' ' ')" ] || [[ "$output" == sleep* ]]
	# stdout and stderr apart, the exit code is shoal's.
	run --separate-stderr shoal exec ex.1 -- sh -c 'echo out; echo err >&2; exit 7'
	[ "$status" -eq 7 ]
	[ "$output" = out ]
	[ "$stderr" = err ]
	run -127 shoal exec ex.1 -- no-such-command
	[ "$status" -eq 127 ]
	# Options after -- are the command's, not shoal's.
	run shoal exec ex.1 -- ls -o /www --help
	[ "$status" -ne 0 ] || [[ "$output" != *"usage: shoal exec"* ]]
	run shoal exec nosuch.1 -- true
	[ "$status" -eq 1 ]
	[[ "$output" == *"no such task: nosuch.1"* ]]
	# The worker token cannot exec.
	run lab exec sched "$SHOAL_BIN/shoal" --scheduler "$SCHED" --token-file "$DATA/sched/worker.token" exec ex.1 -- true
	echo "worker token: $output" >&3
	[ "$status" -eq 1 ]
	shoal rm ex
}

@test "shoal version, rm all or nothing" {
	run shoal version
	echo "$output" >&3
	[ "$status" -eq 0 ]
	client=$(sed -n 's/^client: *//p' <<<"$output")
	[ -n "$client" ]
	[ "$(sed -n 's/^scheduler: *//p' <<<"$output")" = "$client" ]
	run shoal --version
	[ "$output" = "shoal $client" ]
	cat >"$M/keep.yaml" <<'Y'
service: keep
image: shoal/web:1
replicas: 1
command: ["sleep", "100000"]
stop_grace: 1s
Y
	shoal apply -f "$M/keep.yaml"
	run shoal rm keep nosuch other
	[ "$status" -eq 1 ]
	[[ "$output" == *"no such services: nosuch, other; nothing removed"* ]]
	shoal services -q | grep -qx keep
	run shoal rm keep
	[ "$status" -eq 0 ]
	[ "$output" = keep ]
	# Gone once its task stopped (the next test lists services).
	wait_until 30 service_gone keep
}

@test "apply -f DIR (all or nothing), --dry-run, restart any, -q and --filter" {
	mkdir -p "$M/dir" "$M/bad" "$M/empty"
	cat >"$M/dir/a.yaml" <<'Y'
service: da
image: shoal/web:1
replicas: 1
command: ["sleep", "100000"]
stop_grace: 1s
restart: {policy: any}
Y
	cat >"$M/dir/b.yml" <<'Y'
service: db
image: shoal/web:1
replicas: 1
command: ["sleep", "100000"]
stop_grace: 1s
Y
	echo "not a manifest" >"$M/dir/notes.txt"
	# A bad file in the directory: nothing is sent, the mistake names FILE:LINE:COL.
	cp "$M/dir/a.yaml" "$M/dir/b.yml" "$M/bad/"
	printf 'service: dc\nimage: shoal/web:1\nreplicas: -1\n' >"$M/bad/c.yaml"
	run --separate-stderr shoal apply -f "$M/bad"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"$M/bad/c.yaml:3:"* ]]
	# None of the directory's services exists (one of the test before may still be on its
	# way out).
	run shoal services -q
	[ -z "$(echo "$output" | grep -xE 'da|db|dc')" ]
	run shoal apply -f "$M/empty"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no *.yaml or *.yml file"* ]]
	# --dry-run: the scheduler plans, nothing changes.
	run --separate-stderr shoal apply --dry-run -f "$M/dir"
	echo "$output" >&3
	[ "$status" -eq 0 ]
	[ "$output" = "service da would be created
service db would be created" ]
	# Swarm's restart policy name is taken, with a hint on stderr.
	[[ "$stderr" == *"a.yaml:6:"*"warning: restart.policy: \"any\" is Swarm's name; Shoal says always"* ]]
	run shoal services -q
	[ -z "$(echo "$output" | grep -xE 'da|db')" ]
	run --separate-stderr shoal apply -f "$M/dir"
	[ "$output" = "service da created
service db created" ]
	[ "$(shoal inspect da | jq -r .spec.restart.policy)" = always ]
	run --separate-stderr shoal apply --dry-run -f "$M/dir/a.yaml"
	[ "$output" = "service da would be unchanged" ]
	sed 's/replicas: 1/replicas: 2/' "$M/dir/b.yml" >"$M/b2.yaml"
	run shoal apply --dry-run -f "$M/b2.yaml"
	[ "$output" = "service db would be scaled" ]
	[ "$(shoal inspect db | jq -r .spec.replicas)" = 1 ]
	# -q and --filter on the listings.
	[ "$(shoal services -q | grep -xE 'da|db' | tr '\n' ' ')" = "da db " ]
	[ "$(shoal services -q --filter name=db)" = db ]
	wait_until 30 running_is da 1
	wait_until 30 running_is db 1
	run shoal ps -q --filter service=da --filter state=running
	[ "${#lines[@]}" -eq 1 ]
	[ "${lines[0]}" = "$(shoal ps da -o json | jq -r '.[0].id')" ]
	node=$(shoal ps da -o json | jq -r '.[0].node')
	[ "$(shoal ps --filter node="$node" --filter service=da -o json | jq length)" -eq 1 ]
	run shoal ps --filter colour=blue
	[ "$status" -eq 1 ]
	[[ "$output" == *"--filter wants one of service=, node=, state=, desired="* ]]
	[ "$(shoal nodes -q | tr '\n' ' ')" = "node1 node2 " ]
	[ "$(shoal nodes -q --filter status=ready --filter label=zone=b)" = node2 ]
	[ -z "$(shoal nodes -q --filter status=down)" ]
	shoal rm da db
}
