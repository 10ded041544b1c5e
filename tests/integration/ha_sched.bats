#!/usr/bin/env bats
# Several schedulers on one etcd store (issue 19, the scheduler side): three shoal-scheduler
# processes on loopback against a 3-member etcd (etcd_cluster.bash), no agents (the lab tests
# with agents are in the HA lab files). One leads; the others answer every request with
# SHOAL_ENOTLEADER and the leader's address; kill -9 of the leader makes another lead; a
# leader stopped past its lease steps down when it resumes and its fence is refused; etcd
# without quorum: writes refused with a clear error, the schedulers stay up. Tests run in
# order on one cluster; the last one kills etcd members. teardown_file kills what it started.

load helpers
load etcd_cluster

# shellcheck disable=SC2034 # read by bats: every test runs under this timeout
BATS_TEST_TIMEOUT=120
M="$BATS_TEST_DIRNAME/manifests"

setup_file() {
	command -v etcd >/dev/null || skip "etcd-server is not installed"
	local dir p i=1
	dir=$(mktemp -d /tmp/shoal-hasched.XXXXXX)
	etcd_cluster_up "$dir/etcd"
	echo "$dir" >"$BATS_FILE_TMPDIR/dir"
	H=$dir
	echo "$ETCD_ENDPOINTS" >"$dir/endpoints"
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$dir/s1" >/dev/null
	# One identity for all: the data dir's scheduler.key, worker.token, admin.token,
	# read.token copied to each scheduler.
	cp -a "$dir/s1" "$dir/s2"
	cp -a "$dir/s1" "$dir/s3"
	# Three free loopback ports.
	for p in $(seq 27110 27199); do
		_etcd_port_free "$p" || continue
		echo "$p" >"$dir/s$i.port"
		i=$((i + 1))
		[ "$i" -le 3 ] || break
	done
	for i in 1 2 3; do
		sched_start "$i"
	done
}

teardown_file() {
	local f
	[ -n "${H:-}" ] || H=$(cat "$BATS_FILE_TMPDIR/dir" 2>/dev/null) || return 0
	for f in "$H"/s*.pid; do
		[ -e "$f" ] || continue
		kill -CONT "$(cat "$f")" 2>/dev/null || true
		kill -9 "$(cat "$f")" 2>/dev/null || true
	done
	ETCD_DIR=$H/etcd etcd_cluster_down
	rm -rf "$H"
}

setup() {
	H=$(cat "$BATS_FILE_TMPDIR/dir")
	ETCD_DIR=$H/etcd
	ETCD_ENDPOINTS=$(cat "$H/endpoints")
	export ETCD_DIR ETCD_ENDPOINTS
}

teardown() {
	local f
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		for f in "$H"/s*.log; do
			echo "----- $f"
			tail -n 30 "$f"
		done
	fi
}

addr() {
	echo "127.0.0.1:$(cat "$H/s$1.port")"
}

# sched_start I: scheduler I in the background (its log appended to s$I.log).
sched_start() {
	local a
	a=$(addr "$1")
	"$SHOAL_BIN/shoal-scheduler" run --data-dir "$H/s$1" --listen "$a" --advertise "$a" \
		--http off --store "$ETCD_ENDPOINTS" --store-prefix /shoal-ha/ --lease-ttl 3 \
		</dev/null >>"$H/s$1.log" 2>&1 3>&- &
	echo $! >"$H/s$1.pid"
	disown $!
}

probe() {
	ETCDPROBE_PREFIX=/shoal-ha/ "$SHOAL_BIN/tests/tools/etcdprobe" "$ETCD_ENDPOINTS" "$@"
}

cli() {
	"$SHOAL_BIN/shoal" --token-file "$H/s1/admin.token" "$@"
}

# peer I ARGS...: one raw request to scheduler I (tests/tools/shoal-peer), which, unlike the
# CLI, does not follow a follower's redirect: exit 0 answered, 3 an Error reply.
peer() {
	local i=$1
	shift
	"$SHOAL_BIN/tests/tools/shoal-peer" --token "$H/s1/admin.token" --addr "$(addr "$i")" "$@"
}

# leader: the index of the scheduler that answers a ListNodes itself (exactly one must).
leader() {
	local i found=""
	for i in 1 2 3; do
		if [ ! -e "$H/s$i.pid" ] || ! kill -0 "$(cat "$H/s$i.pid")" 2>/dev/null; then
			continue
		fi
		if peer "$i" list-nodes >/dev/null 2>&1; then
			[ -z "$found" ] || return 1
			found=$i
		fi
	done
	[ -n "$found" ] && echo "$found"
}

# follower_names I L: scheduler I refuses a request, naming scheduler L as the leader.
follower_names() {
	peer "$1" list-nodes 2>&1 | grep -q "not the leader; the leader is $(addr "$2")"
}

@test "one scheduler leads; the others answer not-the-leader with its address" {
	wait_until 30 leader
	l=$(leader)
	run cli --scheduler "$(addr "$l")" nodes
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "Leader: $(addr "$l")" ]
	for i in 1 2 3; do
		[ "$i" != "$l" ] || continue
		run peer "$i" list-nodes
		[ "$status" -eq 3 ]
		[[ $output == *"not the leader; the leader is $(addr "$l")"* ]]
		# An agent's Register too.
		run peer "$i" register --name intruder
		[ "$status" -eq 3 ]
		[[ $output == *"not the leader; the leader is $(addr "$l")"* ]]
		# The CLI given only a follower follows it to the leader: reads and writes work.
		run cli --scheduler "$(addr "$i")" nodes
		[ "$status" -eq 0 ]
		[ "${lines[0]}" = "Leader: $(addr "$l")" ]
	done
}

@test "the leader's writes land in etcd under the prefix" {
	l=$(leader)
	run cli --scheduler "$(addr "$l")" apply -d -f "$M/sleeper.yaml"
	[ "$status" -eq 0 ]
	run probe get /shoal-ha/services/sleeper
	[ "$status" -eq 0 ]
	[[ $output == *'"name":"sleeper"'* ]] || [[ $output == *sleeper* ]]
}

@test "kill -9 of the leader: another leads with the state, writes; the old one rejoins as a follower" {
	old=$(leader)
	kill -9 "$(cat "$H/s$old.pid")"
	rm -f "$H/s$old.pid"
	wait_until 30 leader
	new=$(leader)
	[ "$new" != "$old" ]
	run cli --scheduler "$(addr "$new")" services
	[ "$status" -eq 0 ]
	[[ $output == *sleeper* ]]
	# A write by the new leader is visible.
	run cli --scheduler "$(addr "$new")" scale -d sleeper=5
	[ "$status" -eq 0 ]
	run cli --scheduler "$(addr "$new")" services
	[[ $output == *"/5"* ]]
	# The old one back: a follower pointing at the new leader.
	sched_start "$old"
	wait_until 30 follower_names "$old" "$new"
	[ "$(leader)" = "$new" ]
}

@test "a leader stopped past its lease steps down when it resumes; its fence is refused" {
	old=$(leader)
	pid=$(cat "$H/s$old.pid")
	fence=$(sed -n 's/.*leader: elected fence=\([0-9]*\).*/\1/p' "$H/s$old.log" | tail -n 1)
	[ -n "$fence" ]
	# While it leads, its own fence writes (the probe writes as it would).
	run probe store-fenced-put "$fence" "$(addr "$old")" fence-check
	[ "$status" -eq 0 ]
	[ "$output" = ok ]
	kill -STOP "$pid"
	wait_until 30 leader
	new=$(leader)
	[ "$new" != "$old" ]
	# The stopped leader's writes are refused by the fence and its store steps it down.
	run probe store-fenced-put "$fence" "$(addr "$old")" fence-check
	[ "$status" -eq 3 ]
	[[ $output == *"fenced: store: write refused: this scheduler no longer leads"* ]]
	kill -CONT "$pid"
	wait_until 30 grep -q "stepping down" "$H/s$old.log"
	# The same process, now a follower sending clients to the new leader.
	kill -0 "$pid"
	wait_until 30 follower_names "$old" "$new"
	[ "$(leader)" = "$new" ]
	run cli --scheduler "$(addr "$new")" services
	[[ $output == *"/5"* ]]
}

@test "SIGTERM of the leader: it resigns and exits, another leads" {
	old=$(leader)
	pid=$(cat "$H/s$old.pid")
	kill -TERM "$pid"
	# Exits (a resignation must not restart it as a follower).
	wait_until 30 sh -c "! kill -0 $pid 2>/dev/null"
	rm -f "$H/s$old.pid"
	wait_until 30 leader
	[ "$(leader)" != "$old" ]
	sched_start "$old"
	wait_until 30 sh -c "'$SHOAL_BIN/tests/tools/shoal-peer' --token '$H/s1/admin.token' --addr '$(addr "$old")' list-nodes 2>&1 | grep -q 'the leader is'"
}

@test "etcd loses 2 of 3 members: writes refused with a clear error, the schedulers stay up" {
	l=$(leader)
	f=$(etcd_follower)
	for i in 0 1 2; do
		[ "$i" = "$f" ] || etcd_member_kill "$i"
	done
	# Within the lease TTL the leader stops acting; every scheduler says why.
	wait_until 60 sh -c "! $SHOAL_BIN/shoal --token-file $H/s1/admin.token --scheduler $(addr "$l") scale -d sleeper=4 >/dev/null 2>&1"
	run cli --scheduler "$(addr "$l")" scale -d sleeper=4
	[ "$status" -eq 1 ]
	[[ $output == *"etcd has lost its quorum"* ]] || [[ $output == *etcd* ]]
	for i in 1 2 3; do
		kill -0 "$(cat "$H/s$i.pid")"
	done
}
