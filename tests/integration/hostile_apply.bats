#!/usr/bin/env bats
# Issue 12 on the namespace lab, against a real scheduler: a client holding the admin token
# that bypasses the CLI gets exactly the CLI's checks; a manifest built to stall libyaml is
# refused at once; and the scheduler answers "created" only for what it has committed: a
# store that cannot write gives an error and nothing, and every acknowledged service is there
# after kill -9. The scheduler's data dir is a small tmpfs so a test can fill it.

load helpers

# shellcheck disable=SC2034 # read by bats: every test runs under this timeout
BATS_TEST_TIMEOUT=60

setup_file() {
	export DATA="$BATS_FILE_TMPDIR/data"
	timeout 60 bash "$LAB_BIN" down
	timeout 60 bash "$LAB_BIN" up 1
	mkdir -p "$DATA/sched"
	mount -t tmpfs -o size=2m "shoal-test-${LAB_ID:-lab}" "$DATA/sched"
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/sched" >"$BATS_FILE_TMPDIR/init.out"
	start_sched
	wait_until 10 shoal services
}

teardown() {
	rm -f "$DATA/sched/filler"
	dump_logs_on_failure
}

teardown_file() {
	lab kill sched 2>/dev/null || true
	umount "$DATA/sched" 2>/dev/null || true
	timeout 60 bash "$LAB_BIN" down
}

# raw JSON...: one Apply with these specs as they are, from the scheduler's namespace.
raw() {
	lab exec sched "$SHOAL_BIN/tests/tools/apply_raw" "$SCHED" "$DATA/sched/admin.token" "$@"
}

@test "a client past the CLI: each spec the CLI refuses is refused with the CLI's message" {
	# What the scheduler took in the issue; 4000000000 replicas aborted it.
	run raw '{"name":"web","image":"x","replicas":20000}'
	[ "$status" -eq 1 ]
	[[ "$output" == *"service web: replicas: must be between 0 and 10000, got 20000"* ]]
	run raw '{"name":"web","image":"x","replicas":4000000000}'
	[ "$status" -eq 1 ]
	[[ "$output" == *"got 4000000000"* ]]
	run raw '{"name":"web","image":"x","health":{"kind":"tcp","port":80,"interval_ms":0}}'
	[ "$status" -eq 1 ]
	[[ "$output" == *"service web: health.interval: must be greater than 0"* ]]
	run raw '{"name":"web","image":"x","env":{"A=B":"1","":"2"}}'
	[ "$status" -eq 1 ]
	[[ "$output" == *'invalid variable name "A=B"'* ]]
	[[ "$output" == *'invalid variable name ""'* ]]
	run raw '{"name":"web","image":"a b;reboot"}'
	[ "$status" -eq 1 ]
	[[ "$output" == *'image: invalid reference "a b;reboot"'* ]]
	# Every problem in one reply, past the 255 bytes of a one-line error.
	run raw '{"name":"web","image":"x;y","replicas":20000,"env":{"A=B":"1"}}' \
		'{"name":"api","image":"../../x:1","health":{"kind":"cmd","interval_ms":0}}'
	[ "$status" -eq 1 ]
	[ "${lines[0]}" = "apply refused, nothing changed: 6 problems" ]
	[ "${#lines[@]}" -eq 7 ]
	[ "${lines[6]}" = "service api: health.interval: must be greater than 0, got 0 ms" ]
	# Nothing was created, and the scheduler still answers.
	run shoal services
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c -E '^(web|api) ')" -eq 0 ]
}

@test "a deeply nested manifest is refused within a second, at its file:line:col" {
	f="$BATS_TEST_TMPDIR/deep.yaml"
	{
		printf 'service: deep\nimage: x\nenv: '
		head -c 204800 /dev/zero | tr '\0' '['
		echo
	} >"$f"
	start=${EPOCHREALTIME/./}
	run shoal apply -f "$f"
	ms=$(((${EPOCHREALTIME/./} - start) / 1000))
	[ "$status" -eq 1 ]
	[ "$output" = "$f:3:37: nested too deeply (more than 32 levels)" ]
	[ "$ms" -lt 1000 ]
	# Past 1 MiB a manifest is refused whole.
	head -c 1100000 /dev/zero | tr '\0' '#' >"$f"
	run shoal apply -f "$f"
	[ "$status" -eq 1 ]
	[ "$output" = "$f: too large (more than 1048576 bytes); split it into several files" ]
}

@test "a store that cannot write: the CLI gets the error, not 'created', and nothing half-done" {
	# Three services of 100 KB each: 300 KB of WAL pages the full disk cannot give.
	m="$BATS_TEST_TMPDIR/big.yaml"
	for s in big big2 big3; do
		printf -- '---\nservice: %s\nimage: x\nreplicas: 0\nenv:\n  BIG: "' "$s"
		head -c 102400 /dev/zero | tr '\0' 'v'
		printf '"\n'
	done >"$m"
	dd if=/dev/zero of="$DATA/sched/filler" bs=64k 2>/dev/null || true
	run shoal apply -f "$m"
	[ "$status" -eq 1 ]
	[[ "$output" == *"apply failed, nothing changed: store: "*"full"* ]]
	[[ "$output" != *created* ]]
	run shoal services
	[ "$status" -eq 0 ]
	[[ "$output" != *big* ]]
	# Space again: the same apply goes through; the store was not left mid-transaction.
	rm -f "$DATA/sched/filler"
	run shoal apply -f "$m"
	[ "$status" -eq 0 ]
	[ "$output" = "$(printf 'service big created\nservice big2 created\nservice big3 created')" ]
}

@test "a spec too large for a listing or an Assignments frame is refused, by the CLI and past it" {
	m="$BATS_TEST_TMPDIR/fat.yaml"
	{
		printf 'service: fat\nimage: x\nenv:\n  BIG: "'
		head -c 140000 /dev/zero | tr '\0' 'v'
		printf '"\n'
	} >"$m"
	run shoal apply -f "$m"
	[ "$status" -eq 1 ]
	[[ "$output" == "$m:1:10: spec: "*" bytes as JSON, more than 131072 "* ]]
	{
		printf '{"name":"fat","image":"x","env":{"BIG":"'
		head -c 140000 /dev/zero | tr '\0' 'v'
		printf '"}}'
	} >"$BATS_TEST_TMPDIR/fat.json"
	run raw "@$BATS_TEST_TMPDIR/fat.json"
	[ "$status" -eq 1 ]
	[[ "$output" == *"service fat: spec: "*" bytes as JSON, more than 131072 "* ]]
	run shoal services
	[[ "$output" != *fat* ]]
}

@test "kill -9 right after each acknowledged apply: every acknowledged service is back" {
	for i in 1 2 3 4 5; do
		run raw "{\"name\":\"kept$i\",\"image\":\"x\",\"replicas\":0}"
		[ "$status" -eq 0 ]
		[ "$output" = "service kept$i created" ]
		lab kill sched KILL
		start_sched
		wait_until 10 shoal services
	done
	run shoal services
	for i in 1 2 3 4 5; do
		[[ "$output" == *"kept$i "* ]]
	done
	[[ "$output" == *"big "* ]]
	[[ "$output" == *"big3 "* ]]
}
