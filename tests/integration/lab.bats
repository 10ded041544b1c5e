#!/usr/bin/env bats
# The network-namespace lab itself (tests/lab/lab): topology, reachability over the
# bridge, the root namespace's blackhole routes, spawn/kill, idempotent up, cleanup on
# a failed up, and a down that leaves nothing behind. Tests run in file order and
# share one lab: setup_file brings it up, teardown_file always brings it down.

load helpers

# shellcheck disable=SC2034 # read by bats: every test runs under this timeout
BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-60}
NET=192.168.56.0/24
CLUSTER=10.244.0.0/16
# Namespace names as tests/lab/lab derives them from LAB_ID (shoal-ID-node1, ...).
NSP="shoal-${LAB_ID:+$LAB_ID-}"

# This lab's namespaces (any other shoal-* namespace is not ours to judge).
lab_ns() {
	ip netns list | awk '{print $1}' | grep -E "^${NSP}(lab-br|sched[1-9]?|node[0-9]+)\$" || true
}

# PREFIX METRIC lines of the blackhole routes this lab recorded (other labs route the
# same prefixes at other metrics).
lab_routes() { cat "$LAB_RUN/.state/routes" 2>/dev/null || true; }

# A snapshot of what `up` manages, to compare before and after a second `up`.
lab_snapshot() {
	local h
	ip -4 route show type blackhole
	ip -n "${NSP}lab-br" -o link show | sed 's/ qlen.*//'
	for h in $(lab hosts); do
		ip -n "$NSP$h" -o link show | sed 's/ qlen.*//'
		ip -4 -n "$NSP$h" -o addr show
	done
}

setup_file() {
	# Start clean. Another lab may route the same prefixes (at its own metric): the down
	# test checks this lab's recorded routes only.
	timeout 60 bash "$LAB_BIN" down
	timeout 60 bash "$LAB_BIN" up 3
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

@test "help lists every command" {
	run lab --help
	[ "$status" -eq 0 ]
	for c in up down status hosts addr exec spawn kill pid log; do
		[[ $output == *"  $c "* ]]
	done
}

@test "topology: listed and patterned addresses and zones" {
	[ "$(lab addr sched)" = 192.168.56.10 ]
	[ "$(lab addr node1)" = 192.168.56.11 ]
	[ "$(lab addr node3)" = 192.168.56.13 ]
	[ "$(lab addr node12)" = 192.168.56.22 ]
	[ "$(lab zone node1)" = a ]
	[ "$(lab zone node2)" = b ]
	[ "$(lab zone node12)" = b ]
	[ "$(lab zone node13)" = a ]
	run lab addr bogus
	[ "$status" -ne 0 ]
}

@test "up 3 makes the bridge namespace, sched and node1..3" {
	[ "$(lab_ns | sort | tr '\n' ' ')" = "${NSP}lab-br ${NSP}node1 ${NSP}node2 ${NSP}node3 ${NSP}sched " ]
	[ "$(lab hosts | tr '\n' ' ')" = "sched node1 node2 node3 " ]
	ip -n "${NSP}lab-br" -o link show dev br0 | grep -q 'UP'
	# Every host's veth is a port of br0; the root namespace has none of the lab's links.
	for h in sched node1 node2 node3; do
		ip -n "${NSP}lab-br" -o link show dev "v-$h" | grep -q ' master br0 '
	done
	[ -z "$(ip -o link show | grep -E ': (br0|v-(sched|node[0-9]+))[@:]' || true)" ]
}

@test "each host has its topology address on eth0, lo up; nodes forward" {
	for h in sched node1 node2 node3; do
		run lab exec "$h" ip -4 -o addr show dev eth0
		[ "$status" -eq 0 ]
		[[ $output == *" inet $(lab addr "$h")/24 "* ]]
		lab exec "$h" ip -o link show dev lo | grep -q 'UP'
	done
	for h in node1 node2 node3; do
		[ "$(lab exec "$h" sysctl -n net.ipv4.ip_forward)" = 1 ]
	done
}

@test "node1 reaches node3 and sched over the bridge (ping and TCP)" {
	lab exec node1 busybox ping -c1 -W1 192.168.56.13
	lab exec node1 busybox ping -c1 -W1 192.168.56.10
	lab exec sched busybox ping -c1 -W1 192.168.56.12
	lab spawn echo3 node3 busybox nc -ll -p 7199 -e busybox echo hello-from-node3
	wait_until 5 lab exec node3 sh -c 'busybox netstat -ltn | grep -q ":7199 "'
	run lab exec node1 timeout 5 busybox nc -w2 192.168.56.13 7199 </dev/null
	[ "$status" -eq 0 ]
	[[ $output == *hello-from-node3* ]]
	lab kill echo3
}

@test "the root namespace blackholes the lab network and the cluster CIDR" {
	ip -4 route show exact "$NET" type blackhole | grep -q blackhole
	ip -4 route show exact "$CLUSTER" type blackhole | grep -q blackhole
	# A lookup (it sends nothing) resolves lab addresses to the blackhole.
	run ip -4 route get 192.168.56.13
	[[ $output != *" via "* && $output != *" dev "* ]]
	run lab status
	[ "$status" -eq 0 ]
	[[ $output == *"$NET"* && $output == *"$CLUSTER"* ]]
}

@test "exec passes the exit status through" {
	run lab exec node1 sh -c 'exit 7'
	[ "$status" -eq 7 ]
	run lab exec node1 true
	[ "$status" -eq 0 ]
	run lab exec node9 true
	[ "$status" -eq 125 ]
	run lab exec nosuchhost true
	[ "$status" -eq 125 ]
}

@test "spawn runs a daemon in the host's namespace, own session; kill stops it" {
	pid=$(lab spawn sleeper node2 sleep 1000)
	[ "$(cat "$LAB_RUN/sleeper.pid")" = "$pid" ]
	[ "$(lab pid sleeper)" = "$pid" ]
	[ "$(ip netns identify "$pid")" = "${NSP}node2" ]
	[ "$(cat "/proc/$pid/comm")" = sleep ]
	read -r pgid sid < <(ps -o pgid=,sid= -p "$pid")
	[ "$pgid" = "$pid" ]
	[ "$sid" = "$pid" ]
	[ -f "$LAB_RUN/sleeper.log" ]
	run lab spawn sleeper node2 sleep 1000
	[ "$status" -ne 0 ]
	lab kill sleeper
	[ ! -e "/proc/$pid" ] || grep -q '^State:.*Z' "/proc/$pid/status"
	run lab pid sleeper
	[ "$status" -eq 1 ]
	[ ! -e "$LAB_RUN/sleeper.pid" ]
}

@test "spawn logs stdout and stderr; log prints them" {
	lab spawn talker node1 sh -c 'echo to-stdout; echo to-stderr >&2; exec sleep 1000'
	wait_until 5 sh -c "grep -q to-stderr '$LAB_RUN/talker.log'"
	run lab log talker
	[[ $output == *to-stdout* && $output == *to-stderr* ]]
	lab kill talker KILL
	run lab pid talker
	[ "$status" -eq 1 ]
}

@test "kill falls back to KILL for a daemon that ignores TERM" {
	pid=$(lab spawn stubborn node1 sh -c 'trap "" TERM; sleep 1000 & wait; sleep 1000')
	wait_until 5 pgrep -g "$pid" sleep
	child=$(pgrep -g "$pid" sleep)
	start=$EPOCHSECONDS
	lab kill stubborn
	[ $((EPOCHSECONDS - start)) -ge 4 ]
	# The whole process group went, the daemon's child included.
	[ -z "$(ps -e -o pgid=,stat= | awk -v g="$pid" '$1 == g && $2 !~ /^Z/')" ]
	[ ! -e "/proc/$child" ] || grep -q '^State:.*Z' "/proc/$child/status"
}

@test "up twice is idempotent: the second run changes nothing" {
	before=$(lab_snapshot)
	run lab up 3
	[ "$status" -eq 0 ]
	[[ $output == *"(no changes)"* ]]
	after=$(lab_snapshot)
	diff <(echo "$before") <(echo "$after") || true
	[ "$after" = "$before" ]
}

@test "up repairs a missing veth, address and link state" {
	ip -n "${NSP}lab-br" link del dev v-node2
	ip -n "${NSP}node3" addr flush dev eth0
	ip -n "${NSP}node1" link set dev eth0 down
	run lab up 3
	[ "$status" -eq 0 ]
	[[ $output != *"(no changes)"* ]]
	lab exec node1 busybox ping -c1 -W1 192.168.56.12
	lab exec node1 busybox ping -c1 -W1 192.168.56.13
	run lab up 3
	[[ $output == *"(no changes)"* ]]
}

@test "up 5 after up 3 adds node4 and node5" {
	ifindex=$(lab exec node1 cat /sys/class/net/eth0/ifindex)
	lab up 5
	[ "$(lab hosts | tr '\n' ' ')" = "sched node1 node2 node3 node4 node5 " ]
	# node1 was left alone.
	[ "$(lab exec node1 cat /sys/class/net/eth0/ifindex)" = "$ifindex" ]
	lab exec node5 ip -4 -o addr show dev eth0 | grep -q ' inet 192.168.56.15/24 '
	lab exec node4 busybox ping -c1 -W1 192.168.56.15
	lab exec node5 busybox ping -c1 -W1 192.168.56.10
}

@test "a failed up removes what it made and keeps what existed" {
	before=$(lab_snapshot)
	run env LAB_FAIL_AT=node7 bash "$LAB_BIN" up 7
	[ "$status" -ne 0 ]
	[[ $output == *"removing what this run made"* ]]
	[ "$(lab hosts | tr '\n' ' ')" = "sched node1 node2 node3 node4 node5 " ]
	run ip -n "${NSP}lab-br" -o link show dev v-node6
	[ "$status" -ne 0 ]
	after=$(lab_snapshot)
	diff <(echo "$before") <(echo "$after") || true
	[ "$after" = "$before" ]
}

@test "SCHEDULERS=3 up adds sched1..3 with their topology addresses; they reach each other and the nodes" {
	SCHEDULERS=3 lab up 5
	[ "$(lab hosts | tr '\n' ' ')" = "sched sched1 sched2 sched3 node1 node2 node3 node4 node5 " ]
	for i in 1 2 3; do
		lab exec "sched$i" ip -4 -o addr show dev eth0 | grep -q " inet $(lab addr "sched$i")/24 "
	done
	lab exec sched1 busybox ping -c1 -W1 "$(lab addr sched3)"
	lab exec node2 busybox ping -c1 -W1 "$(lab addr sched2)"
	run env SCHEDULERS=x bash "$LAB_BIN" up 5
	[ "$status" -ne 0 ]
	[[ $output == *"SCHEDULERS must be 1 to 9"* ]]
}

@test "down stops daemons and strays, removes namespaces, routes and run dir" {
	daemon=$(lab spawn d1 node4 sleep 1000)
	# A stray: started with exec, not spawn; down finds it through `ip netns pids`.
	lab exec node5 sleep 1001 </dev/null >/dev/null 2>&1 3>&- &
	wait_until 5 sh -c "[ -n \"\$(ip netns pids ${NSP}node5)\" ]"
	stray=$(ip netns pids "${NSP}node5")
	routes=$(lab_routes)
	[ -n "$routes" ]
	run lab down
	[ "$status" -eq 0 ]
	[ -z "$(lab_ns)" ]
	# This lab's routes are gone (another lab may still route the same prefixes).
	while read -r p m; do
		[ -z "$(ip -4 route show exact "$p" type blackhole proto 83 | grep -w "metric $m" || true)" ]
	done <<<"$routes"
	for p in $daemon $stray; do
		[ ! -e "/proc/$p" ] || grep -q '^State:.*Z' "/proc/$p/status"
	done
	[ ! -e "$LAB_RUN" ]
}

@test "down is idempotent and status says down" {
	run lab down
	[ "$status" -eq 0 ]
	run lab status
	[ "$status" -eq 3 ]
	[ "$(lab hosts)" = "" ]
}

@test "a failed first up leaves nothing behind" {
	run env LAB_FAIL_AT=node2 bash "$LAB_BIN" up 3
	[ "$status" -ne 0 ]
	[ -z "$(lab_ns)" ]
	[ -z "$(ip -4 route show proto 83)" ]
	[ ! -e "$LAB_RUN" ]
}
