# A local etcd cluster of 3 members on loopback for tests/integration/etcd.bats and
# bench/etcd.sh (Debian's etcd-server). Members etcd0..etcd2, data under $ETCD_DIR.
#   etcd_cluster_up DIR      start all three, wait until the cluster has a leader;
#                            sets ETCD_ENDPOINTS ("etcd://127.0.0.1:P0,...") and ETCD_PORTS
#   etcd_member_kill I       SIGKILL member I
#   etcd_cluster_down        kill every member started here, remove DIR
# shellcheck shell=bash

ETCD_DIR=
ETCD_PORTS=()
ETCD_PIDS=()
ETCD_ENDPOINTS=

_etcd_port_free() {
	! ss -Hltn "sport = :$1" | grep -q .
}

etcd_cluster_up() {
	local dir=$1 base=23790 i ok cluster="" p
	ETCD_DIR=$dir
	mkdir -p "$dir"
	# Six free loopback ports in a row: other labs or benchmarks may hold some.
	while :; do
		ok=1
		for p in $(seq "$base" $((base + 5))); do
			_etcd_port_free "$p" || ok=0
		done
		[ "$ok" = 1 ] && break
		base=$((base + 10))
		[ "$base" -lt 24990 ] || return 1
	done
	ETCD_PORTS=("$base" $((base + 2)) $((base + 4)))
	for i in 0 1 2; do
		cluster+="${cluster:+,}etcd$i=http://127.0.0.1:$((ETCD_PORTS[i] + 1))"
	done
	ETCD_PIDS=()
	for i in 0 1 2; do
		etcd --name "etcd$i" --data-dir "$dir/etcd$i" \
			--listen-client-urls "http://127.0.0.1:${ETCD_PORTS[i]}" \
			--advertise-client-urls "http://127.0.0.1:${ETCD_PORTS[i]}" \
			--listen-peer-urls "http://127.0.0.1:$((ETCD_PORTS[i] + 1))" \
			--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORTS[i] + 1))" \
			--initial-cluster "$cluster" --initial-cluster-state new \
			--initial-cluster-token "shoal-test-$$" \
			--heartbeat-interval 100 --election-timeout 1000 \
			>"$dir/etcd$i.log" 2>&1 &
		ETCD_PIDS+=($!)
	done
	ETCD_ENDPOINTS="etcd://127.0.0.1:${ETCD_PORTS[0]},127.0.0.1:${ETCD_PORTS[1]},127.0.0.1:${ETCD_PORTS[2]}"
	export ETCD_ENDPOINTS
	# Ready: a write through the gateway succeeds (the cluster has elected its raft leader).
	for _ in $(seq 1 300); do
		if curl -sf -m 2 -X POST "http://127.0.0.1:${ETCD_PORTS[0]}/v3/kv/put" \
			-d '{"key":"cmVhZHk=","value":"MQ=="}' >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "etcd cluster did not become ready; logs:" >&2
	tail -n 20 "$dir"/etcd*.log >&2
	return 1
}

etcd_member_kill() {
	kill -9 "${ETCD_PIDS[$1]}" 2>/dev/null || true
	wait "${ETCD_PIDS[$1]}" 2>/dev/null || true
}

etcd_cluster_down() {
	local p
	for p in "${ETCD_PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null || true
	done
	for p in "${ETCD_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	ETCD_PIDS=()
	[ -z "$ETCD_DIR" ] || rm -rf "$ETCD_DIR"
}
