#!/usr/bin/env bats
# Issue 16, the rest of it: `shoal exec -i` (stdin to the command) and `-t` (a pseudo-terminal
# of the container's own devpts), `shoalrt exec -i/-t`, and `shoal node update --label-add /
# --label-rm` (admin labels kept by the scheduler, seen by placement at once).
# Tests run in order on one cluster of 2 nodes.

load helpers

bats_require_minimum_version 1.5.0

# shellcheck disable=SC2034 # read by bats
BATS_TEST_TIMEOUT=180

setup_file() {
	cluster_setup 2
	export M="$BATS_FILE_TMPDIR/m"
	mkdir -p "$M"
	cat >"$M/ex.yaml" <<'Y'
service: ex
image: shoal/web:1
replicas: 1
command: ["sleep", "100000"]
stop_grace: 1s
Y
	shoal apply -f "$M/ex.yaml"
	wait_until 30 running_is ex 1
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# tty_shoal [SCRIPT_STDIN_FILE] -- ARGS...: shoal ARGS on a pseudo-terminal (script(1)), as a
# user's shell would run it; script's exit status is shoal's (-e). \r of the terminal removed.
tty_shoal() {
	local in=/dev/null
	if [ "$1" != -- ]; then
		in=$1
		shift
	fi
	shift
	lab exec sched env TERM=xterm timeout 60 script -qefc "stty rows 31 cols 97; '$SHOAL_BIN/shoal' --scheduler $SCHED --token-file '$DATA/sched/admin.token' $*" /dev/null <"$in" | tr -d '\r'
	return "${PIPESTATUS[0]}"
}

# What the CLI is fed on its stdin.
echo_exec() { echo hi | shoal exec "$@"; }
file_exec() { shoal exec "$@" <"$BATS_TEST_TMPDIR/big"; }
zero_exec() { head -c 25165824 /dev/zero | shoal exec "$@"; }

# pending_because SERVICE: a task of it waits, and ps says it is the constraints.
pending_because() {
	shoal ps "$1" | grep pending | grep -q constraint
}

@test "exec -i: stdin reaches the command; without -i it is empty" {
	run echo_exec -i ex.1 -- cat
	[ "$status" -eq 0 ]
	[ "$output" = hi ]
	# Much more than one frame, and the command's status with it.
	head -c 3000000 /dev/urandom >"$BATS_TEST_TMPDIR/big"
	sum=$(md5sum <"$BATS_TEST_TMPDIR/big" | cut -d' ' -f1)
	run file_exec -i ex.1 -- sh -c 'md5sum; exit 5'
	[ "$status" -eq 5 ]
	[ "${output%% *}" = "$sum" ]
	# A command slower than its input: the CLI reads on only as the command takes it (else the
	# agent would hold more than its 16 MiB and close the command's stdin), from a pipe and
	# from a file.
	run zero_exec -i ex.1 -- sh -c 'sleep 2; wc -c'
	[ "$status" -eq 0 ]
	[ "${output//[[:space:]]/}" = 25165824 ]
	head -c 25165824 /dev/zero >"$BATS_TEST_TMPDIR/big"
	run file_exec -i ex.1 -- sh -c 'sleep 2; wc -c'
	[ "$status" -eq 0 ]
	[ "${output//[[:space:]]/}" = 25165824 ]
	# Without -i: empty, as docker exec's.
	run echo_exec ex.1 -- cat
	[ "$status" -eq 0 ]
	[ "$output" = "" ]
}

@test "exec -t: the command's terminal is the container's own /dev/pts, sized as ours" {
	run tty_shoal -- exec -t ex.1 -- tty
	echo "tty: $output" >&3
	[ "$status" -eq 0 ]
	[[ "$output" =~ ^/dev/pts/[0-9]+$ ]]
	# It is in the container's devpts (a fresh instance), and its controlling terminal.
	run tty_shoal -- exec -t ex.1 -- sh -c "'ls /dev/pts; stty size; echo ctty >/dev/tty'"
	echo "$output" >&3
	[ "$status" -eq 0 ]
	[[ "$output" == *"ptmx"* ]]
	[[ "$output" == *"31 97"* ]]
	# /dev/tty opens only for a process with a controlling terminal.
	[[ "$output" == *ctty* ]]
	# Exactly as confined as the task's process, on a terminal too.
	read -r task node < <(shoal ps ex -o json | jq -r '.[0] | "\(.name) \(.node)"')
	init=$(rt "$node" exec "$task" cat /proc/1/status | grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):')
	run tty_shoal -- exec -t ex.1 -- cat /proc/self/status
	[ "$status" -eq 0 ]
	[ "$(grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' <<<"$output")" = "$init" ]
	# The exit status comes through.
	run tty_shoal -- exec -t ex.1 -- sh -c "'exit 4'"
	[ "$status" -eq 4 ]
}

@test "exec -t and shoalrt exec -t follow our terminal's resizes (SIGWINCH)" {
	read -r task node < <(shoal ps ex -o json | jq -r '.[0] | "\(.name) \(.node)"')
	# Our terminal is resized while the command runs; the kernel signals the CLI.
	cat >"$BATS_TEST_TMPDIR/resize.sh" <<S
stty rows 20 cols 40
(sleep 1.5; stty rows 50 cols 60 </dev/tty) &
"\$@" sh -c 'stty size; sleep 3; stty size'
S
	run lab exec sched timeout 60 script -qefc "sh '$BATS_TEST_TMPDIR/resize.sh' '$SHOAL_BIN/shoal' --scheduler $SCHED --token-file '$DATA/sched/admin.token' exec -t ex.1" /dev/null </dev/null
	echo "$output" >&3
	[ "$status" -eq 0 ]
	[ "$(tr -d '\r' <<<"$output")" = "20 40
50 60" ]
	run timeout 60 script -qefc "sh '$BATS_TEST_TMPDIR/resize.sh' '$SHOAL_BIN/shoalrt' --root '$DATA/$node' exec -t '$task'" /dev/null </dev/null
	echo "$output" >&3
	[ "$status" -eq 0 ]
	[ "$(tr -d '\r' <<<"$output")" = "20 40
50 60" ]
}

@test "exec -it: an interactive shell, its exit status is shoal's; our terminal is restored" {
	# shellcheck disable=SC2016 # the shell in the container expands it
	printf 'echo $((6*7)); exit 3\n' >"$BATS_TEST_TMPDIR/in"
	run tty_shoal "$BATS_TEST_TMPDIR/in" -- exec -it ex.1 -- sh
	echo "$output" >&3
	[ "$status" -eq 3 ]
	grep -qx 42 <<<"$output"
	# The CLI put its terminal back as it found it (stty -g before and after).
	cat >"$BATS_TEST_TMPDIR/restore.sh" <<S
a=\$(stty -g)
'$SHOAL_BIN/shoal' --scheduler $SCHED --token-file '$DATA/sched/admin.token' exec -it ex.1 -- true
b=\$(stty -g)
[ "\$a" = "\$b" ] && echo restored
S
	run lab exec sched timeout 60 script -qefc "sh '$BATS_TEST_TMPDIR/restore.sh'" /dev/null </dev/null
	echo "$output" >&3
	[[ "$output" == *restored* ]]
	# Killed (SIGTERM) while its terminal is raw: put back all the same.
	cat >"$BATS_TEST_TMPDIR/killed.sh" <<S
a=\$(stty -g)
'$SHOAL_BIN/shoal' --scheduler $SCHED --token-file '$DATA/sched/admin.token' exec -it ex.1 -- sleep 30 </dev/tty &
i=0
while [ "\$(stty -g)" = "\$a" ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done
[ "\$(stty -g)" != "\$a" ] && echo raw
kill -TERM \$!
wait \$!
[ "\$a" = "\$(stty -g)" ] && echo restored
S
	run lab exec sched timeout 60 script -qfc "sh '$BATS_TEST_TMPDIR/killed.sh'" /dev/null </dev/null
	echo "$output" >&3
	[[ "$output" == *raw*restored* ]]
}

@test "shoalrt exec -i and -t on the node" {
	read -r task node < <(shoal ps ex -o json | jq -r '.[0] | "\(.name) \(.node)"')
	run bash -c "echo local | '$SHOAL_BIN/shoalrt' --root '$DATA/$node' exec -i '$task' cat"
	[ "$status" -eq 0 ]
	[ "$output" = local ]
	run bash -c "echo local | '$SHOAL_BIN/shoalrt' --root '$DATA/$node' exec '$task' cat"
	[ "$output" = "" ]
	run timeout 60 script -qefc "stty rows 12 cols 34; '$SHOAL_BIN/shoalrt' --root '$DATA/$node' exec -t '$task' sh -c 'tty; stty size; exit 6'" /dev/null </dev/null
	echo "$output" >&3
	[ "$status" -eq 6 ]
	[[ "$output" =~ /dev/pts/[0-9]+ ]]
	[[ "$output" == *"12 34"* ]]
	# shellcheck disable=SC2016 # the shell in the container expands it
	printf 'echo $((6*7)); exit 3\n' >"$BATS_TEST_TMPDIR/in"
	run timeout 60 script -qefc "'$SHOAL_BIN/shoalrt' --root '$DATA/$node' exec -it '$task' sh" /dev/null <"$BATS_TEST_TMPDIR/in"
	echo "$output" >&3
	[ "$status" -eq 3 ]
	tr -d '\r' <<<"$output" | grep -qx 42
	# A non-root command's terminal is its own (a program may open it by name).
	id=$(rt "$node" run -d --user 65534 shoal/web:1 sleep 100)
	run timeout 60 script -qefc "'$SHOAL_BIN/shoalrt' --root '$DATA/$node' exec -t '$id' sh -c 'id -u; stat -c %u \$(tty); echo ok >\$(tty)'" /dev/null </dev/null
	rt "$node" rm -f "$id" >/dev/null
	echo "$output" >&3
	[ "$status" -eq 0 ]
	[ "$(tr -d '\r' <<<"$output")" = "65534
65534
ok" ]
	shoal rm ex
}

# node_of SERVICE: the node of its running task.
node_of() {
	shoal ps "$1" -o json | jq -r '.[] | select(.state == "running") | .node'
}

@test "node update --label-add / --label-rm: placement sees them at once, a restart keeps them" {
	cat >"$M/gold.yaml" <<'Y'
service: gold
image: shoal/web:1
replicas: 1
command: ["sleep", "100000"]
stop_grace: 1s
placement:
  constraints: ["node.labels.tier==gold"]
Y
	shoal apply -f "$M/gold.yaml"
	wait_until 30 pending_because gold
	shoal ps gold >&3
	run shoal node update --label-add tier=gold node2
	[ "$status" -eq 0 ]
	wait_until 30 running_is gold 1
	[ "$(node_of gold)" = node2 ]
	# Listed, merged with the agent's own (zone), and filterable.
	shoal nodes -o json | jq -e '.[] | select(.name == "node2") | .labels | (.tier == "gold" and has("zone"))'
	run shoal nodes --filter label=tier=gold
	[[ "$output" == *node2* ]]
	[[ "$output" != *node1* ]]
	# Bad input: a clear error, nothing changed.
	run shoal node update --label-add 'bad key=x' node2
	[ "$status" -eq 1 ]
	run shoal node update --label-rm zone node2
	echo "$output" >&3
	[ "$status" -eq 1 ]
	[[ "$output" == *"agent"* ]]
	run shoal node update --label-rm nosuch node2
	[ "$status" -eq 1 ]
	run shoal node update --label-add x=1 nosuch
	[ "$status" -eq 1 ]
	[[ "$output" == *"no such node"* ]]
	# A restart of the scheduler keeps them.
	lab kill sched KILL
	start_sched
	wait_until 30 shoal nodes -o json
	shoal nodes -o json | jq -e '.[] | select(.name == "node2") | .labels.tier == "gold"'
	# Removed: the running task stays (as in Swarm), a new one is not placed there.
	run shoal node update --label-rm tier node2
	[ "$status" -eq 0 ]
	shoal nodes -o json | jq -e '.[] | select(.name == "node2") | .labels | has("tier") | not'
	shoal scale gold=2
	wait_until 30 pending_because gold
	running_is gold 1
	[ "$(node_of gold)" = node2 ]
	shoal rm gold
}
