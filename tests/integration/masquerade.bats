#!/usr/bin/env bats
# `shoal-agent --masquerade` on the namespace lab: containers' traffic to an address outside
# the cluster leaves with its node's address (the scheduler's host, outside 10.244.0.0/16,
# has no route back to the containers and answers only because of it), traffic between
# containers on different nodes keeps its container address, and `shoal-agent cleanup`
# removes the rules. Clients and servers are the lab's own namespaces.

load helpers

BATS_TEST_TIMEOUT=90

setup_file() {
	command -v iptables >/dev/null || {
		echo "masquerade.bats: needs iptables (bash vagrant/provision/deps.sh)" >&2
		return 1
	}
	export AGENT_ARGS="--masquerade"
	cluster_setup 2
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# seen_from LOG ADDR: busybox httpd -v logged a request from ADDR.
seen_from() {
	grep -q "^$2:[0-9]*: response:" "$1"
}

@test "a container's request to a host outside the cluster leaves with its node's address" {
	local sched www="$BATS_TEST_TMPDIR/www"
	sched=$(lab addr sched)
	mkdir -p "$www"
	echo outside >"$www/index.html"
	chmod -R a+rX "$BATS_TEST_TMPDIR"
	lab spawn outside sched busybox httpd -f -v -p "$sched:9999" -h "$www"
	cat >"$BATS_TEST_TMPDIR/out.yaml" <<EOM
service: out
image: shoal/web:1
replicas: 2
command: ["sh", "-c", "while true; do wget -q -O /dev/null http://$sched:9999/ && echo fetched; sleep 0.3; done"]
placement: {max_per_node: 1}
stop_grace: 1s
EOM
	shoal apply -f "$BATS_TEST_TMPDIR/out.yaml"
	wait_until 30 seen_from "$LAB_RUN/outside.log" "$(lab addr node1)"
	wait_until 10 seen_from "$LAB_RUN/outside.log" "$(lab addr node2)"
	[ -z "$(grep '^10\.244\.' "$LAB_RUN/outside.log")" ]
	shoal logs out | grep -q fetched
	# The rule is the agent's: its chain, jumped to for the node's /24 only.
	run ip netns exec "shoal-${LAB_ID:+$LAB_ID-}node1" iptables -t nat -S POSTROUTING
	echo "$output"
	[[ $output == *"-s $(shoal nodes -o json | jq -r '.[] | select(.name == "node1") | .subnet')"*"shoal masquerade"* ]]
}

# logs_have SERVICE TEXT
logs_have() {
	shoal logs "$1" | grep -qF "$2"
}

no_tasks() {
	[ -z "$(ips "$1")" ]
}

# masq_packets NODE TARGET: packets counted by the agent's chain's rules for TARGET
# (MASQUERADE, or RETURN: the cluster's subnets, left alone). NAT rules see a connection's
# first packet only.
masq_packets() {
	ip netns exec "shoal-${LAB_ID:+$LAB_ID-}$1" iptables -t nat -L SHOAL-MASQ -v -n -x |
		awk -v t="$2" '$3 == t { n += $1; seen = 1 } END { if (seen) print n }'
}

@test "traffic between containers on different nodes is not masqueraded" {
	local ip2 m0 r0
	shoal rm out
	wait_until 20 no_tasks out
	# Its containers may still fetch for their stop grace (1 s) after the tasks are gone.
	sleep 2
	cat >"$BATS_TEST_TMPDIR/in.yaml" <<EOM
service: in
image: shoal/web:1
replicas: 1
command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
placement: {constraints: [node.name == node2]}
stop_grace: 1s
EOM
	shoal apply -f "$BATS_TEST_TMPDIR/in.yaml"
	wait_until 30 running_is in 1
	ip2=$(ips in | awk '$1 == "node2" {print $2}')
	[[ $ip2 == 10.244.* ]]
	m0=$(masq_packets node1 MASQUERADE)
	r0=$(masq_packets node1 RETURN)
	[ -n "$m0" ] && [ -n "$r0" ]
	cat >"$BATS_TEST_TMPDIR/cross.yaml" <<EOM
service: cross
image: shoal/web:1
replicas: 1
command: ["sh", "-c", "while true; do wget -q -O /dev/null http://$ip2:8080/ && echo reached; sleep 0.3; done"]
placement: {constraints: [node.name == node1]}
stop_grace: 1s
EOM
	shoal apply -f "$BATS_TEST_TMPDIR/cross.yaml"
	wait_until 30 logs_have cross reached
	# node1's chain let the new connections to node2's container through as they were and
	# masqueraded none.
	[ "$(masq_packets node1 RETURN)" -gt "$r0" ]
	[ "$(masq_packets node1 MASQUERADE)" -eq "$m0" ]
}

@test "shoal-agent cleanup removes the masquerade rules" {
	local n
	for n in 1 2; do lab kill "agent$n" TERM; done
	for n in 1 2; do
		run lab exec "node$n" "$SHOAL_BIN/shoal-agent" cleanup --data-dir "$DATA/node$n"
		echo "$output"
		[ "$status" -eq 0 ]
		run ip netns exec "shoal-${LAB_ID:+$LAB_ID-}node$n" iptables -t nat -S
		echo "$output"
		[[ $output != *SHOAL-MASQ* ]]
	done
}
