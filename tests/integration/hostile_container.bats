#!/usr/bin/env bats
# Issue 12, critical finding, on the namespace lab: a container's root controls the binaries a
# `cmd` health check runs, so the check must run exactly as confined as the container's own
# init (same namespaces, cgroups, capabilities, no_new_privs, seccomp filter, user, rlimits).
# The check writes what it sees of itself into the container; the test compares that with what
# the kernel shows of the container's init. Also: `shoalrt exec`, which uses the same path.

load helpers
bats_require_minimum_version 1.5.0

BATS_TEST_TIMEOUT=120
M="$BATS_TEST_DIRNAME/manifests"

# The /proc/PID/status fields that make up a process's confinement.
FIELDS='^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):'

ps_has() {
	shoal ps "$1" -a | grep -q -- "$2"
}

running_is() {
	[ "$(shoal ps "$1" | awk 'NR > 1 && $4 == "running" && $5 == "running"' | wc -l)" -eq "$2" ]
}

# task_of SERVICE: the name of its running task (there is one).
task_of() {
	shoal ps "$1" | awk 'NR > 1 && $5 == "running" {print $1; exit}'
}

# init_pid TASK: its container's init, in the host's pid namespace (node1: a one-node lab).
init_pid() {
	rt node1 inspect "$1" | jq -r .pid
}

# check_wrote PID: the health check has written its report into the container (the .done
# marker comes last, once every other file is complete).
check_wrote() {
	[ -e "/proc/$1/root/tmp/hc.done" ]
}

# rtexec ARGS...: shoalrt exec on node1, bounded so a hang fails the test instead of the suite.
rtexec() {
	timeout 20 "$SHOAL_BIN/shoalrt" --root "$DATA/node1" exec "$@"
}

# runs_at_least PID N: the check of the container whose init is PID started N times.
runs_at_least() {
	[ "$(wc -l <"/proc/$1/root/tmp/runs" 2>/dev/null || echo 0)" -ge "$2" ]
}

setup_file() {
	cluster_setup 1
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

@test "a cmd health check runs exactly as confined as the container's init" {
	shoal apply -f "$M/probe.yaml"
	wait_until 40 running_is probe 1
	task=$(task_of probe)
	pid=$(init_pid "$task")
	wait_until 20 check_wrote "$pid"
	root=/proc/$pid/root/tmp

	# Capabilities (all five sets), no_new_privs, the seccomp filter, uid/gid/groups.
	diff <(grep -E "$FIELDS" "/proc/$pid/status") <(grep -E "$FIELDS" "$root/hc.status")
	# Guard against comparing two empty outputs.
	[ "$(grep -cE "$FIELDS" "$root/hc.status")" -ge 9 ]
	grep -q '^Seccomp:[[:space:]]*2$' "$root/hc.status"
	# Docker's default: no no_new_privs, for the init and so for its check (next test: on).
	grep -q '^NoNewPrivs:[[:space:]]*0$' "$root/hc.status"
	# The same cgroup in every hierarchy, seen through the container's cgroup namespace.
	diff <(nsenter -t "$pid" -C cat "/proc/$pid/cgroup") "$root/hc.cgroup"
	# The same namespaces, every one of them.
	for ns in pid mnt uts ipc net cgroup; do
		[ "$(readlink "/proc/$pid/ns/$ns")" = "$(grep "^$ns " "$root/hc.ns" | cut -d' ' -f2)" ]
	done
	# The same resource limits.
	diff "/proc/$pid/limits" "$root/hc.limits"
	# The container's environment and working directory, as its init has them.
	grep -qx 'PROBE_ENV=from-manifest' "$root/hc.env"
	[ "$(cat "$root/hc.cwd")" = "$(readlink "/proc/$pid/cwd")" ]
	# And the verdict is still the exit status: 0 is healthy.
	wait_until 10 ps_has probe "running (healthy)"
}

@test "with no_new_privileges: true, the init, its cmd check and shoalrt exec all have it" {
	shoal apply -f "$M/probe-nnp.yaml"
	wait_until 40 running_is probe-nnp 1
	task=$(task_of probe-nnp)
	pid=$(init_pid "$task")
	wait_until 20 check_wrote "$pid"
	root=/proc/$pid/root/tmp
	grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$pid/status"
	diff <(grep -E "$FIELDS" "/proc/$pid/status") <(grep -E "$FIELDS" "$root/hc.status")
	[ "$(grep -cE "$FIELDS" "$root/hc.status")" -ge 9 ]
	grep -q '^Seccomp:[[:space:]]*2$' "$root/hc.status"
	[ "$(cat "$root/hc.mount")" = "refused" ]
	run rtexec "$task" grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status
	[ "$status" -eq 0 ]
	[ "$output" = "$(grep -E '^(CapEff|NoNewPrivs|Seccomp):' "/proc/$pid/status")" ]
	shoal rm probe-nnp
}

@test "the check could not get out: no host root from inside the check" {
	task=$(task_of probe)
	pid=$(init_pid "$task")
	# What the critical finding's exploit needed from the check: CAP_SYS_ADMIN to mount a
	# cgroup v1 hierarchy and write its release_agent. The check wrote whether mount worked.
	[ "$(cat "/proc/$pid/root/tmp/hc.mount")" = "refused" ]
}

@test "a failing cmd check still makes the task unhealthy, with the exit status as reason" {
	shoal rm probe
	shoal apply -f "$M/probe-bad.yaml"
	wait_until 40 ps_has probe-bad "unhealthy: command exited with 3"
}

@test "a cmd check past its timeout is killed with everything it started" {
	shoal rm probe-bad
	shoal apply -f "$M/probe-slow.yaml"
	wait_until 40 running_is probe-slow 1
	pid=$(init_pid "$(task_of probe-slow)")
	wait_until 20 runs_at_least "$pid" 4
	# Each check starts `sleep 31337` in the background and another in the foreground; after
	# several timed-out checks at most the one in flight may remain (its sh and two sleeps).
	n=0
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$(readlink "/proc/$pid/ns/pid")" ] || continue
		grep -q 31337 "$p/cmdline" 2>/dev/null && n=$((n + 1))
	done
	echo "check processes left: $n"
	[ "$n" -le 3 ]
	shoal rm probe-slow
}

@test "shoalrt exec runs a command in a running container, with its exit status" {
	shoal apply -f "$M/probe.yaml"
	wait_until 40 running_is probe 1
	task=$(task_of probe)
	pid=$(init_pid "$task")
	run rtexec "$task" sh -c 'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; exit 7'
	[ "$status" -eq 7 ]
	[ "$output" = "$(grep -E '^(CapEff|NoNewPrivs|Seccomp):' "/proc/$pid/status")" ]
	run rtexec "$task" hostname
	[ "$status" -eq 0 ]
	[ "$output" = "$(nsenter -t "$pid" -u hostname)" ]
	run -127 rtexec "$task" /no/such/binary
	[ "$status" -eq 127 ]
	[[ $output == *"executable file not found"* ]]
	run rtexec no-such-container true
	[ "$status" -eq 125 ]
	# The container's root owns /etc/passwd, which the runtime reads with its privileges
	# still held: a FIFO there must not hang an exec (nor /dev/zero exhaust its memory).
	rtexec "$task" sh -c 'mv /etc/passwd /etc/passwd.real && mkfifo /etc/passwd'
	run rtexec "$task" true
	[ "$status" -eq 0 ]
	rtexec "$task" sh -c 'rm /etc/passwd && ln -s /dev/zero /etc/passwd'
	run rtexec "$task" true
	[ "$status" -eq 0 ]
	shoal rm probe
}
