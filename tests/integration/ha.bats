#!/usr/bin/env bats
# Issue 19 on the lab with three schedulers (SCHEDULERS=3): sched1..3 each run an etcd member
# (Debian's etcd-server, data under the lab's run dir) and a scheduler on the etcd store; the
# agents and the CLI get all three addresses. Tests run in order on one cluster: the leader
# killed in the middle of a rolling update, the old leader back as a follower, the leader cut
# off from etcd, one then two etcd members lost. The CLI runs in node3's namespace; the
# lifecycle client (tests/tools/lifeclient) sends requests through the proxies of node1 and
# node2 while things fail. Measured times go to the TAP output (# lines), never asserted.

load helpers

# shellcheck disable=SC2034 # read by bats: every test runs under this timeout
BATS_TEST_TIMEOUT=240
M="$BATS_TEST_DIRNAME/manifests"
TTL=3

setup_file() {
	command -v etcd >/dev/null || skip "etcd-server is not installed"
	export SCHEDULERS=3 SHOAL_CLI_HOST=node3
	lab_fresh 3
	local i a cluster=""
	SCHED="" ETCD_EP=""
	for i in 1 2 3; do
		a=$(lab addr "sched$i")
		SCHED+="${SCHED:+,}$a:7100"
		ETCD_EP+="${ETCD_EP:+,}$a:2379"
		cluster+="${cluster:+,}sched$i=http://$a:2380"
	done
	export SCHED ETCD_EP ETCD_CLUSTER=$cluster
	# One identity for all three (what provisioning copies from the first scheduler host).
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/sched" >"$BATS_FILE_TMPDIR/init.out"
	for i in 1 2 3; do
		install -d -m 0700 "$DATA/sched$i"
		cp -p "$DATA/sched"/{scheduler.key,worker.token,admin.token} "$DATA/sched$i/"
	done
	for i in 1 2 3; do start_etcd "$i"; done
	wait_until 60 etcd_healthy 3
	for i in 1 2 3; do start_ha_sched "$i"; done
	for i in 1 2 3; do start_agent "$i"; done
	wait_until 60 nodes_ready 3
}

teardown() {
	touch "$BATS_FILE_TMPDIR/stop"
	lab kill lc-new KILL >/dev/null 2>&1 || true
	lab kill lc-ka KILL >/dev/null 2>&1 || true
	lab kill sampler KILL >/dev/null 2>&1 || true
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

start_etcd() {
	local a
	a=$(lab addr "sched$1")
	lab spawn "etcd$1" "sched$1" etcd --name "sched$1" --data-dir "$LAB_RUN/etcd$1" \
		--listen-client-urls "http://$a:2379" --advertise-client-urls "http://$a:2379" \
		--listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
		--initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new \
		--initial-cluster-token "shoal-ha-${LAB_ID:-0}" \
		--heartbeat-interval 100 --election-timeout 1000 >/dev/null
}

start_ha_sched() {
	local a
	a=$(lab addr "sched$1")
	lab spawn "sched$1" "sched$1" "$SHOAL_BIN/shoal-scheduler" run --data-dir "$DATA/sched$1" \
		--listen "$a:7100" --advertise "$a:7100" --store "etcd://$ETCD_EP" --lease-ttl "$TTL" \
		--heartbeat-interval 1s >/dev/null
}

# etcd_healthy N: N members answer as healthy.
etcd_healthy() {
	[ "$(lab exec node3 etcdctl --endpoints "$ETCD_EP" --command-timeout 2s endpoint health 2>&1 |
		grep -c 'is healthy')" -ge "$1" ]
}

nodes_ready() {
	[ "$(shoal nodes | awk '$3 == "ready"' | wc -l)" -ge "$1" ]
}

# leader: "host:port" of the scheduler that leads, as `shoal nodes` says.
leader() {
	shoal nodes 2>/dev/null | sed -n 's/^Leader: //p'
}

# leader_host: sched1..3, the one that leads now; fails when none does.
leader_host() {
	local l i
	l=$(leader)
	[ -n "$l" ] || return 1
	for i in 1 2 3; do
		if [ "$l" = "$(lab addr "sched$i"):7100" ]; then
			echo "sched$i"
			return 0
		fi
	done
	return 1
}

# leads_other HOST: a scheduler other than HOST leads.
leads_other() {
	local h
	h=$(leader_host) && [ "$h" != "$1" ]
}

# healthy_is, update_state, settled SERVICE STATE N: helpers.bash.

# mid_update SERVICE: at least one running task is of the newest version, and one is not.
mid_update() {
	local v
	v=$(shoal services -o json | jq -r --arg s "$1" '.[] | select(.name == $s) | .version')
	shoal ps "$1" -o json | jq -e --argjson v "$v" '
		[.[] | select(.desired == "running" and .state == "running")] as $r
		| ($r | map(select(.version == $v)) | length) > 0
		and ($r | map(select(.version != $v)) | length) > 0' >/dev/null
}

# load_start HOST, load_stop CASE MAX: helpers.bash.

# running_tasks SERVICE: "id started_at_ms version" of its running tasks, sorted.
running_tasks() {
	shoal ps "$1" -o json |
		jq -r '.[] | select(.desired == "running" and .state == "running") | "\(.id) \(.started_at_ms) \(.version)"' |
		sort
}

# containers_up: containers of service life that run, over all nodes (the runtime's view).
containers_up() {
	local i n=0 c
	for i in 1 2 3; do
		c=$(rt "node$i" ps 2>/dev/null | grep -c 'life.*Up \|Up .*life' || true)
		n=$((n + c))
	done
	echo "$n"
}

containers_is() { [ "$(containers_up)" -eq "$1" ]; }

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# fails CMD...: CMD fails (for wait_until).
fails() { ! "$@"; }

@test "one of three schedulers leads; shoal nodes names it; every agent registered" {
	wait_until 30 leader_host
	run leader_host
	echo "# leader: $output ($(leader))" >&3
	[[ $output =~ ^sched[123]$ ]]
	nodes_ready 3
}

@test "the CLI follows a follower to the leader; no scheduler answering is a clear error" {
	local l f i
	l=$(leader_host)
	for i in 1 2 3; do [ "sched$i" = "$l" ] || f=sched$i; done
	# Only a follower's address: its answer names the leader, the CLI goes there.
	run lab exec node3 "$SHOAL_BIN/shoal" --scheduler "$(lab addr "$f"):7100" \
		--token-file "$DATA/sched/admin.token" nodes
	[ "$status" -eq 0 ]
	[[ $output == *"Leader: $(lab addr "$l"):7100"* ]]
	# Nothing listens on these ports: every address named, each with its reason.
	run lab exec node3 "$SHOAL_BIN/shoal" \
		--scheduler "$(lab addr sched1):7199,$(lab addr sched2):7199" \
		--token-file "$DATA/sched/admin.token" nodes
	[ "$status" -eq 1 ]
	[[ $output == "shoal: no scheduler answers: cannot reach scheduler at $(lab addr sched1):7199: "*"; cannot reach scheduler at $(lab addr sched2):7199: "* ]]
}

@test "kill -9 of the leader mid rolling update: a new leader, the update completes, no container restarted, no request failed" {
	local old t0 t1 before after
	sed "s#delay: 300ms#delay: 1s#; s#parallelism: 2#parallelism: 1#" "$M/lifecycle-web.yaml" \
		>"$BATS_FILE_TMPDIR/life1.yaml"
	shoal apply -f "$BATS_FILE_TMPDIR/life1.yaml"
	wait_until 90 healthy_is life 6
	load_start node3
	sed "s#shoal/web:1#shoal/web:2#" "$BATS_FILE_TMPDIR/life1.yaml" >"$BATS_FILE_TMPDIR/life2.yaml"
	shoal apply -f "$BATS_FILE_TMPDIR/life2.yaml"
	wait_until 60 mid_update life
	before=$(running_tasks life)
	old=$(leader_host)
	t0=$(now_ms)
	lab kill "$old" KILL
	wait_until 30 leads_other "$old"
	t1=$(now_ms)
	echo "# leader $old killed; $(leader_host) leads after $((t1 - t0)) ms (lease TTL ${TTL}s)" >&3
	echo "$old" >"$BATS_FILE_TMPDIR/killed"
	wait_until 120 settled life completed 6
	after=$(running_tasks life)
	# A task that ran before and runs after was not restarted (same start time); every other
	# task that runs now is of the new version (the update's, not a restart).
	local v id started ver
	v=$(shoal services -o json | jq -r '.[] | select(.name == "life") | .version')
	while read -r id started ver; do
		if grep -q "^$id " <<<"$before"; then
			[ "$(grep "^$id " <<<"$before")" = "$id $started $ver" ] || {
				echo "task $id restarted: before $(grep "^$id " <<<"$before"), after $id $started $ver"
				return 1
			}
		else
			[ "$ver" = "$v" ]
		fi
	done <<<"$after"
	[ "$(shoal ps life -a -o json | jq '[.[] | select(.state == "failed")] | length')" -eq 0 ]
	load_stop "leader killed mid update" 0
}

@test "the old leader restarted rejoins as a follower" {
	local old cur
	old=$(cat "$BATS_FILE_TMPDIR/killed")
	cur=$(leader_host)
	start_ha_sched "${old#sched}"
	# It answers (through the redirect to the leader) and the leader stays the same.
	wait_until 30 lab exec node3 "$SHOAL_BIN/shoal" --scheduler "$(lab addr "$old"):7100" \
		--token-file "$DATA/sched/admin.token" nodes
	sleep "$TTL"
	[ "$(leader_host)" = "$cur" ]
	lab pid "$old"
	run lab exec node3 "$SHOAL_BIN/shoal" --scheduler "$(lab addr "$old"):7100" \
		--token-file "$DATA/sched/admin.token" nodes
	[[ $output == *"Leader: $(lab addr "$cur"):7100"* ]]
}

@test "the leader cut off from etcd stops acting within its lease TTL; no slot ever runs twice" {
	local l a t0 t1 max
	l=$(leader_host)
	a=$(lab addr "$l")
	# Sample the runtime's containers and the scheduler's slots the whole time.
	rm -f "$BATS_FILE_TMPDIR/samples"
	(
		while [ ! -e "$BATS_FILE_TMPDIR/stop-sampler" ]; do
			echo "containers $(containers_up)"
			shoal ps life -o json 2>/dev/null |
				jq -r '[.[] | select(.state == "running")] | group_by(.slot) | map(length) | max // 0 | "slot \(.)"' ||
				true
			sleep 0.3
		done
	) >"$BATS_FILE_TMPDIR/samples" 2>/dev/null 3>&- &
	local sampler=$!
	lab exec "$l" ip link set dev eth0 down
	t0=$(now_ms)
	# From its own namespace it still answers on its address: a follower without a leader.
	wait_until $((TTL * 3)) fails lab exec "$l" "$SHOAL_BIN/shoal" --scheduler "$a:7100" \
		--token-file "$DATA/sched/admin.token" nodes
	t1=$(now_ms)
	run lab exec "$l" "$SHOAL_BIN/shoal" --scheduler "$a:7100" \
		--token-file "$DATA/sched/admin.token" nodes
	echo "# $l cut off: stopped leading after $((t1 - t0)) ms (TTL ${TTL}s): $output" >&3
	[[ $output == *"no scheduler leads"* ]]
	wait_until 30 leads_other "$l"
	echo "# $(leader_host) leads after $(($(now_ms) - t0)) ms" >&3
	wait_until 60 settled life completed 6
	lab exec "$l" ip link set dev eth0 up
	sleep "$TTL"
	touch "$BATS_FILE_TMPDIR/stop-sampler"
	wait "$sampler" || true
	max=$(awk '$1 == "containers" && $2 > m { m = $2 } END { print m + 0 }' "$BATS_FILE_TMPDIR/samples")
	echo "# at most $max containers of life ran at once (6 replicas)" >&3
	[ "$max" -le 6 ]
	max=$(awk '$1 == "slot" && $2 > m { m = $2 } END { print m + 0 }' "$BATS_FILE_TMPDIR/samples")
	[ "$max" -le 1 ]
	# Back on the network it follows the leader.
	wait_until 30 lab exec node3 "$SHOAL_BIN/shoal" --scheduler "$a:7100" \
		--token-file "$DATA/sched/admin.token" nodes
}

@test "etcd losing one of three members changes nothing" {
	lab kill etcd1 KILL
	# A write in the second etcd takes to elect its next raft leader (when etcd1 led) may
	# fail with the store's error; scale is idempotent, so it is tried until it goes through.
	wait_until 20 shoal scale life=7
	wait_until 60 healthy_is life 7
	shoal scale life=6
	wait_until 60 healthy_is life 6
	# The 7th replica's container is gone too (it stops with its grace period).
	wait_until 30 containers_is 6
	nodes_ready 3
	start_etcd 1
	wait_until 60 etcd_healthy 3
}

@test "etcd losing two members: writes refused with a clear error; containers and proxies keep serving" {
	local n
	wait_until 30 containers_is 6
	load_start node3
	n=$(containers_up)
	lab kill etcd2 KILL
	lab kill etcd3 KILL
	# Within the lease TTL the leader cannot renew and steps down: every write is refused.
	wait_until $((TTL * 4)) fails shoal scale life=6
	run shoal scale life=5
	echo "# two etcd members lost: $output" >&3
	[ "$status" -ne 0 ]
	[[ $output == *"no scheduler leads"* || $output == *etcd* || $output == *quorum* ]]
	sleep 3
	[ "$(containers_up)" -eq "$n" ]
	load_stop "two etcd members lost" 0
	start_etcd 2
	start_etcd 3
	wait_until 60 etcd_healthy 3
	wait_until 30 leader_host
	wait_until 60 healthy_is life 6
}
