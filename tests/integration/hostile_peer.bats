#!/usr/bin/env bats
# Issue 12 on the namespace lab: a peer holding the worker token (tests/tools/shoal-peer, a
# raw protocol client over common/rpc) plays an attacker against a real scheduler and three
# real agents. Each test says what the attacker tried and what must hold afterwards.
# Tests run in file order and share one cluster; teardown_file removes it.

load helpers

BATS_TEST_TIMEOUT=90

PEER_PORT=8090

setup_file() {
	cluster_setup 3
	export PEER="$SHOAL_BIN/tests/tools/shoal-peer"
	export W="$DATA/sched/worker.token" A="$DATA/sched/admin.token"
	# A page nobody should ever get through a published port: served on node1's loopback,
	# where a proxy that took a 127.0.0.1 backend would find it.
	mkdir -p "$BATS_FILE_TMPDIR/pwn"
	echo PWNED >"$BATS_FILE_TMPDIR/pwn/index.html"
	lab spawn pwn node1 busybox httpd -f -p "127.0.0.1:$PEER_PORT" -h "$BATS_FILE_TMPDIR/pwn"
}

teardown() {
	local p
	for p in peer-ok peer-lo peer-x peer-ks peer-nk; do
		lab pid "$p" >/dev/null 2>&1 && lab kill "$p"
	done
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

peer() {
	lab exec sched "$PEER" --token "$1" --addr "$SCHED" "${@:2}"
}

# apply_pinned SERVICE NODE PORT: one replica of the demo web image, only on NODE, published
# on PORT.
apply_pinned() {
	cat >"$BATS_TEST_TMPDIR/$1.yaml" <<EOF
service: $1
image: shoal/web:1
replicas: 1
command: ["httpd", "-f", "-p", "$3", "-h", "/www"]
ports: [{published: $3, target: $3}]
placement: {constraints: [node.name == $2]}
EOF
	shoal apply -f "$BATS_TEST_TMPDIR/$1.yaml"
}

# task_of SERVICE: "state ip" of its task ("-" for no ip).
task_of() {
	shoal ps "$1" -o json | jq -r '.[] | select(.desired == "running") | "\(.state) \(if .ip == "" then "-" else .ip end)"'
}

reported() {
	grep -q '^reported ' "$LAB_RUN/$1.log"
}

# spawn_peer NAME NODE IP: a fake node NODE that reports every task it is given at IP.
spawn_peer() {
	lab spawn "$1" sched "$PEER" --token "$W" --addr "$SCHED" --timeout 5000 report-task \
		--name "$2" --address "$(lab addr sched)" --ip "$3" --hold 60
}

# spawn_peer_keeping NAME NODE: the same, registering as an agent that keeps specs
# (Register.keeps_specs), with one node key across its runs.
spawn_peer_keeping() {
	lab spawn "$1" sched "$PEER" --token "$W" --addr "$SCHED" --timeout 5000 \
		--key "$BATS_FILE_TMPDIR/$2.key" report-task --name "$2" --address "$(lab addr sched)" \
		--ip own:5 --hold 60 --keeps-specs
}

@test "the lab: node1's loopback listener answers there, and only there" {
	wait_until 5 lab exec node1 timeout 3 busybox wget -qO- "http://127.0.0.1:$PEER_PORT/"
	[ "$(lab exec node1 timeout 3 busybox wget -qO- "http://127.0.0.1:$PEER_PORT/")" = PWNED ]
}

@test "control: a fake node reporting an address of its own /24 is believed" {
	# Shows the peer's reports reach the scheduler: the refusals below are not an accident.
	spawn_peer peer-ok evil-ok own:5
	wait_until 10 grep -q '^reply register_reply' "$LAB_RUN/peer-ok.log"
	subnet=$(sed -n 's/^reply register_reply .* subnet=\([0-9.]*\)\.0\/24 .*/\1/p' "$LAB_RUN/peer-ok.log")
	apply_pinned web-ok evil-ok 8091
	wait_until 10 reported peer-ok
	wait_until 5 [ "$(task_of web-ok)" = "running $subnet.5" ]
	shoal rm web-ok
}

@test "a worker reports its task at 127.0.0.1: refused, one log line, no proxy routes there" {
	# The attacker: registers node evil-lo, is given a task of a published service, reports
	# it running at 127.0.0.1, so that every node's proxy would dial its own loopback.
	spawn_peer peer-lo evil-lo 127.0.0.1
	wait_until 10 grep -q '^reply register_reply' "$LAB_RUN/peer-lo.log"
	apply_pinned web-lo evil-lo "$PEER_PORT"
	wait_until 10 reported peer-lo
	grep -q "^reported .* ip=127.0.0.1" "$LAB_RUN/peer-lo.log"
	# Time for an Endpoints round to every agent (they go out within a second).
	sleep 2
	# node1's published port never reaches node1's loopback listener.
	for i in 1 2 3 4 5; do
		out=$(lab exec sched timeout 3 busybox wget -qO- "http://$(lab addr node1):$PEER_PORT/" 2>&1 || true)
		echo "request $i: $out"
		[[ $out != *PWNED* ]]
	done
	# The task never ran, as far as the cluster knows, and has no address.
	[[ $(task_of web-lo) != running* ]]
	[[ $(task_of web-lo) == *" -" ]]
	# One line says why.
	[ "$(grep -c 'node evil-lo: refused the status of task web-lo.*container_ip 127.0.0.1 is a loopback address' "$LAB_RUN/sched.log")" -eq 1 ]
	# The real agents and the CLI are served as before.
	[ "$(shoal nodes | awk '$1 ~ /^node/ && $3 == "ready"' | wc -l)" -eq 3 ]
	shoal rm web-lo
}

@test "a worker reports its task at another node's container address: refused" {
	subnet1=$(shoal nodes -o json | jq -r '.[] | select(.name == "node1") | .subnet' | sed 's/\.0\/24$//')
	[[ $subnet1 == 10.244.* ]]
	spawn_peer peer-x evil-x "$subnet1.7"
	wait_until 10 grep -q '^reply register_reply' "$LAB_RUN/peer-x.log"
	apply_pinned web-x evil-x 8092
	wait_until 10 reported peer-x
	wait_until 5 grep -q "node evil-x: refused the status of task web-x.*container_ip $subnet1.7 is outside node evil-x's containers" "$LAB_RUN/sched.log"
	sleep 1
	[ "$(grep -c 'node evil-x: refused the status' "$LAB_RUN/sched.log")" -eq 1 ]
	[[ $(task_of web-x) != running* ]]
	[[ $(task_of web-x) == *" -" ]]
	shoal rm web-x
}

@test "a node that keeps specs is sent each spec once a session; one that does not, in every Assignments" {
	local k port=8093 log
	for k in ks nk; do
		if [ "$k" = ks ]; then
			spawn_peer_keeping peer-ks evil-ks
		else
			spawn_peer peer-nk evil-nk own:5
		fi
		log=$LAB_RUN/peer-$k.log
		wait_until 10 grep -q '^reply register_reply' "$log"
		apply_pinned "spec-$k" "evil-$k" "$port"
		wait_until 10 grep -q '^assignments gen=[0-9]* tasks=1 specs=1 json=1$' "$log"
		shoal scale -d "spec-$k=2"
		wait_until 10 grep -q '^assignments gen=[0-9]* tasks=2 specs=1 ' "$log"
		port=$((port + 1))
	done
	# The second frame: the version without its spec for the node that holds a task of it.
	grep '^assignments gen=[0-9]* tasks=2 specs=1 json=0$' "$LAB_RUN/peer-ks.log"
	! grep -q '^assignments gen=[0-9]* tasks=2 specs=1 json=0$' "$LAB_RUN/peer-nk.log"
	# A new session (the node registers again) is sent the spec again.
	lab kill peer-ks
	spawn_peer_keeping peer-ks evil-ks
	wait_until 10 grep -q '^assignments gen=[0-9]* tasks=2 specs=1 json=1$' "$LAB_RUN/peer-ks.log"
	shoal rm spec-ks spec-nk
}

@test "a Register with 500,000 labels is refused at once; shoal nodes keeps its latency" {
	# The attacker: one Register of 4 MB, half a million labels (it stalled the loop for
	# seconds, and once stored made every ListNodes reply too big to send).
	peer "$W" --timeout 20000 register --name biglabels --labels 500000 >"$BATS_TEST_TMPDIR/big" 2>&1 &
	pid=$!
	# Meanwhile the CLI's listing answers within its normal latency, every time (milliseconds;
	# the bound leaves room for a sanitizer build unpacking the 4 MB: the old join stalled
	# the loop for 7 s).
	for i in $(seq 10); do
		run peer "$A" --timeout 3000 list-nodes
		[ "$status" -eq 0 ]
		ms=$(sed -n 's/^reply list_nodes_reply ms=\([0-9]*\) .*/\1/p' <<<"$output")
		[ "$ms" -lt 2000 ]
		sleep 0.1
	done
	wait "$pid" && rc=0 || rc=$?
	cat "$BATS_TEST_TMPDIR/big" >&3
	[ "$rc" -eq 3 ]
	grep -q '^error code=22 .* message=register refused: 500000 labels: at most 64$' "$BATS_TEST_TMPDIR/big"
	ms=$(sed -n 's/^error code=22 ms=\([0-9]*\) .*/\1/p' "$BATS_TEST_TMPDIR/big")
	[ "$ms" -lt 5000 ]
	[ "$(grep -c 'register biglabels from .* refused: 500000 labels: at most 64' "$LAB_RUN/sched.log")" -eq 1 ]
	run shoal nodes
	[ "$status" -eq 0 ]
	[[ $output != *biglabels* ]]
	[[ $output == *node1* ]]
}

@test "labels past the caps: a clear refusal, from the scheduler and from the agent at start" {
	run peer "$W" register --name longlabel --label "zone=$(printf 'x%.0s' $(seq 64))"
	[ "$status" -eq 3 ]
	[[ $output == *"register refused: label zone: value longer than 63 bytes"* ]]
	run peer "$W" register --name commalabel --label "zone=a,b=c"
	[ "$status" -eq 3 ]
	[[ $output == *"no ',' or space"* ]]
	run lab exec node1 "$SHOAL_BIN/shoal-agent" --scheduler "$SCHED" --token-file "$W" --name x \
		--address 192.168.56.99 --data-dir "$BATS_TEST_TMPDIR/agent" --label "a b=c"
	[ "$status" -ne 0 ]
	[[ $output == *"--label: label key \"a b\": only letters, digits"* ]]
	run shoal nodes
	[ "$status" -eq 0 ]
	[[ $output != *longlabel* && $output != *commalabel* ]]
}

@test "shoal-peer signs its Registers: --key keeps a name, another key is refused" {
	# The scheduler binds a name to the first key it registers with; the peer's --key FILE
	# is that key across runs, a run without --key brings a fresh one.
	peer "$W" --key "$BATS_TEST_TMPDIR/peer.key" register --name keyed
	[ "$(stat -c %a "$BATS_TEST_TMPDIR/peer.key")" = 600 ]
	peer "$W" --key "$BATS_TEST_TMPDIR/peer.key" register --name keyed
	run peer "$W" register --name keyed
	[ "$status" -eq 3 ]
	[[ $output == *"code=13 "*"node name keyed is bound to another node key"* ]]
	grep -q 'register keyed from .* refused: the name is bound to key' "$LAB_RUN/sched.log"
	shoal node rm --force keyed
}
