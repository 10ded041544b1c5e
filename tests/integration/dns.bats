#!/usr/bin/env bats
# Issue 15: the files Docker provides (/etc/hosts, /etc/hostname, /etc/resolv.conf) and service
# discovery by name: every agent's DNS server on its bridge address answers NAME and
# tasks.NAME from Endpoints, from inside the containers (busybox nslookup and wget of the demo
# image). Tests run in order on one cluster; teardown_file removes everything.

load helpers

BATS_TEST_TIMEOUT=120
M="$BATS_TEST_DIRNAME/manifests"

setup_file() {
	cluster_setup 3
	shoal apply -f "$M/dnsweb.yaml" -f "$M/dnsapi.yaml" >/dev/null
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	cluster_teardown_file
}

# task_on SERVICE NODE: the name of one of its running tasks on NODE.
task_on() {
	shoal ps "$1" | awk -v n="$2" 'NR > 1 && $4 == "running" && $5 == "running" && $3 == n {print $1; exit}'
}

# any_task SERVICE: "TASK NODE" of one of its running tasks.
any_task() {
	shoal ps "$1" | awk 'NR > 1 && $4 == "running" && $5 == "running" {print $1, $3; exit}'
}

# cx NODE TASK CMD...: run CMD in that task's container, bounded.
cx() {
	local n=$1 t=$2
	shift 2
	timeout 20 "$SHOAL_BIN/shoalrt" --root "$DATA/$n" exec "$t" "$@"
}

# lookup NODE TASK NAME: the addresses busybox nslookup prints for NAME inside the task, sorted.
lookup() {
	cx "$1" "$2" nslookup "$3" | awk '/^Name:/ {found = 1} found && /^Address/ {print $NF}' | sort
}

# healthy_ips SERVICE: the addresses of its running, healthy tasks, sorted.
healthy_ips() {
	shoal ps "$1" -o json | jq -r '.[] | select(.desired == "running" and .state == "running" and (.health == "" or .health == "healthy")) | .ip' | sort
}

tasks_match() {
	local want got
	want=$(healthy_ips web)
	got=$(lookup "$1" "$2" tasks.web)
	[ -n "$want" ] && [ "$got" = "$want" ] && [ "$(echo "$got" | wc -l)" -eq "$3" ]
}

healthy_is() {
	[ "$(healthy_ips "$1" | wc -l)" -eq "$2" ]
}

@test "a container gets /etc/hosts, /etc/hostname and /etc/resolv.conf" {
	wait_until 60 healthy_is web 3
	t=$(task_on web node1)
	[ -n "$t" ]
	ip=$(shoal ps web -o json | jq -r --arg t "$t" '.[] | select(.name == $t) | .ip')
	run cx node1 "$t" cat /etc/hosts
	[ "$status" -eq 0 ]
	[[ $output == *"127.0.0.1"*"localhost"* ]]
	[[ $output == *"::1"*"localhost ip6-localhost"* ]]
	[[ $output == *"$ip"*"$t"* ]]
	run cx node1 "$t" cat /etc/hostname
	[ "$output" = "$t" ]
	run cx node1 "$t" hostname
	[ "$output" = "$t" ]
	# The node's bridge address (the containers' gateway) is their resolver.
	run cx node1 "$t" cat /etc/resolv.conf
	[[ $output == *"nameserver ${ip%.*}.1"* ]]
	run cx node1 "$t" busybox ping -c1 -W2 localhost
	[ "$status" -eq 0 ]
	[[ $output == *"127.0.0.1"* ]]
	# The container's own name resolves to its address (from /etc/hosts).
	run cx node1 "$t" busybox ping -c1 -W2 "$t"
	[[ $output == *"$ip"* ]]
}

@test "NAME of a published service is the node's address; wget by name reaches it" {
	t=$(task_on web node2)
	run lookup node2 "$t" web
	[ "$output" = "$(lab addr node2)" ]
	run lookup node2 "$t" web.shoal
	[ "$output" = "$(lab addr node2)" ]
	run cx node2 "$t" timeout 5 wget -qO- http://web:8080/
	[ "$status" -eq 0 ]
	[[ $output == *"web v1 on web."* ]]
}

@test "tasks.NAME follows the replicas as they scale 3 -> 1 -> 3" {
	wait_until 60 healthy_is api 2
	read -r a n < <(any_task api)
	[ -n "$a" ]
	wait_until 20 tasks_match "$n" "$a" 3
	shoal scale web=1
	wait_until 60 tasks_match "$n" "$a" 1
	shoal scale web=3
	wait_until 60 tasks_match "$n" "$a" 3
}

@test "an unhealthy replica leaves tasks.NAME" {
	wait_until 60 healthy_is web 3
	t=$(task_on web node3)
	ip=$(shoal ps web -o json | jq -r --arg t "$t" '.[] | select(.name == $t) | .ip')
	read -r a n < <(any_task api)
	lookup "$n" "$a" tasks.web | grep -qx "$ip"
	# Its health check now gets a 404.
	cx node3 "$t" rm /www/healthz
	not_listed() { ! lookup "$n" "$a" tasks.web | grep -qx "$ip"; }
	wait_until 30 not_listed
}

@test "a service without a published port has a virtual IP its callers reach by name" {
	wait_until 60 healthy_is web 3
	wait_until 60 healthy_is api 2
	t=$(task_on web node1)
	run lookup node1 "$t" api
	[[ $output =~ ^10\.(9[6-9]|10[0-9]|11[01])\.[0-9]+\.[0-9]+$ ]]
	vip=$output
	# The same address from another node.
	t2=$(task_on web node2)
	run lookup node2 "$t2" api
	[ "$output" = "$vip" ]
	# Its tasks, and a request through the VIP that lands on one of them.
	[ "$(lookup node1 "$t" tasks.api)" = "$(healthy_ips api)" ]
	run cx node1 "$t" timeout 5 wget -qO- http://api:8080/
	[ "$status" -eq 0 ]
	[[ $output == *"web v1 on api."* ]]
	# And a caller of the other service, from an api container.
	read -r a n < <(any_task api)
	run cx "$n" "$a" timeout 5 wget -qO- http://web:8080/
	[[ $output == *"web v1 on web."* ]]
}

@test "unknown names: NXDOMAIN inside the cluster domain, SERVFAIL at once without upstream" {
	t=$(task_on web node1)
	run cx node1 "$t" nslookup nosuch.shoal
	[ "$status" -ne 0 ]
	[[ $output == *"NXDOMAIN"* ]]
	run cx node1 "$t" nslookup tasks.nosuch
	[[ $output == *"NXDOMAIN"* ]]
	# The lab has no upstream resolver: an answer (SERVFAIL), not a hang.
	start=$SECONDS
	run cx node1 "$t" nslookup example.com
	[ "$status" -ne 0 ]
	[ $((SECONDS - start)) -lt 15 ]
}

@test "garbage sent to port 53 is dropped and the agent keeps answering" {
	t=$(task_on web node1)
	gw=$(cx node1 "$t" cat /etc/resolv.conf | awk '/^nameserver/ {print $2; exit}')
	pid=$(lab pid agent1)
	run lab exec node1 "$SHOAL_BIN/tests/tools/dnsjunk" "$gw" 53
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(lab pid agent1)" = "$pid" ]
	run lookup node1 "$t" web
	[ "$output" = "$(lab addr node1)" ]
}
