#!/usr/bin/env bats
# Issue 15, client addresses, on the namespace lab: a replica behind `proxy: {protocol:
# proxy-v1|proxy-v2}` reads the client's own lab address in the PROXY header, and `proxy:
# {mode: http}` balances each request of a keep-alive connection, adds X-Forwarded-For, and
# loses no request when a replica is killed under load. Clients run on the scheduler's host
# (it runs no replica and no proxy).

load helpers

BATS_TEST_TIMEOUT=120
M="$BATS_TEST_DIRNAME/manifests"
HTTPKA="$SHOAL_BIN/tests/tools/httpka"

# echo_through ADDR PORT: what the echo replica behind ADDR:PORT got, the PROXY header first,
# as hex bytes.
echo_through() {
	lab exec sched sh -c "printf 'hello\n' | timeout 3 busybox nc $1 $2 | od -An -tx1 -v" |
		tr -d ' \n'
}

echoes() {
	[ -n "$(echo_through "$1" "$2")" ]
}

# lines_at_least FILE N
lines_at_least() {
	[ "$(wc -l <"$1")" -ge "$2" ]
}

# hexip A.B.C.D: its 4 bytes in hex.
hexip() {
	local IFS=.
	# shellcheck disable=SC2086 # the octets, split on dots
	printf '%02x' $1
}

setup_file() { proxy_lab_up; }
teardown() { dump_logs_on_failure; }
teardown_file() { proxy_lab_down; }

@test "proxy-v1 and proxy-v2: the replica reads the client's lab address before its bytes" {
	shoal apply -f "$M/ppecho.yaml"
	client=$(lab addr sched)
	hello=68656c6c6f0a
	for i in 1 3; do
		node=$(lab addr "node$i")
		# v1: "PROXY TCP4 <client> <node> <client port> 9301\r\n" then "hello\n"
		want=$(printf 'PROXY TCP4 %s %s ' "$client" "$node" | od -An -tx1 -v | tr -d ' \n')
		wait_until 40 echoes "$node" 9301
		got=$(echo_through "$node" 9301)
		echo "v1 via node$i: $got" >&3
		[[ $got == "$want"* ]]
		[[ $got == *"2039333031"0d0a"$hello" ]] # " 9301\r\n" then the client's bytes
		# v2: signature, PROXY TCP4, 12 bytes: client, node, client port, 9302
		want="0d0a0d0a000d0a515549540a2111000c$(hexip "$client")$(hexip "$node")"
		wait_until 40 echoes "$node" 9302
		got=$(echo_through "$node" 9302)
		echo "v2 via node$i: $got" >&3
		[[ $got == "$want"????"$(printf '%04x' 9302)$hello" ]]
	done
}

@test "mode http: one keep-alive connection, each request to the next replica, X-Forwarded-For added" {
	shoal apply -f "$M/webhttp.yaml"
	wait_until 60 healthy_is webhttp 3
	client=$(lab addr sched)
	node=$(lab addr node2)
	wait_until 20 lab exec sched "$HTTPKA" -n 3 "$node" 9303
	run lab exec sched "$HTTPKA" -n 9 -x 203.0.113.7 "$node" 9303
	echo "$output" | sed "s/^/# /" >&3
	[ "$status" -eq 0 ]
	# One connection (its number never changed), 9 answers, 3 replicas 3 times each, in turn.
	[ "$(echo "$output" | awk '{print $1, $2, $3}' | sort -u)" = "ok 1 200" ]
	[ "$(echo "$output" | wc -l)" -eq 9 ]
	[ "$(echo "$output" | awk '{print $4}' | sort | uniq -c | awk '{print $1}' | sort -u)" = 3 ]
	for ((k = 1; k <= 9; k += 3)); do
		[ "$(echo "$output" | sed -n "$k,$((k + 2))p" | awk '{print $4}' | sort -u | wc -l)" -eq 3 ]
	done
	# The client's address appended to the X-Forwarded-For it sent, and in Forwarded.
	[ "$(echo "$output" | grep -c "xff=203.0.113.7, $client proto=http fwd=for=$client;proto=http$")" -eq 9 ]
}

@test "mode http: a replica killed under load loses no request" {
	shoal apply -f "$M/webhttp.yaml" # unchanged when the test before ran
	wait_until 60 healthy_is webhttp 3
	node=$(lab addr node1)
	victim=$(shoal ps webhttp | awk 'NR > 1 && $4 == "running" && $3 == "node2" {print $1; exit}')
	pid=$(rt node2 inspect "$victim" | jq -r .pid)
	[ -n "$pid" ]
	lab exec sched "$HTTPKA" -n 50 -c 8 -t 20 "$node" 9303 >"$BATS_TEST_TMPDIR/results" 2>&1 &
	load=$!
	wait_until 30 lines_at_least "$BATS_TEST_TMPDIR/results" 60
	# node2's agent is stopped first, so nothing tells the other proxies that the replica
	# is gone: every request sent its way must be retried on another one.
	lab kill agent2 STOP
	kill -9 "$pid"
	wait "$load" || true
	lab kill agent2 CONT
	total=$(grep -c . "$BATS_TEST_TMPDIR/results")
	fails=$(grep -vc '^ok ' "$BATS_TEST_TMPDIR/results" || true)
	served=$(grep -c " $victim " "$BATS_TEST_TMPDIR/results" || true)
	echo "requests: $total, failed: $fails, answered by the victim before the kill: $served" >&3
	[ "$total" -eq 400 ]
	[ "$served" -gt 0 ]
	[ "$fails" -eq 0 ]
	stats=$(shoal services --stats -o json)
	echo "$stats" | jq -c '.[] | select(.name == "webhttp") | .stats' >&3 || true
}
