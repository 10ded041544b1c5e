#!/usr/bin/env bats
# Issue 16 on the namespace lab: the scheduler's and the agents' Prometheus /metrics (checked
# by promtool, scraped by a real Prometheus), and the scheduler's status page (loaded in
# headless Chromium while a rollout runs). Every client runs in the scheduler's namespace:
# the scheduler's HTTP port is on its loopback, the agents' on their node addresses.

load helpers

# shellcheck disable=SC2034 # read by bats: every test runs under this timeout
BATS_TEST_TIMEOUT=150
M="$BATS_TEST_DIRNAME/manifests"
SCHED_HTTP=127.0.0.1:7180
PROM_ADDR=127.0.0.1:19090

# Where the screenshots go (printed by the test that makes them).
ARTIFACTS=${SHOAL_ARTIFACTS:-$SHOAL_BIN/test-artifacts}

# get URL [CURL ARGS...]: the body, from the scheduler's namespace; fails on HTTP errors.
get() {
	local url=$1
	shift
	lab exec sched curl -sS --fail --max-time 5 "$@" "$url"
}

# status URL [CURL ARGS...]: only the HTTP status code.
status() {
	local url=$1
	shift
	lab exec sched curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url"
}

# metric TEXT NAME{LABELS}: the value of that exact series in exposition TEXT.
metric() {
	awk -v s="$2" '$1 == s { print $2 }' <<<"$1"
}

# metric_at_least URL NAME N: NAME on URL's /metrics is at least N. An agent's proxy counters come
# from its ingress process's last report (one per heartbeat), so they trail the traffic.
metric_at_least() {
	local v
	v=$(metric "$(get "$1")" "$2")
	[ -n "$v" ] && [ "$v" -ge "$3" ]
}

healthy_is() {
	[ "$(shoal ps "$1" | awk '$4 == "running" && /running \(healthy\)/' | wc -l)" -eq "$2" ]
}

state_is() {
	[[ "$(shoal services -o json | jq -r --arg s "$1" '.[] | select(.name == $s) | .update_state')" == "$2"* ]]
}

sched_metric_is() {
	[ "$(metric "$(get "http://$SCHED_HTTP/metrics")" "$1")" = "$2" ]
}

# prom_up_is N: Prometheus reports N scrape targets up (value 1).
prom_up_is() {
	[ "$(get "http://$PROM_ADDR/api/v1/query?query=up" | jq '[.data.result[] | select(.value[1] == "1")] | length')" = "$1" ]
}

# prom_ready_nodes_is N: the scheduler's shoal_nodes{status="ready"} as Prometheus stored it.
prom_ready_nodes_is() {
	[ "$(get "http://$PROM_ADDR/api/v1/query?query=shoal_nodes%7Bstatus%3D%22ready%22%7D" | jq -r '.data.result[0].value[1]')" = "$1" ]
}

# status_is CODE URL [CURL ARGS...]
status_is() {
	local code=$1
	shift
	[ "$(status "$@")" = "$code" ]
}

ready_nodes_is() {
	[ "$(shoal nodes | grep -c ready)" -eq "$1" ]
}

setup_file() {
	local i
	lab_fresh 3
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/sched" >"$BATS_FILE_TMPDIR/init.out"
	# The default --http: 127.0.0.1:7180 in the scheduler's namespace.
	start_sched
	# Each agent's /metrics on its node's address, where Prometheus reaches it.
	for i in 1 2 3; do
		AGENT_ARGS="--http $(lab addr "node$i"):7181" start_agent "$i"
	done
}

teardown() {
	lab kill prom KILL 2>/dev/null || true
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

@test "the scheduler's /metrics passes promtool and counts nodes, services, tasks and reconcile passes" {
	wait_until 20 sched_metric_is 'shoal_nodes{status="ready"}' 3
	shoal apply -f "$M/obsweb.yaml"
	wait_until 60 healthy_is obsweb 3
	wait_until 10 sched_metric_is 'shoal_tasks{state="running"}' 3
	out=$(get "http://$SCHED_HTTP/metrics")
	run promtool check metrics <<<"$out"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(metric "$out" 'shoal_services')" = 1 ]
	[ "$(metric "$out" 'shoal_service_replicas_running{service="obsweb"}')" = 3 ]
	[ "$(metric "$out" 'shoal_nodes{status="down"}')" = 0 ]
	# Reconcile passes ran and were timed: the +Inf bucket equals the count.
	inf=$(metric "$out" 'shoal_reconcile_pass_duration_seconds_bucket{le="+Inf"}')
	[ "$inf" -gt 0 ]
	[ "$(metric "$out" 'shoal_reconcile_pass_duration_seconds_count')" = "$inf" ]
	[ "$(metric "$out" 'shoal_rpc_frames_received_total')" -gt 0 ]
	# Heartbeat lag of every node: a few seconds at most with a 1 s interval.
	for i in 1 2 3; do
		age=$(metric "$out" "shoal_node_heartbeat_age_seconds{node=\"node$i\"}")
		awk -v a="$age" 'BEGIN { exit !(a >= 0 && a < 5) }'
	done
	# The content type Prometheus asks for.
	lab exec sched curl -sS -D - -o /dev/null "http://$SCHED_HTTP/metrics" |
		grep -qi '^Content-Type: text/plain; version=0.0.4'
}

@test "each agent's /metrics passes promtool and shows container starts, health checks and per-backend proxy traffic" {
	wait_until 60 healthy_is obsweb 3
	addr=$(lab addr node1)
	# Traffic through node1's proxy, spread over the three replicas.
	for _ in 1 2 3 4 5 6; do
		lab exec sched timeout 3 busybox wget -qO- "http://$addr:9181/" >/dev/null
	done
	for i in 1 2 3; do
		out=$(get "http://$(lab addr "node$i"):7181/metrics")
		run promtool check metrics <<<"$out"
		echo "node$i: $output"
		[ "$status" -eq 0 ]
		# One replica per node (3 replicas, 3 nodes): started and health-checked.
		[ "$(metric "$out" 'shoal_agent_container_starts_total{result="started"}')" -ge 1 ]
		[ "$(metric "$out" 'shoal_agent_container_start_duration_seconds_count')" -ge 1 ]
		[ "$(metric "$out" 'shoal_agent_health_checks_total{kind="http",result="success"}')" -ge 1 ]
		[ "$(metric "$out" 'shoal_agent_tasks{state="running"}')" -ge 1 ]
		[ "$(metric "$out" 'shoal_agent_scheduler_connected')" = 1 ]
	done
	wait_until 10 metric_at_least "http://$addr:7181/metrics" 'shoal_proxy_connections_total{service="obsweb"}' 6
	out=$(get "http://$addr:7181/metrics")
	[ "$(metric "$out" 'shoal_proxy_backends{service="obsweb"}')" = 3 ]
	[ "$(metric "$out" 'shoal_proxy_benched_backends{service="obsweb"}')" = 0 ]
	# Round-robin: each of the 3 backends got 2 of the 6 connections, and bytes both ways.
	conns=$(grep '^shoal_proxy_backend_connections_total{service="obsweb"' <<<"$out" | awk '{ print $2 }' | sort -u)
	[ "$conns" = 2 ]
	[ "$(grep -c '^shoal_proxy_backend_bytes_total{service="obsweb",.*direction="out"} [1-9]' <<<"$out")" -eq 3 ]
	[ "$(metric "$out" 'shoal_proxy_bytes_total{service="obsweb",direction="in"}')" -gt 0 ]
}

@test "a real Prometheus scrapes the scheduler and the three agents: up is 1 for each" {
	cfg="$BATS_TEST_TMPDIR/prometheus.yml"
	cat >"$cfg" <<-CFG
		global:
		  scrape_interval: 1s
		  scrape_timeout: 1s
		scrape_configs:
		  - job_name: shoal-scheduler
		    static_configs: [{targets: ["$SCHED_HTTP"]}]
		  - job_name: shoal-agent
		    static_configs:
		      - targets: ["$(lab addr node1):7181", "$(lab addr node2):7181", "$(lab addr node3):7181"]
	CFG
	promtool check config "$cfg"
	lab spawn prom sched prometheus --config.file="$cfg" \
		--storage.tsdb.path="$BATS_TEST_TMPDIR/tsdb" --web.listen-address="$PROM_ADDR" \
		--log.level=warn >/dev/null
	wait_until 60 prom_up_is 4
	run get "http://$PROM_ADDR/api/v1/query?query=up"
	echo "$output" | jq -c '.data.result[] | [.metric.job, .metric.instance, .value[1]]'
	[ "$(jq -r '.data.result[] | select(.metric.job == "shoal-agent") | .value[1]' <<<"$output" | sort -u)" = 1 ]
	# And what it stored is the scheduler's own count.
	wait_until 20 prom_ready_nodes_is 3
}

@test "the status page in headless Chromium shows the nodes, services, tasks and the rollout as it runs" {
	wait_until 60 healthy_is obsweb 3
	mkdir -p "$ARTIFACTS"
	sed 's#shoal/web:1#shoal/web:2#' "$M/obsweb.yaml" >"$BATS_TEST_TMPDIR/obsweb-v2.yaml"
	shoal apply -f "$BATS_TEST_TMPDIR/obsweb-v2.yaml"
	wait_until 10 state_is obsweb updating
	# Some traffic, for the page's per-backend table.
	for _ in 1 2 3 4 5 6; do
		lab exec sched timeout 3 busybox wget -qO- "http://$(lab addr node2):9181/" >/dev/null
	done
	# The page's JSON, as its script reads it.
	get "http://$SCHED_HTTP/api/state" | jq -e '.services[] | select(.name == "obsweb") | .update.state == "updating"'
	# shellcheck disable=SC2054 # --window-size takes "W,H"
	chrome=(chromium --headless --no-sandbox --disable-gpu --no-first-run
		--disable-background-networking --disable-component-update --disable-sync
		--disable-default-apps --disable-extensions --user-data-dir="$BATS_TEST_TMPDIR/chrome"
		--window-size=1280,900 --virtual-time-budget=3000)
	dom=$(lab exec sched timeout 60 "${chrome[@]}" --dump-dom "http://$SCHED_HTTP/" 2>"$BATS_TEST_TMPDIR/chrome.err")
	echo "$dom" >"$ARTIFACTS/status-page.html"
	# Live: the script fetched and drew the state (not the static skeleton).
	[[ $dom == *'id="live" class="up"'* ]]
	for i in 1 2 3; do [[ $dom == *">node$i<"* ]]; done
	[[ $dom == *">obsweb<"* ]]
	[[ $dom == *"shoal/web:2"* ]]
	[[ $dom == *">updating<"* ]] || [[ $dom == *"updating "* ]]
	[[ $dom == *">obsweb.1."* ]]
	[[ $dom == *">running<"* ]]
	[[ $dom == *">healthy<"* ]]
	# The event stream: the rollout's start, from the scheduler's own events.
	[[ $dom == *"update started obsweb"* ]]
	lab exec sched timeout 60 "${chrome[@]}" --screenshot="$ARTIFACTS/status-page.png" \
		"http://$SCHED_HTTP/" 2>>"$BATS_TEST_TMPDIR/chrome.err"
	[ -s "$ARTIFACTS/status-page.png" ]
	echo "# status page screenshot: $ARTIFACTS/status-page.png" >&3
	# Still the rollout (30 s between slots): the screenshot shows it under way.
	state_is obsweb updating
}

@test "bound to loopback, the HTTP port answers only a Host that names loopback (no DNS rebinding)" {
	[ "$(status "http://$SCHED_HTTP/api/state")" = 200 ]
	[ "$(status "http://$SCHED_HTTP/api/state" -H 'Host: attacker.example')" = 403 ]
	[ "$(status "http://$SCHED_HTTP/" -H 'Host: localhost:7180')" = 200 ]
	# Read-only: nothing but GET and HEAD.
	[ "$(status "http://$SCHED_HTTP/api/state" -X POST)" != 200 ]
	[ "$(status "http://$SCHED_HTTP/nosuch")" = 404 ]
}

@test "on the lab address every request needs the admin or the read token (401 otherwise)" {
	addr=$(lab addr sched):7180
	lab kill sched
	lab spawn sched sched "$SHOAL_BIN/shoal-scheduler" run --data-dir "$DATA/sched" \
		--listen "$SCHED" --heartbeat-interval 1s --http "$addr"
	admin=$(cat "$DATA/sched/admin.token")
	read=$(cat "$DATA/sched/read.token")
	worker=$(cat "$DATA/sched/worker.token")
	[[ $read == SHOAL1-read-* ]]
	grep -q "Read-only token" "$BATS_FILE_TMPDIR/init.out"
	wait_until 10 status_is 401 "http://$addr/metrics"
	for p in / /metrics /api/state /api/events; do
		[ "$(status "http://$addr$p")" = 401 ]
		[ "$(status "http://$addr$p" -H "Authorization: Bearer $worker")" = 401 ]
		[ "$(status "http://$addr$p" -H "Authorization: Bearer $read")" = 200 ]
		[ "$(status "http://$addr$p" -H "Authorization: Bearer $admin")" = 200 ]
	done
	# A token that differs in its last digit; a browser's Basic login with the token as password.
	bad="${read%?}$([ "${read: -1}" = 0 ] && echo 1 || echo 0)"
	[ "$(status "http://$addr/metrics" -H "Authorization: Bearer $bad")" = 401 ]
	[ "$(status "http://$addr/metrics" -u "me:$read")" = 200 ]
	lab exec sched curl -s -D - -o /dev/null "http://$addr/" | grep -qi '^WWW-Authenticate: Bearer'
	# The read token opens no RPC session: the CLI with it is refused.
	echo "$read" >"$BATS_TEST_TMPDIR/read.token"
	run lab exec sched "$SHOAL_BIN/shoal" --scheduler "$SCHED" --token-file "$BATS_TEST_TMPDIR/read.token" nodes
	[ "$status" -ne 0 ]
	# The scheduler serves on: the agents are still there.
	wait_until 30 ready_nodes_is 3
	# Prometheus with the read token as its credentials file scrapes it there.
	cfg="$BATS_TEST_TMPDIR/prometheus.yml"
	cat >"$cfg" <<-CFG
		global: {scrape_interval: 1s, scrape_timeout: 1s}
		scrape_configs:
		  - job_name: shoal-scheduler
		    authorization: {credentials_file: "$DATA/sched/read.token"}
		    static_configs: [{targets: ["$addr"]}]
	CFG
	lab spawn prom sched prometheus --config.file="$cfg" \
		--storage.tsdb.path="$BATS_TEST_TMPDIR/tsdb" --web.listen-address="$PROM_ADDR" \
		--log.level=warn >/dev/null
	wait_until 60 prom_up_is 1
	wait_until 20 prom_ready_nodes_is 3
}
