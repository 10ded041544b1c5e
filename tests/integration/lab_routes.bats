#!/usr/bin/env bats
# Two labs side by side never touch each other's blackhole routes: the second lab up adds
# its own route for the same prefixes (it does not adopt the first one's), and its down
# removes only its own, while the first lab is still up.
#
# Both labs' "root namespace" is a private network namespace made for this file, so the
# routes of any other lab on this machine (the default one, other LAB_IDs) are out of
# reach whatever the lab script does. The labs are LAB_ID and LAB_ID+"b" (lab ids a, ab
# without LAB_ID), each with one node.

load helpers

BATS_TEST_TIMEOUT=120
NET=192.168.56.0/24
CLUSTER=10.244.0.0/16

setup_file() {
	export RT="labrt-${LAB_ID:-a}"
	export L1="${LAB_ID:-a}"
	export L2="${L1:0:7}b"
	# Leftovers of an interrupted run of this file: only its own names.
	inlab "$L2" down >/dev/null 2>&1 || true
	inlab "$L1" down >/dev/null 2>&1 || true
	ip netns del "$RT" 2>/dev/null || true
	ip netns add "$RT"
}

teardown_file() {
	inlab "$L2" down >/dev/null 2>&1 || true
	inlab "$L1" down >/dev/null 2>&1 || true
	ip netns del "$RT" 2>/dev/null || true
}

teardown() {
	dump_logs_on_failure
}

# inlab ID ARGS...: the lab script for lab ID, its root namespace being $RT.
inlab() {
	local id=$1
	shift
	# nsenter, not `ip netns exec`: the namespaces the lab adds must be visible to everyone,
	# and `ip netns exec` gives its command a mount namespace of its own.
	nsenter --net="/run/netns/$RT" env LAB_ID="$id" LAB_RUN="/run/shoal-lab-$id" bash "$LAB_BIN" "$@"
}

# routes PREFIX: the blackhole routes for PREFIX in $RT, one line each.
routes() {
	ip -n "$RT" -4 route show exact "$1" type blackhole
}

@test "two labs: each adds its own routes; one's down leaves the other's" {
	inlab "$L1" up 1
	[ "$(routes "$NET" | wc -l)" -eq 1 ]
	[ "$(routes "$CLUSTER" | wc -l)" -eq 1 ]
	inlab "$L2" up 1
	# Its own route for each prefix, at another metric: two per prefix.
	[ "$(routes "$NET" | wc -l)" -eq 2 ]
	[ "$(routes "$CLUSTER" | wc -l)" -eq 2 ]
	r1=$(awk '{print $1, $2}' "/run/shoal-lab-$L1/.state/routes" | sort)
	r2=$(awk '{print $1, $2}' "/run/shoal-lab-$L2/.state/routes" | sort)
	[ "$(wc -l <<<"$r1")" -eq 2 ]
	[ "$(wc -l <<<"$r2")" -eq 2 ]
	[ -z "$(comm -12 <(echo "$r1") <(echo "$r2"))" ]
	# A second up of a lab changes nothing.
	inlab "$L2" up 1
	[ "$(routes "$NET" | wc -l)" -eq 2 ]

	inlab "$L2" down
	# The first lab is still up: its routes are all there, exactly as recorded.
	[ "$(routes "$NET" | wc -l)" -eq 1 ]
	[ "$(routes "$CLUSTER" | wc -l)" -eq 1 ]
	while read -r p m; do
		routes "$p" | grep -q " metric $m\\b"
	done <<<"$r1"

	inlab "$L1" down
	[ -z "$(routes "$NET")" ]
	[ -z "$(routes "$CLUSTER")" ]
}

@test "a lab never adopts, nor removes, a route it did not add" {
	# L2 stays up throughout, so no down sweeps unrecorded routes (a killed run's).
	inlab "$L2" up 1
	# A route of the lab protocol that no record of L1 names (a lab of before metrics).
	ip -n "$RT" -4 route add blackhole "$NET" proto 83
	inlab "$L1" up 1
	[ "$(routes "$NET" | wc -l)" -eq 3 ]
	inlab "$L1" down
	[ "$(routes "$NET" | wc -l)" -eq 2 ]
	routes "$NET" | grep -qv " metric "
	routes "$NET" | grep -q " metric $(awk -v p="$NET" '$1 == p {print $2}' "/run/shoal-lab-$L2/.state/routes")\b"
	ip -n "$RT" -4 route del blackhole "$NET" proto 83 metric 0 2>/dev/null ||
		ip -n "$RT" -4 route del blackhole "$NET" proto 83
	inlab "$L2" down
	[ -z "$(routes "$NET")" ]
}
