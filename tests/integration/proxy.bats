#!/usr/bin/env bats
# Issue 5 on the namespace lab: every node's address serves the service, round-robin over
# every healthy replica in the cluster, through failures and scale-downs without failed
# requests. Clients run in the lab's namespaces (the scheduler's host is a good client: it
# runs no replica and no proxy of its own).

load helpers

BATS_TEST_TIMEOUT=120
M="$BATS_TEST_DIRNAME/manifests"

# get ADDR: one request from the scheduler's host; prints the page ("web v1 on TASK").
get() {
	lab exec sched timeout 3 busybox wget -qO- "http://$1:8080/"
}

# serves N ADDR: the proxy on ADDR rotates over N backends (a round of N requests hits N
# distinct replicas).
serves() {
	local n=$1 addr=$2 i
	[ "$(for ((i = 0; i < n; i++)); do get "$addr"; done | sort -u | wc -l)" -eq "$n" ]
}

setup_file() { proxy_lab_up; }
teardown() { dump_logs_on_failure; }
teardown_file() { proxy_lab_down; }

@test "30 requests through each node's address give exactly 10 per replica, in rotation" {
	shoal apply -f "$M/webnet.yaml"
	wait_until 40 healthy_is web 3
	for i in 1 2 3; do
		addr=$(lab addr "node$i")
		wait_until 10 serves 3 "$addr"
		pages=$(for n in $(seq 30); do get "$addr"; done)
		echo "$pages" | sort | uniq -c >&3
		[ "$(echo "$pages" | sort -u | wc -l)" -eq 3 ]
		[ "$(echo "$pages" | sort | uniq -c | awk '{print $1}' | sort -u)" = 10 ]
		# Strict rotation: every run of 3 consecutive answers names 3 replicas.
		for ((k = 0; k < 30; k += 3)); do
			[ "$(echo "$pages" | sed -n "$((k + 1)),$((k + 3))p" | sort -u | wc -l)" -eq 3 ]
		done
	done
}

@test "a client on one node reaches a replica on another by its container IP" {
	ip3=$(shoal ps web -o json | jq -r '.[] | select(.node == "node3" and .desired == "running") | .ip')
	[[ $ip3 == 10.244.* ]]
	run lab exec node1 timeout 3 busybox wget -qO- "http://$ip3:8080/"
	[[ $output == "web v1 on web."* ]]
}

@test "kill -9 a replica during 200 requests: at most the one in flight fails" {
	wait_until 40 healthy_is web 3
	addr=$(lab addr node1)
	victim=$(shoal ps web | awk 'NR > 1 && $4 == "running" && $3 == "node2" {print $1; exit}')
	pid=$(rt node2 inspect "$victim" | jq -r .pid)
	(
		for n in $(seq 200); do
			if out=$(get "$addr" 2>/dev/null); then echo "ok $out"; else echo "fail"; fi
			if [ "$n" -eq 50 ]; then kill -9 "$pid"; fi
		done
	) >"$BATS_TEST_TMPDIR/results"
	fails=$(grep -c '^fail' "$BATS_TEST_TMPDIR/results" || true)
	echo "failed requests: $fails of 200" >&3
	[ "$fails" -le 1 ]
	# After the kill, the dead replica answered nothing more.
	[ "$(sed -n '52,200p' "$BATS_TEST_TMPDIR/results" | grep -c "$victim")" -eq 0 ]
	wait_until 30 healthy_is web 3
}

@test "scale 3 -> 1 while 4 clients loop for 10 s: zero failed requests" {
	wait_until 40 healthy_is web 3
	wait_until 10 serves 3 "$(lab addr node1)"
	pids=()
	for c in 1 2 3 4; do
		addr=$(lab addr "node$(((c - 1) % 3 + 1))")
		(
			end=$((SECONDS + 10))
			while [ "$SECONDS" -lt "$end" ]; do
				if get "$addr" >/dev/null 2>&1; then echo ok; else echo fail; fi
			done
		) >"$BATS_TEST_TMPDIR/client$c" &
		pids+=($!)
	done
	sleep 2
	shoal scale web=1
	# Only the clients: a bare `wait` would also wait for bats' own helpers.
	wait "${pids[@]}"
	total=$(cat "$BATS_TEST_TMPDIR"/client* | wc -l)
	fails=$(cat "$BATS_TEST_TMPDIR"/client* | grep -c fail || true)
	echo "requests: $total, failed: $fails" >&3
	[ "$total" -gt 40 ]
	[ "$fails" -eq 0 ]
	[ "$(shoal ps web | awk '$4 == "running"' | wc -l)" -eq 1 ]
}

@test "shoal services --stats shows the proxies' counters" {
	sleep 1.5
	run shoal services --stats
	[ "$status" -eq 0 ]
	[[ $output == *"SERVICE"*"BACKEND"*"CONNECTIONS"* ]]
	[[ $output == *"web"*"total"* ]]
	total=$(shoal services -o json --stats | jq '.[] | select(.name == "web") | .stats[0].connections')
	[ "$total" -gt 100 ]
}

# A scale-down waits for requests in flight: each replica is serving a slow download when one
# of them is picked to stop; both downloads finish whole (a SIGTERM at once would cut one).
@test "scale-down lets a slow download in flight finish within stop_grace" {
	local addr pids=() i
	shoal apply -f "$M/bigfile.yaml"
	wait_until 40 healthy_is big 2
	addr=$(lab addr node1)
	wait_until 10 lab exec sched curl -sf -o /dev/null -r 0-0 "http://$addr:8081/big"
	lab exec sched curl -sf -o /dev/null -r 0-0 "http://$addr:8081/big"
	# Rotation: the two downloads go to the two replicas. 32 MiB at 4 MB/s: ~8 s.
	for i in 1 2; do
		lab exec sched curl -s --max-time 60 --limit-rate 4M -o /dev/null -w '%{http_code} %{size_download}\n' \
			"http://$addr:8081/big" >"$BATS_TEST_TMPDIR/dl$i" &
		pids+=($!)
	done
	sleep 2
	shoal scale big=1
	wait "${pids[@]}"
	cat "$BATS_TEST_TMPDIR"/dl* >&3
	for i in 1 2; do
		[ "$(cat "$BATS_TEST_TMPDIR/dl$i")" = "200 33554432" ]
	done
	wait_until 10 running_is big 1
	shoal rm big
}

