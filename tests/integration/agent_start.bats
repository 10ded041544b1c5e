#!/usr/bin/env bats
# The agent's container start goes the one image -> container path of the runtime
# (container_create_from_image): it holds the image store's lock from finding the image until
# the container's layers file is written, so an `rmi` (or another process's gc) racing the
# start cannot remove the image's layers under the new container (issue 17, item 5).
# One node; root (namespaces).

load helpers

bats_require_minimum_version 1.5.0

# shellcheck disable=SC2034 # read by bats
BATS_TEST_TIMEOUT=120

setup_file() {
	cluster_setup 1
	export M="$BATS_FILE_TMPDIR/m"
	mkdir -p "$M"
	cat >"$M/lk.yaml" <<'Y'
service: lk
image: shoal/web:1
replicas: 1
command: ["sleep", "100000"]
stop_grace: 1s
Y
}

teardown() {
	exec 9<&-
	rmdir "$IMAGES/bad_1" 2>/dev/null || true
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# A thread of the agent named for a start is waiting in flock(2) (syscall 73 on x86_64).
start_waits_for_lock() {
	local pid t
	pid=$(lab pid agent1)
	for t in /proc/"$pid"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = shoal-start ] || continue
		[ "$(cut -d' ' -f1 "$t/syscall" 2>/dev/null)" = 73 ] && return 0
	done
	return 1
}

bad_failed() {
	shoal ps bad | grep -q 'failed.*import '
}

lk_containers() {
	rt node1 ps -a | awk 'NR > 1 && $2 ~ /^lk\./' | wc -l
}

# Exactly one container of lk runs on node1.
one_lk_up() {
	[ "$(rt node1 ps | awk '$2 ~ /^lk\./ && / Up /' | wc -l)" -eq 1 ]
}

@test "a start holds the image store's lock: an rmi racing it cannot take the layers away" {
	[ "$(uname -m)" = x86_64 ] || skip "syscall numbers of x86_64"
	# First run: the image is imported into the node's store; then none is left running.
	shoal apply -f "$M/lk.yaml"
	wait_until 30 running_is lk 1
	shoal scale lk=0
	wait_until 30 running_is lk 0
	rt node1 images | grep -q '^shoal/web '
	before=$(lk_containers)
	# Someone else holds the store's lock (an rmi or an import of another process would):
	# this shell, on fd 9, which nothing started below may inherit (a lock belongs to the open
	# file, and a copy of the fd would keep it).
	exec 9<"$DATA/node1"
	flock 9
	shoal scale lk=1 9<&-
	# The start waits for the lock instead of creating the container under it...
	wait_until 30 start_waits_for_lock 9<&-
	[ "$(lk_containers 9<&-)" -eq "$before" ]
	# ...and so does an rmi of the image it runs.
	rt node1 rmi shoal/web:1 >"$BATS_TEST_TMPDIR/rmi.out" 2>&1 9<&- &
	rmi=$!
	exec 9<&-
	wait "$rmi" || true
	cat "$BATS_TEST_TMPDIR/rmi.out"
	# Whichever took the lock first, the replica runs on layers that are all there: after
	# the start, rmi removes the name and keeps what the container uses; before it, the
	# start finds no image, fails cleanly, and the retry imports it again.
	wait_until 60 running_is lk 1
	# The task the scale to 0 stopped may still be on its way out (SIGTERM, stop_grace).
	wait_until 30 one_lk_up
	rt node1 ps
	id=$(rt node1 ps | awk '$2 ~ /^lk\./ && / Up / { print $1 }')
	[ "$(echo "$id" | wc -w)" -eq 1 ]
	cid=$(ls "$DATA/node1/containers" | grep "^$id")
	while read -r l; do
		[ -d "$DATA/node1/layers/$l" ] || { echo "layer $l gone"; return 1; }
	done <"$DATA/node1/containers/$cid/layers"
	[ "$(wc -l <"$DATA/node1/containers/$cid/layers")" -ge 1 ]
	shoal ps lk
	task=$(shoal ps lk | awk 'NR > 1 && $5 == "running" { print $1 }')
	shoal exec "$task" -- ls /bin/busybox
}

@test "the agent imports in shoalrt-image: it maps no libcurl, libarchive nor libcrypto" {
	# Test 1 made the agent import shoal/web:1 from --image-dir. Loaded, those libraries held
	# ~8 MiB of an idle agent's RSS (bench/agent_mem.sh).
	pid=$(lab pid agent1)
	! grep -E 'lib(curl|archive|crypto|ssl|gnutls)' "/proc/$pid/maps"
	! readelf -d "$SHOAL_BIN/shoal-agent" | grep -E 'NEEDED.*(curl|archive|crypto)'
	# An import's failure still reaches the task, in shoalrt-image's words: an image dir
	# that is no image layout.
	cat >"$M/bad.yaml" <<'Y'
service: bad
image: shoal/bad:1
replicas: 1
Y
	mkdir "$IMAGES/bad_1"
	shoal apply -f "$M/bad.yaml"
	wait_until 30 bad_failed
	shoal ps bad
	shoal ps bad | grep -q "import $IMAGES/bad_1: "
	shoal rm bad
}
