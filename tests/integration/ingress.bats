#!/usr/bin/env bats
# Issue 15: the node's front door.
#   - the ingress proxy outlives its agent: kill -9 of node2's agent under load refuses no
#     connection; a scale made while it is down reaches node2's proxy once it is back
#   - a restarted agent of another binary hands the listeners over to a new ingress
#   - an ingress killed is started again by its agent, which pushes its last table
#   - a published port squatted by a host process is reported (services, ps, inspect), then
#     bound once the squatter is gone, with no other action
# Tests run in order on one cluster of 2 nodes.

load helpers

BATS_TEST_TIMEOUT=120
TOOLS="$SHOAL_BIN/tests/tools"

setup_file() {
	cluster_setup 2
	cat >"$BATS_FILE_TMPDIR/web.yaml" <<-'EOF'
		service: web
		image: shoal/web:1
		replicas: 2
		command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
		ports: [{published: 8080, target: 8080}]
		health: {http: /healthz, port: 8080, interval: 1s, timeout: 2s, retries: 3}
		placement: {max_per_node: 1}
		stop_grace: 1s
	EOF
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# ingress_pid NODE: the pid of NODE's ingress process.
ingress_pid() {
	read -r pid _ <"$DATA/$1/ingress.pid" && echo "$pid"
}

# serves NODE PORT: a request through NODE's address and published PORT gets a page.
serves() {
	lab exec node1 timeout 3 busybox wget -qO- "http://$(lab addr "$1"):$2/" >/dev/null
}

agent_registered() {
	shoal nodes | grep -q "^$1 .*ready"
}

gone() {
	! kill -0 "$1" 2>/dev/null
}

services_say() {
	shoal services | grep -qF "$1"
}

services_quiet() {
	! shoal services | grep -qF "$1"
}

@test "the ingress outlives a kill -9 of its agent: zero refused connections" {
	shoal apply -f "$BATS_FILE_TMPDIR/web.yaml"
	wait_until 60 running_is web 2
	wait_until 30 serves node2 8080
	pid=$(ingress_pid node2)
	# The proxy is a process of its own, in a session of its own (not the agent's).
	[ "$pid" != "$(lab pid agent2)" ]
	[ "$(ps -o sid= -p "$pid")" != "$(ps -o sid= -p "$(lab pid agent2)")" ]

	# 4 clients, each a new connection after another, for 12 s across the kill and restart.
	lab exec node1 "$TOOLS/overload_client" "$(lab addr node2)" 8080 4 12 5 \
		>"$BATS_TEST_TMPDIR/load.out" &
	load=$!
	sleep 2
	lab kill agent2 KILL
	# Down, and a scale while it is: node2's proxy must still serve.
	shoal scale web=1
	wait_until 30 running_is web 1
	serves node2 8080
	start_agent 2
	wait $load
	echo "# agent killed: $(cat "$BATS_TEST_TMPDIR/load.out")" >&3
	grep -Eq '^responses=[1-9][0-9]* closed=0 timeouts=0 ' "$BATS_TEST_TMPDIR/load.out"
	# The same process, re-adopted.
	[ "$(ingress_pid node2)" = "$pid" ]
	grep -q "ingress: adopted pid $pid" "$LAB_RUN/agent2.log"
	# The scale made while the agent was away is in node2's proxy once the agent is back
	# (its log was started afresh with the agent: a table applied since).
	wait_until 30 agent_registered node2
	wait_until 30 grep -q "ingress: table generation [0-9]*: 1 service, 1 backend$" \
		"$LAB_RUN/agent2.log"
}

@test "a restarted agent of another binary hands the listeners over without a refusal" {
	shoal scale web=2
	wait_until 60 running_is web 2
	old=$(ingress_pid node2)
	# Another binary: a copy of the agent (its identity is size, mtime and inode), with the
	# shim it starts containers with beside it.
	mkdir -p "$BATS_FILE_TMPDIR/new"
	cp "$SHOAL_BIN/shoal-agent" "$SHOAL_BIN/shoal-shim" "$BATS_FILE_TMPDIR/new/"
	lab exec node1 "$TOOLS/overload_client" "$(lab addr node2)" 8080 4 8 5 \
		>"$BATS_TEST_TMPDIR/load.out" &
	load=$!
	sleep 1
	lab kill agent2 TERM
	lab spawn agent2 node2 "$BATS_FILE_TMPDIR/new/shoal-agent" --scheduler "$SCHED" \
		--token-file "$DATA/sched/worker.token" --name node2 \
		--address "$(lab addr node2)" --label "zone=$(lab zone node2)" \
		--data-dir "$DATA/node2" --image-dir "$IMAGES"
	wait $load
	echo "# agent upgraded: $(cat "$BATS_TEST_TMPDIR/load.out")" >&3
	grep -Eq '^responses=[1-9][0-9]* closed=0 timeouts=0 ' "$BATS_TEST_TMPDIR/load.out"
	new=$(ingress_pid node2)
	[ "$new" != "$old" ]
	grep -q "took over 1 listener" "$LAB_RUN/agent2.log"
	# The old one drained and left.
	wait_until 30 gone "$old"
	serves node2 8080
}

@test "an ingress killed is started again by its agent, with the agent's last table" {
	old=$(ingress_pid node1)
	kill -KILL "$old"
	wait_until 15 serves node1 8080
	[ "$(ingress_pid node1)" != "$old" ]
	grep -q "ingress: connection to pid $old lost" "$LAB_RUN/agent1.log"
}

@test "a squatted published port is reported, then bound once free with no other action" {
	# A host process holds node1's port 9300 before the service exists.
	lab spawn squat node1 busybox nc -l -p 9300
	wait_until 10 lab exec node1 sh -c "ss -Hltn 'sport = :9300' | grep -q LISTEN"
	sed -e 's/^service: web/service: sq/' -e 's/published: 8080/published: 9300/' \
		"$BATS_FILE_TMPDIR/web.yaml" >"$BATS_FILE_TMPDIR/sq.yaml"
	shoal apply -f "$BATS_FILE_TMPDIR/sq.yaml"
	wait_until 60 running_is sq 2
	msg="port 9300 busy on node1: Address already in use"
	wait_until 30 services_say "$msg"
	shoal ps sq | grep -qF "$msg"
	shoal inspect sq | grep -qF "$msg"
	# node2 has it (once a replica is healthy, in every proxy); node1's squatter still owns
	# node1's.
	wait_until 30 serves node2 9300
	# Another service asking for the same port: refused at the line and column it is
	# written on, before the scheduler sees it.
	sed -e 's/^service: sq/service: sq2/' "$BATS_FILE_TMPDIR/sq.yaml" >"$BATS_FILE_TMPDIR/sq2.yaml"
	run shoal apply -f "$BATS_FILE_TMPDIR/sq2.yaml"
	echo "$output"
	[ "$status" -eq 1 ]
	line=$(grep -n 'published: 9300' "$BATS_FILE_TMPDIR/sq2.yaml" | cut -d: -f1)
	[[ $output == *"sq2.yaml:$line:"*": ports[0]: port 9300 is already published by service sq (in the cluster)"* ]]
	lab kill squat
	wait_until 15 serves node1 9300
	wait_until 15 services_quiet "busy on"
	grep -q "service sq listening on $(lab addr node1):9300" "$LAB_RUN/agent1.log"
}
