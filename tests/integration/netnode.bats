#!/usr/bin/env bats
# Node networking on the namespace lab: the runtime's bridge mode, then a cluster whose agents
# make bridge shoal0 with the first address of their node's /24, lease each bridge-network task
# an address of it (shown by `shoal ps`), route the other nodes' /24s, keep addresses across an
# agent restart, release them on removal, and leave nothing behind after `shoal-agent cleanup`.
# Tests run in order on one cluster; teardown_file removes every container, namespace and
# process.

load helpers

BATS_TEST_TIMEOUT=90





# ns NODE: the lab namespace of a node.
ns() {
	echo "shoal-${LAB_ID:+$LAB_ID-}$1"
}

no_service() {
	! shoal services | grep -q "^$1 "
}

node_ready() {
	shoal nodes | grep -q "^$1 .*ready"
}

# subnet NODE: the node's /24 as the scheduler assigned it.
subnet() {
	shoal nodes -o json | jq -r --arg n "$1" '.[] | select(.name == $n) | .subnet'
}

all_have_ips() {
	[ "$(ips "$1" | awk '$2 != ""' | wc -l)" -eq "$2" ]
}

# in_subnet IP CIDR(/24): same first three octets.
in_subnet() {
	[ "${1%.*}" = "${2%.*}" ]
}

# veths NODE: the host ends of container veths in the node's namespace.
veths() {
	ip -n "$(ns "$1")" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^vs' || true
}

# our_routes NODE: the routes the agent made (proto 84).
our_routes() {
	ip -n "$(ns "$1")" -4 route show proto 84
}

has_routes() {
	[ "$(our_routes node1 | wc -l)" -ge 2 ]
}

no_veths() {
	[ -z "$(veths "$1")" ]
}

leases() {
	jq '.leases | length' "$DATA/$1/ipam.json"
}

setup_file() {
	lab_fresh 3
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/sched" >/dev/null
	export M="$BATS_FILE_TMPDIR/webnet.yaml"
	cat >"$M" <<'EOF'
service: webnet
image: shoal/web:1
replicas: 3
command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
network: bridge
stop_grace: 1s
EOF
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	local n
	for n in node1 node2 node3; do
		lab kill "agent${n#node}" KILL 2>/dev/null || true
	done
	for n in rt node1 node2 node3; do
		[ -d "$DATA/$n" ] || continue
		for id in $(rt "$n" -o json ps -a 2>/dev/null | jq -r '.[].id'); do
			lab exec "${n/rt/node1}" "$SHOAL_BIN/shoalrt" --root "$DATA/$n" rm -f "$id" \
				>/dev/null 2>&1 || true
		done
	done
	timeout 60 bash "$LAB_BIN" down
}

@test "runtime: --network bridge plugs eth0 into a bridge; rm removes the veth" {
	local n1 br=nntest0
	n1=$(ns node1)
	ip -n "$n1" link add "$br" type bridge
	ip -n "$n1" addr add 10.99.0.1/24 dev "$br"
	ip -n "$n1" link set "$br" up
	"$SHOAL_BIN/shoalrt" --root "$DATA/rt" import "$IMAGES/web_1" >/dev/null
	run lab exec node1 "$SHOAL_BIN/shoalrt" --root "$DATA/rt" run --rm --network bridge \
		--ip 10.99.0.7/24 --gateway 10.99.0.1 --bridge "$br" shoal/web:1 \
		sh -c 'ip -4 addr show eth0; ip route; busybox ping -c 1 -W 2 10.99.0.1'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"inet 10.99.0.7/24"* ]]
	[[ $output == *"default via 10.99.0.1 dev eth0"* ]]
	[[ $output == *"1 packets received"* ]]
	# Detached: the node reaches it, inspect shows its address, rm leaves no veth.
	id=$(lab exec node1 "$SHOAL_BIN/shoalrt" --root "$DATA/rt" run -d --network bridge \
		--ip 10.99.0.8/24 --gateway 10.99.0.1 --bridge "$br" shoal/web:1 \
		httpd -f -p 8080 -h /www)
	[ "$(rt rt inspect "$id" | jq -r .ip)" = 10.99.0.8 ]
	wait_until 5 lab exec node1 timeout 2 busybox wget -qO- http://10.99.0.8:8080/
	[ -n "$(veths node1)" ]
	lab exec node1 "$SHOAL_BIN/shoalrt" --root "$DATA/rt" rm -f "$id"
	wait_until 2 no_veths node1
	# Bad input: one clear line each.
	run lab exec node1 "$SHOAL_BIN/shoalrt" --root "$DATA/rt" run --network bridge \
		--ip 10.99.0.9/24 --gateway 10.99.0.1 --bridge nosuch0 shoal/web:1 true
	[ "$status" -eq 125 ]
	[[ $output == *"bridge nosuch0 does not exist"* ]]
	run "$SHOAL_BIN/shoalrt" --root "$DATA/rt" run --network bridge --ip 10.99.0.255/24 \
		--gateway 10.99.0.1 --bridge "$br" shoal/web:1 true
	[ "$status" -eq 1 ]
	[[ $output == *"broadcast"* ]]
	ip -n "$n1" link del "$br"
}

@test "agents make shoal0 with the first address of their /24, forwarding on" {
	start_sched
	for i in 1 2 3; do start_agent "$i"; done
	for i in 1 2 3; do wait_until 10 node_ready "node$i"; done
	for i in 1 2 3; do
		s=$(subnet "node$i")
		[[ $s == 10.244.*.0/24 ]]
		gw="${s%.0/24}.1/24"
		wait_until 5 lab exec "node$i" sh -c "ip -4 addr show dev shoal0 | grep -q 'inet $gw '"
		[ "$(lab exec "node$i" cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
	done
}

@test "a bridge service: every task has an address of its node's /24, shown by shoal ps" {
	run shoal apply -f "$M"
	[ "$status" -eq 0 ]
	wait_until 30 running_is webnet 3
	wait_until 10 all_have_ips webnet 3
	ips webnet >&3
	while read -r node ip; do
		in_subnet "$ip" "$(subnet "$node")"
		[ "${ip##*.}" -ge 2 ] && [ "${ip##*.}" -le 254 ]
		# The container has it on eth0, and state.json (inspect) records it.
		name=$(shoal ps webnet -o json | jq -r --arg ip "$ip" '.[] | select(.ip == $ip) | .name')
		[ "$(rt "$node" inspect "$name" | jq -r .ip)" = "$ip" ]
	done < <(ips webnet)
	run shoal ps webnet
	[[ $output == *"IP"* ]]
	[[ $output == *"10.244."* ]]
}

@test "the node reaches its own containers, and a container reaches another on its node" {
	while read -r node ip; do
		wait_until 5 lab exec "$node" timeout 2 busybox wget -qO- "http://$ip:8080/"
		run lab exec "$node" timeout 2 busybox wget -qO- "http://$ip:8080/"
		[[ $output == *"web v1 on webnet."* ]]
	done < <(ips webnet)
	# A second container on node1 (same bridge), via the runtime in the node's namespace.
	read -r _ ip1 < <(ips webnet | grep '^node1 ')
	s=$(subnet node1)
	id=$(lab exec node1 "$SHOAL_BIN/shoalrt" --root "$DATA/rt" run -d --network bridge \
		--ip "${s%.0/24}.250/24" --gateway "${s%.0/24}.1" --bridge shoal0 shoal/web:1 sleep 60)
	pid=$(rt rt inspect "$id" | jq -r .pid)
	run timeout 5 nsenter -t "$pid" -n busybox wget -qO- "http://$ip1:8080/"
	lab exec node1 "$SHOAL_BIN/shoalrt" --root "$DATA/rt" rm -f "$id" >/dev/null
	[[ $output == *"web v1 on webnet."* ]]
}

@test "cross-node: host-gateway routes to the other nodes' /24s; a container reaches another node's" {
	wait_until 5 has_routes
	our_routes node1 >&3
	for i in 2 3; do
		s=$(subnet "node$i")
		our_routes node1 | grep -q "^$s via $(lab addr "node$i") "
	done
	[ -z "$(our_routes node1 | grep "^$(subnet node1) ")" ]
	read -r _ ip1 < <(ips webnet | grep '^node1 ')
	read -r _ ip3 < <(ips webnet | grep '^node3 ')
	name1=$(shoal ps webnet -o json | jq -r --arg ip "$ip1" '.[] | select(.ip == $ip) | .name')
	pid=$(rt node1 inspect "$name1" | jq -r .pid)
	run timeout 5 nsenter -t "$pid" -n busybox wget -qO- "http://$ip3:8080/"
	[[ $output == *"web v1 on webnet."* ]]
	# And from node1's own namespace.
	run lab exec node1 timeout 2 busybox wget -qO- "http://$ip3:8080/"
	[[ $output == *"web v1 on webnet."* ]]
	# No NAT: a server in node3's container sees the node1 container's own address (the
	# host's busybox httpd -vv, in that container's network namespace, logs its peers).
	name3=$(shoal ps webnet -o json | jq -r --arg ip "$ip3" '.[] | select(.ip == $ip) | .name')
	pid3=$(rt node3 inspect "$name3" | jq -r .pid)
	mkdir -p "$BATS_TEST_TMPDIR/www"
	echo peer >"$BATS_TEST_TMPDIR/www/index.html"
	nsenter -t "$pid3" -n busybox httpd -f -vv -p 9001 -h "$BATS_TEST_TMPDIR/www" \
		2>"$BATS_TEST_TMPDIR/httpd.log" &
	hp=$!
	wait_until 3 timeout 2 nsenter -t "$pid" -n busybox wget -qO- "http://$ip3:9001/"
	kill "$hp"
	wait "$hp" || true
	cat "$BATS_TEST_TMPDIR/httpd.log"
	grep -q "\[::ffff:$ip1\]:" "$BATS_TEST_TMPDIR/httpd.log"
}

@test "kill -9 an agent and restart it: its task keeps its address, the lease survives" {
	before=$(ips webnet)
	lease_before=$(jq -S .leases "$DATA/node2/ipam.json")
	[ "$(leases node2)" -eq 1 ]
	lab kill agent2 KILL
	start_agent 2
	wait_until 10 node_ready node2
	sleep 2
	[ "$(ips webnet)" = "$before" ]
	[ "$(jq -S .leases "$DATA/node2/ipam.json")" = "$lease_before" ]
	grep -q 're-adopted' "$LAB_RUN/agent2.log"
}

@test "scale and rm release addresses; removed containers leave no veth" {
	shoal scale webnet=6
	wait_until 30 running_is webnet 6
	wait_until 10 all_have_ips webnet 6
	# No address is held twice.
	[ "$(ips webnet | awk '{print $2}' | sort | uniq -d)" = "" ]
	for n in node1 node2 node3; do [ "$(leases "$n")" -eq 2 ]; done
	shoal rm webnet
	wait_until 30 no_service webnet
	for n in node1 node2 node3; do
		wait_until 10 no_veths "$n"
		[ "$(leases "$n")" -eq 0 ]
	done
}

@test "shoal-agent cleanup removes shoal0, the agent's routes and veths, and nothing else" {
	shoal apply -f "$M"
	wait_until 30 running_is webnet 3
	# Something the agent did not make: a route of another protocol must survive.
	ip -n "$(ns node1)" route add 10.250.0.0/24 via "$(lab addr node2)" proto static
	# The scheduler first: with it up, a node whose agent stopped first could be declared
	# lost (a slow machine) before the next agent stops, and its replica move there.
	lab kill sched TERM
	for i in 1 2 3; do lab kill "agent$i" TERM; done
	for i in 1 2 3; do
		run lab exec "node$i" "$SHOAL_BIN/shoal-agent" cleanup --data-dir "$DATA/node$i"
		echo "$output"
		[ "$status" -eq 0 ]
		[[ $output == *"removed 1 container"* ]]
		[[ $output == *"container network"* ]]
	done
	for n in node1 node2 node3; do
		run ip -n "$(ns "$n")" link show shoal0
		[ "$status" -ne 0 ]
		no_veths "$n"
		[ -z "$(our_routes "$n")" ]
		[ ! -e "$DATA/$n/ipam.json" ]
		ip -n "$(ns "$n")" link show eth0 >/dev/null
	done
	ip -n "$(ns node1)" route show proto static | grep -q '^10.250.0.0/24'
	# Idempotent.
	run lab exec node1 "$SHOAL_BIN/shoal-agent" cleanup --data-dir "$DATA/node1"
	[ "$status" -eq 0 ]
}
