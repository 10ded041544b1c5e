#!/usr/bin/env bats
# Issue 19's foundation against a real etcd: a 3-member cluster of Debian's etcd-server on
# loopback (no lab namespaces needed), driven by tests/tools/etcdprobe through the scheduler's
# etcd client, leader election and etcd store. Tests run in order on one cluster: the last two
# kill members. teardown_file kills every member and contender and removes the data dirs.

load helpers
load etcd_cluster

# shellcheck disable=SC2034 # read by bats: every test runs under this timeout
BATS_TEST_TIMEOUT=120
TTL=2

probe() {
	"$SHOAL_BIN/tests/tools/etcdprobe" "$ETCD_ENDPOINTS" "$@"
}

setup_file() {
	command -v etcd >/dev/null || skip "etcd-server is not installed"
	local dir
	dir=$(mktemp -d /tmp/shoal-etcd.XXXXXX)
	etcd_cluster_up "$dir"
}

teardown_file() {
	local f
	[ ! -e "$ETCD_DIR/tls.pid" ] || kill -9 "$(cat "$ETCD_DIR/tls.pid")" 2>/dev/null || true
	for f in "$ETCD_DIR"/contender.*.pid; do
		[ -e "$f" ] || continue
		kill -CONT "$(cat "$f")" 2>/dev/null || true
		kill -9 "$(cat "$f")" 2>/dev/null || true
	done
	etcd_cluster_down
}

teardown() {
	local f
	for f in "$ETCD_DIR"/contender.*.pid; do
		[ -e "$f" ] || continue
		kill -CONT "$(cat "$f")" 2>/dev/null || true
		kill -9 "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
	if [ "${BATS_TEST_COMPLETED:-}" != 1 ]; then
		for f in "$ETCD_DIR"/contender.*.out "$ETCD_DIR"/etcd*.log; do
			[ -e "$f" ] || continue
			echo "----- $f"
			tail -n 30 "$f"
		done
	fi
}

# contend ID: start a contender under $ETCDPROBE_PREFIX in the background.
contend() {
	"$SHOAL_BIN/tests/tools/etcdprobe" "$ETCD_ENDPOINTS" elect "$1" "$TTL" \
		</dev/null >"$ETCD_DIR/contender.$1.out" 2>&1 3>&- &
	echo $! >"$ETCD_DIR/contender.$1.pid"
}

elected() {
	grep -q '^elected ' "$ETCD_DIR/contender.$1.out"
}

fence_of() {
	awk '/^elected /{f=$2} END{print f}' "$ETCD_DIR/contender.$1.out"
}

@test "etcd: a value put through the gateway reads back, missing keys are absent" {
	run probe put /shoal-test/greeting "hello etcd"
	[ "$status" -eq 0 ]
	run probe get /shoal-test/greeting
	[ "$status" -eq 0 ]
	[ "$output" = "hello etcd" ]
	run probe get /shoal-test/nothing
	[ "$status" -eq 1 ]
}

@test "etcd store: nodes, services, tasks, pins and meta round-trip equal to the SQLite store" {
	ETCDPROBE_PREFIX=/rt/ run probe store-roundtrip "$ETCD_DIR/rt.db"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == "equal "* ]]
}

@test "etcd store: the loop's asynchronous commit (8 transactions in flight) keeps write order" {
	# The batch writes every task twice and deletes some: a later write of a key must land
	# after the earlier one although other transactions are in flight together.
	ETCDPROBE_ASYNC=1 ETCDPROBE_PREFIX=/rta/ run probe store-roundtrip "$ETCD_DIR/rta.db"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == "equal "* ]]
}

@test "election: two contenders elect exactly one; killing it, the other leads within TTL+1s" {
	export ETCDPROBE_PREFIX=/e1/
	contend a
	contend b
	wait_until 10 bash -c "grep -q '^elected ' '$ETCD_DIR/contender.a.out' || grep -q '^elected ' '$ETCD_DIR/contender.b.out'"
	# Give a second contender every chance to (wrongly) win too.
	sleep 1
	local n=0 leader other
	elected a && n=$((n + 1))
	elected b && n=$((n + 1))
	[ "$n" -eq 1 ]
	if elected a; then leader=a other=b; else leader=b other=a; fi
	# The follower knows who leads.
	grep -q "^leader $leader\$" "$ETCD_DIR/contender.$other.out"
	kill -9 "$(cat "$ETCD_DIR/contender.$leader.pid")"
	wait_until $((TTL + 1)) elected "$other"
	[ "$(fence_of "$other")" -gt 0 ]
}

@test "fencing: a deposed leader's fenced write fails, the new leader's succeeds; a frozen leader steps down by itself" {
	export ETCDPROBE_PREFIX=/e2/
	contend a
	wait_until 10 elected a
	local fa fb
	fa=$(fence_of a)
	run probe fenced-put "$fa" a /e2/data one
	[ "$status" -eq 0 ]
	contend b
	# a freezes (a long GC pause, a stopped VM): its lease expires and b takes over.
	kill -STOP "$(cat "$ETCD_DIR/contender.a.pid")"
	wait_until 15 elected b
	fb=$(fence_of b)
	[ "$fb" -gt "$fa" ]
	# a has not noticed: its write, fenced by its old revision, is refused.
	run probe fenced-put "$fa" a /e2/data two
	[ "$status" -eq 3 ]
	[[ $output == *"not the leader"* ]]
	run probe get /e2/data
	[ "$output" = one ]
	run probe fenced-put "$fb" b /e2/data three
	[ "$status" -eq 0 ]
	# Thawed, a stops acting before anything else: its lease was not renewed in time.
	kill -CONT "$(cat "$ETCD_DIR/contender.a.pid")"
	wait_until 5 grep -q '^deposed lease not renewed' "$ETCD_DIR/contender.a.out"
	wait_until 5 grep -q '^leader b$' "$ETCD_DIR/contender.a.out"
}

@test "election: a leader cut off from etcd steps down within its TTL, and leads again after" {
	export ETCDPROBE_PREFIX=/e3/
	contend a
	wait_until 10 elected a
	# Every member frozen: requests time out, nothing answers.
	etcd_member_signal STOP
	wait_until $((TTL + 1)) grep -q '^deposed' "$ETCD_DIR/contender.a.out"
	etcd_member_signal CONT
	wait_until 30 bash -c "[ \$(grep -c '^elected ' '$ETCD_DIR/contender.a.out') -ge 2 ]"
}

@test "etcd: TLS with client certificates: the client's certificate is required and accepted" {
	local d=$ETCD_DIR/tls port=24990 i
	mkdir -p "$d"
	for i in $(seq 0 20); do
		ss -Hltn "sport = :$((port + i * 2))" | grep -q . || break
	done
	port=$((port + i * 2))
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=shoal-test-ca \
		-keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
	for who in server client; do
		openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$d/$who.key" \
			-out "$d/$who.csr" 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/ext"
		openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
			-days 1 -extfile "$d/ext" -out "$d/$who.pem" 2>/dev/null
	done
	etcd --name tls --data-dir "$d/data" \
		--listen-client-urls "https://127.0.0.1:$port" --advertise-client-urls "https://127.0.0.1:$port" \
		--listen-peer-urls "http://127.0.0.1:$((port + 1))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
		--initial-cluster "tls=http://127.0.0.1:$((port + 1))" \
		--cert-file "$d/server.pem" --key-file "$d/server.key" --trusted-ca-file "$d/ca.pem" \
		--client-cert-auth </dev/null >"$d/etcd.log" 2>&1 3>&- &
	echo $! >"$ETCD_DIR/tls.pid"
	export ETCDPROBE_CACERT=$d/ca.pem ETCDPROBE_CERT=$d/client.pem ETCDPROBE_KEY=$d/client.key
	wait_until 20 "$SHOAL_BIN/tests/tools/etcdprobe" "etcd://127.0.0.1:$port" put /tls/x secret
	run "$SHOAL_BIN/tests/tools/etcdprobe" "etcd://127.0.0.1:$port" get /tls/x
	[ "$output" = secret ]
	# Without the client certificate: refused, and the error says so (not a hang).
	unset ETCDPROBE_CERT ETCDPROBE_KEY
	run timeout 30 "$SHOAL_BIN/tests/tools/etcdprobe" "etcd://127.0.0.1:$port" get /tls/x
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"no member answered"* ]]
	kill -9 "$(cat "$ETCD_DIR/tls.pid")"
	rm -f "$ETCD_DIR/tls.pid"
}

@test "etcd: losing one of three members changes nothing (reads, writes, election, store)" {
	# A follower (losing the raft leader costs etcd an election, ~1 s of refused writes),
	# listed first: clients move on to the next endpoint.
	local f i eps
	f=$(etcd_follower)
	eps="etcd://$(etcd_endpoint "$f")"
	for i in 0 1 2; do
		[ "$i" = "$f" ] || eps+=",$(etcd_endpoint "$i")"
	done
	echo "$f" >"$ETCD_DIR/killed"
	etcd_member_kill "$f"
	export ETCD_ENDPOINTS=$eps
	run probe put /shoal-test/one-down yes
	echo "$output"
	[ "$status" -eq 0 ]
	run probe get /shoal-test/one-down
	[ "$output" = yes ]
	ETCDPROBE_PREFIX=/rt2/ run probe store-roundtrip "$ETCD_DIR/rt2.db"
	echo "$output"
	[[ $output == "equal "* ]]
	export ETCDPROBE_PREFIX=/e4/
	contend c
	wait_until 10 elected c
}

@test "etcd: losing two of three members makes writes fail with a clear error, not hang" {
	local i
	for i in 0 1 2; do
		[ "$i" = "$(cat "$ETCD_DIR/killed" 2>/dev/null)" ] || { etcd_member_kill "$i"; break; }
	done
	# Bounded: each member is tried once within its timeout (2 s); 30 s only guards a hang.
	run timeout 30 "$SHOAL_BIN/tests/tools/etcdprobe" "$ETCD_ENDPOINTS" put /shoal-test/two-down no
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"no member answered"* ]]
	ETCDPROBE_PREFIX=/rt3/ run timeout 60 "$SHOAL_BIN/tests/tools/etcdprobe" "$ETCD_ENDPOINTS" \
		store-roundtrip "$ETCD_DIR/rt3.db"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ $output == *"etcd"* ]]
}
