# A local etcd cluster of 3 members on loopback for tests/integration/etcd.bats and
# bench/etcd.sh (Debian's etcd-server). Members etcd0..etcd2, data under $ETCD_DIR.
#   etcd_cluster_up DIR      start all three, wait until the cluster has a leader; exports
#                            ETCD_DIR and ETCD_ENDPOINTS ("etcd://127.0.0.1:P0,..."); pids
#                            in DIR/etcdI.pid (bats runs setup_file, tests and teardown_file
#                            in separate shells: state lives in files)
#   etcd_member_kill I       SIGKILL member I
#   etcd_member_signal SIG   send SIG to every member (STOP/CONT)
#   etcd_cluster_down        kill every member started here, remove DIR
# shellcheck shell=bash

_etcd_port_free() {
	! ss -Hltn "sport = :$1" | grep -q .
}

etcd_cluster_up() {
	local dir=$1 base=23790 i ok cluster="" p ports
	export ETCD_DIR=$dir
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
	ports=("$base" $((base + 2)) $((base + 4)))
	for i in 0 1 2; do
		cluster+="${cluster:+,}etcd$i=http://127.0.0.1:$((ports[i] + 1))"
	done
	for i in 0 1 2; do
		etcd --name "etcd$i" --data-dir "$dir/etcd$i" \
			--listen-client-urls "http://127.0.0.1:${ports[i]}" \
			--advertise-client-urls "http://127.0.0.1:${ports[i]}" \
			--listen-peer-urls "http://127.0.0.1:$((ports[i] + 1))" \
			--initial-advertise-peer-urls "http://127.0.0.1:$((ports[i] + 1))" \
			--initial-cluster "$cluster" --initial-cluster-state new \
			--initial-cluster-token "shoal-test-$$" \
			--heartbeat-interval 100 --election-timeout 1000 \
			</dev/null >"$dir/etcd$i.log" 2>&1 3>&- &
		echo $! >"$dir/etcd$i.pid"
		# No "Killed" job notice from the shell that started it when a test kills it.
		disown $!
		echo "port=${ports[i]}" >"$dir/etcd$i.port"
	done
	ETCD_ENDPOINTS="etcd://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
	export ETCD_ENDPOINTS
	# Ready: a write through the gateway succeeds (the cluster has elected its raft leader).
	for _ in $(seq 1 300); do
		if curl -sf -m 2 -X POST "http://127.0.0.1:${ports[0]}/v3/kv/put" \
			-d '{"key":"cmVhZHk=","value":"MQ=="}' >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "etcd cluster did not become ready; logs:" >&2
	tail -n 20 "$dir"/etcd*.log >&2
	return 1
}

# etcd_follower: the index of a member that is not the raft leader.
etcd_follower() {
	local i port st me
	for i in 0 1 2; do
		port=$(sed -n "s/^port=//p" "$ETCD_DIR/etcd$i.port")
		st=$(curl -sf -m 2 -X POST "http://127.0.0.1:$port/v3/maintenance/status" -d '{}') || continue
		# {"header":{...,"member_id":"M",...},...,"leader":"L",...}
		[[ $st =~ \"member_id\":\"([0-9]+)\" ]] || continue
		me=${BASH_REMATCH[1]}
		[[ $st =~ \"leader\":\"([0-9]+)\" ]] || continue
		if [ "$me" != "${BASH_REMATCH[1]}" ]; then
			echo "$i"
			return 0
		fi
	done
	return 1
}

# etcd_endpoint I: "127.0.0.1:PORT" of member I.
etcd_endpoint() {
	echo "127.0.0.1:$(sed -n "s/^port=//p" "$ETCD_DIR/etcd$1.port")"
}

etcd_member_kill() {
	local pid
	pid=$(cat "$ETCD_DIR/etcd$1.pid" 2>/dev/null) || return 0
	kill -9 "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

etcd_member_signal() {
	local f
	for f in "$ETCD_DIR"/etcd*.pid; do
		[ -e "$f" ] || continue
		kill -"$1" "$(cat "$f")" 2>/dev/null || true
	done
}

etcd_cluster_down() {
	local i
	[ -n "${ETCD_DIR:-}" ] && [ -d "$ETCD_DIR" ] || return 0
	etcd_member_signal CONT
	for i in 0 1 2; do
		etcd_member_kill "$i"
	done
	rm -rf "$ETCD_DIR"
}
