#!/usr/bin/env bats
# Nodes pull what they run (issue 13, the orchestrator's part): Debian's docker-registry on
# the lab's scheduler host at SCHED_ADDR:5000 (plain HTTP, storage in this file's temp dir),
# shoal/web:1 and :2 pushed there with `shoalrt push`, agents with empty stores and no
# --image-dir, started with --insecure-registry. Every client runs in a lab namespace.
# Tests run in order on one cluster. Root (namespaces).

load helpers
bats_require_minimum_version 1.5.0

BATS_TEST_TIMEOUT=150

# The agents here have no --image-dir: what they run comes from the registry.
start_agent() {
	local i=$1
	# shellcheck disable=SC2086 # AGENT_ARGS is a list of flags
	lab spawn "agent$i" "node$i" "$SHOAL_BIN/shoal-agent" --scheduler "$SCHED" \
		--token-file "$DATA/sched/worker.token" --name "node$i" \
		--address "$(lab addr "node$i")" --label "zone=$(lab zone "node$i")" \
		--data-dir "$DATA/node$i" --insecure-registry "$REG" ${AGENT_ARGS:-}
}

# start_registry: docker-registry on $REG in the scheduler's namespace, storage under
# $REGDIR (it survives a restart), access log in $LAB_RUN/registry.log.
start_registry() {
	lab spawn registry sched docker-registry serve "$REGDIR/config.yml" >/dev/null
	wait_until 10 lab exec node1 curl -sf "http://$REG/v2/"
}

setup_file() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
	command -v docker-registry >/dev/null || skip "docker-registry missing (deps.sh)"
	export DATA="$BATS_FILE_TMPDIR/data" IMAGES
	IMAGES=$(cd "$SHOAL_BIN" && pwd)/images
	make -s -C "$SHOAL_ROOT" BUILD="$(dirname "$IMAGES")" images >/dev/null
	timeout 60 bash "$LAB_BIN" down
	timeout 60 bash "$LAB_BIN" up 3
	export REG
	REG=$(lab addr sched):5000
	export REGDIR="$BATS_FILE_TMPDIR/registry"
	mkdir -p "$REGDIR/storage"
	cat >"$REGDIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGDIR/storage
http:
  addr: $REG
EOF
	start_registry
	# The source store the pushes read from.
	export SRC="$BATS_FILE_TMPDIR/src"
	"$SHOAL_BIN/shoalrt" --root "$SRC" import "$IMAGES/web_1" >/dev/null
	"$SHOAL_BIN/shoalrt" --root "$SRC" import "$IMAGES/web_2" >/dev/null
	push shoal/web:1 "$REG/shoal/web:1"
	push shoal/web:2 "$REG/shoal/web:2"
	"$SHOAL_BIN/shoal-scheduler" init --data-dir "$DATA/sched" >"$BATS_FILE_TMPDIR/init.out"
	start_sched
	for i in 1 2 3; do start_agent "$i"; done
	M="$BATS_FILE_TMPDIR/m"
	mkdir -p "$M"
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# push IMAGE REF: the source store's shoalrt, from the scheduler's namespace.
push() {
	timeout 120 bash "$LAB_BIN" exec sched "$SHOAL_BIN/shoalrt" --root "$SRC" push \
		--insecure-registry "$REG" "$@" >/dev/null
}

ps_has() {
	shoal ps "$1" -a | grep -q -- "$2"
}

# manifest_of LAYOUT: the path of the manifest blob of an OCI layout.
manifest_of() {
	echo "$1/blobs/sha256/$(jq -r '.manifests[0].digest' "$1/index.json" | cut -d: -f2)"
}

# web NAME IMAGE [REPLICAS] [EXTRA_YAML]: a web service manifest in $M/NAME.yaml (only
# "web" publishes a port).
web() {
	local ports=
	[ "$1" != web ] || ports='ports: [{published: 9280, target: 8080}]'
	cat >"$M/$1.yaml" <<EOF
service: $1
image: $2
replicas: ${3:-3}
command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
$ports
health: {http: /healthz, port: 8080, interval: 500ms, timeout: 1s, retries: 2}
update: {parallelism: 1, delay: 500ms, order: start-first, failure_action: pause, monitor: 2s}
restart: {policy: always, delay: 500ms}
stop_grace: 2s
${4:-}
EOF
}

healthy_is() {
	[ "$(shoal ps "$1" | awk '$4 == "running" && /running \(healthy\)/' | wc -l)" -eq "$2" ]
}

# running_version SERVICE VERSION N: N of its tasks run that version, healthy.
running_version() {
	[ "$(shoal ps "$1" -o json | jq --argjson v "$2" '[.[] | select(.desired == "running" and .state == "running" and .version == $v and (.health // "" | startswith("healthy")))] | length')" -eq "$3" ]
}

# big_image DIR: shoal/web:1 with a third layer of 16 MiB of random bytes (gzip cannot
# shrink it), as an OCI layout named shoal/big:1; prints the new layer's blob hex digest and its diff_id hex.
big_image() {
	local out=$1 w=$BATS_FILE_TMPDIR/bigwork m c diff ld ls cd cs md ms
	rm -rf "$out" "$w"
	cp -r "$IMAGES/web_1" "$out"
	mkdir -p "$w/data"
	head -c $((16 << 20)) /dev/urandom >"$w/data/big.bin"
	tar -C "$w" --sort=name --owner=0 --group=0 --mtime=@0 -cf "$w/l.tar" data
	diff=$(sha256sum "$w/l.tar" | cut -d' ' -f1)
	gzip -n -1 "$w/l.tar"
	ld=$(sha256sum "$w/l.tar.gz" | cut -d' ' -f1)
	ls=$(stat -c %s "$w/l.tar.gz")
	mv "$w/l.tar.gz" "$out/blobs/sha256/$ld"
	m=$(manifest_of "$out")
	c="$out/blobs/sha256/$(jq -r .config.digest "$m" | cut -d: -f2)"
	jq -c --arg d "sha256:$diff" '.rootfs.diff_ids += [$d]' "$c" >"$w/config"
	cd=$(sha256sum "$w/config" | cut -d' ' -f1)
	cs=$(stat -c %s "$w/config")
	mv "$w/config" "$out/blobs/sha256/$cd"
	jq -c --arg cd "sha256:$cd" --argjson cs "$cs" --arg ld "sha256:$ld" --argjson ls "$ls" \
		'.config.digest = $cd | .config.size = $cs | .layers += [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]' \
		"$m" >"$w/manifest"
	md=$(sha256sum "$w/manifest" | cut -d' ' -f1)
	ms=$(stat -c %s "$w/manifest")
	mv "$w/manifest" "$out/blobs/sha256/$md"
	jq -c --arg md "sha256:$md" --argjson ms "$ms" \
		'.manifests[0].digest = $md | .manifests[0].size = $ms | .manifests[0].annotations["org.opencontainers.image.ref.name"] = "shoal/big:1"' \
		"$out/index.json" >"$w/index.json"
	mv "$w/index.json" "$out/index.json"
	rm -rf "$w"
	# The blob's digest, then its diff_id: the store keeps the unpacked layer under the latter.
	echo "$ld $diff"
}

# partial_over NODE BYTES: a blob being fetched on NODE holds more than BYTES.
partial_over() {
	[ -n "$(find "$DATA/$1/tmp/partial" -type f -size +"$2"c 2>/dev/null)" ]
}

# pulled NODE REF: the agent's "pulled" log line for REF.
pulled() {
	grep -h "pulled $2 " "$LAB_RUN/agent${1#node}.log" | tail -1
}

@test "a cold pull on every node: empty stores run web from the registry" {
	for i in 1 2 3; do
		[ ! -e "$DATA/node$i/index.json" ] || [ "$(jq ".images | length" "$DATA/node$i/index.json")" -eq 0 ]
	done
	web web "$REG/shoal/web:1"
	shoal apply -f "$M/web.yaml"
	wait_until 60 healthy_is web 3
	# One replica a node (spread): each node pulled the whole image, every blob fetched.
	for i in 1 2 3; do
		line=$(pulled "node$i" "$REG/shoal/web:1")
		echo "node$i: $line" >&3
		[[ "$line" == *"blobs=3 fetched=3 present=0 "* ]]
		# The task showed its pull while it was preparing.
		grep -q "preparing: pulling [0-9]/2 layers, " "$LAB_RUN/agent$i.log"
	done
	[[ "$(rt node1 images)" == *"$REG/shoal/web"* ]]
}

@test "a rolling update to :2 fetches only the changed layer on each node (start-first, no failure)" {
	local want m d2
	m=$(manifest_of "$IMAGES/web_2")
	want=$(jq '.config.size + .layers[-1].size' "$m")
	echo "bytes of :2 missing after :1 (config + top layer): $want" >&3
	# Clients keep asking node1's proxy all through the update (from the scheduler's
	# namespace): start-first with the pull in the new task's preparing fails none.
	lab exec sched bash -c "for i in \$(seq 1 400); do timeout 2 busybox wget -qO- http://$(lab addr node1):9280/ >/dev/null 2>&1 && echo ok || echo FAIL; sleep 0.05; done" >"$BATS_TEST_TMPDIR/clients" &
	clients=$!
	# The client loop has started (a loaded machine takes a while to fork it) before the update.
	wait_until 30 grep -q ok "$BATS_TEST_TMPDIR/clients"
	web web "$REG/shoal/web:2"
	shoal apply -f "$M/web.yaml"
	wait_until 60 running_version web 2 3
	kill "$clients" 2>/dev/null || true
	wait "$clients" 2>/dev/null || true
	echo "requests during the update: $(grep -c ok "$BATS_TEST_TMPDIR/clients") ok, $(grep -c FAIL "$BATS_TEST_TMPDIR/clients") failed" >&3
	[ "$(grep -c ok "$BATS_TEST_TMPDIR/clients")" -gt 5 ]
	[ "$(grep -c FAIL "$BATS_TEST_TMPDIR/clients")" -eq 0 ]
	# Each node the update placed a :2 replica on pulled the config and the top layer only.
	n=0
	d2=sha256:$(basename "$m")
	for i in 1 2 3; do
		# By tag, or by digest once the version is pinned.
		line=$(grep -h "pulled $REG/shoal/web[:@].* digest=$d2 " "$LAB_RUN/agent$i.log" | tail -1)
		[ -n "$line" ] || continue
		echo "node$i: $line" >&3
		[[ "$line" == *"blobs=3 fetched=2 present=1 bytes=$want "* ]]
		n=$((n + 1))
	done
	[ "$n" -ge 1 ]
	# No task of the update failed: the new one pulled while the old one served.
	[ "$(shoal ps web -a | grep -c failed)" -eq 0 ]
}

@test "a failed pull fails the task with the registry's reason, in shoal ps" {
	web ghost "$REG/shoal/web:9" 1
	shoal apply -f "$M/ghost.yaml"
	wait_until 30 ps_has ghost "manifest unknown"
	run shoal ps ghost -a
	echo "$output" >&3
	[[ "$output" == *failed* ]]
	# Retried with the restart back-off: more than one attempt.
	wait_until 30 bash -c "[ \"\$(grep -c 'ghost.*failed.*manifest unknown' '$LAB_RUN/agent1.log' '$LAB_RUN/agent2.log' '$LAB_RUN/agent3.log' | awk -F: '{s += \$2} END {print s}')\" -ge 2 ]"
	# A registry where nothing listens: connection refused.
	web refused "$(lab addr sched):5999/shoal/web:1" 1
	shoal apply -f "$M/refused.yaml"
	wait_until 30 ps_has refused "Couldn't connect\|onnection refused"
	shoal rm ghost
	shoal rm refused
}

@test "the registry killed in the middle of a pull: the task retries and runs when it is back, no partial layer in the store" {
	local big bigdiff dev
	read -r big bigdiff < <(big_image "$BATS_FILE_TMPDIR/big")
	"$SHOAL_BIN/shoalrt" --root "$SRC" import "$BATS_FILE_TMPDIR/big" >/dev/null
	push shoal/big:1 "$REG/shoal/big:1"
	# The registry's side sends at ~16 Mbit/s: the 16 MiB layer takes seconds.
	dev=$(lab exec sched ip -o -4 addr show | awk -v a="$(lab addr sched)/" 'index($4, a) == 1 {print $2}')
	lab exec sched tc qdisc add dev "$dev" root tbf rate 16mbit burst 64kb latency 500ms
	web big "$REG/shoal/big:1" 1 'placement: {constraints: ["node.name == node1"]}'
	shoal apply -f "$M/big.yaml"
	wait_until 30 partial_over node1 1048576
	wait_until 10 ps_has big "preparing.*pulling [0-9]/3 layers"
	shoal ps big -a >&3
	lab kill registry KILL
	wait_until 30 ps_has big "failed"
	shoal ps big -a >&3
	# Nothing of the image is in node1's store: no index entry, no blob or layer of it.
	[ "$(jq "[.images[] | select(.name | contains(\"big\"))] | length" "$DATA/node1/index.json")" -eq 0 ]
	[ ! -e "$DATA/node1/layers/$bigdiff" ]
	[ ! -e "$DATA/node1/blobs/sha256/$big" ]
	lab exec sched tc qdisc del dev "$dev" root
	start_registry
	wait_until 60 running_is big 1
	line=$(pulled node1 "$REG/shoal/big:1")
	echo "node1: $line" >&3
	[ -e "$DATA/node1/layers/$bigdiff" ]
	shoal rm big
}

# record_digests SERVICE VERSION: the image digest each node's task record of that version
# holds (the agent writes what it started), one per line.
record_digests() {
	local f
	for f in "$DATA"/node*/tasks/*.json; do
		[ -e "$f" ] || continue
		jq -r --arg s "$1" --argjson v "$2" 'select(.service == $s and .version == $v) | .image_digest' "$f" 2>/dev/null || true # gone: stopped meanwhile
	done
}

inspect_digest() {
	shoal inspect "$1" | jq -r '.image_digest // ""'
}

digest_is() {
	[ "$(inspect_digest "$1")" = "$2" ]
}

@test "a tag moved during a rolling update: every replica of the version runs the digest it was pinned to" {
	local d1 d2
	d1=sha256:$(basename "$(manifest_of "$IMAGES/web_1")")
	d2=sha256:$(basename "$(manifest_of "$IMAGES/web_2")")
	push shoal/web:1 "$REG/shoal/mv:1"
	push shoal/web:2 "$REG/shoal/mv:2"
	# Two replicas, at most one a node, on three nodes: each new replica of the update goes
	# to the node without one, so the second one lands on a node that never had mv:2.
	web mv "$REG/shoal/mv:1" 2 'placement: {max_per_node: 1}'
	shoal apply -f "$M/mv.yaml"
	wait_until 60 healthy_is mv 2
	wait_until 10 digest_is mv "$d1"
	web mv "$REG/shoal/mv:2" 2 'placement: {max_per_node: 1}'
	shoal apply -f "$M/mv.yaml"
	# The first replica of version 2 pulled mv:2 and pinned the version; then the tag moves
	# to the content of :1.
	wait_until 30 digest_is mv "$d2"
	push shoal/web:1 "$REG/shoal/mv:2"
	wait_until 60 running_version mv 2 2
	run record_digests mv 2
	echo "version 2 runs: $(sort -u <<<"$output" | tr '\n' ' ')(pinned $d2; the tag now names $d1)" >&3
	[ "$(sort -u <<<"$output")" = "$d2" ]
	# The replica started after the pin pulled by digest, not by the moved tag.
	grep -h "pulled $REG/shoal/mv@$d2 " "$LAB_RUN"/agent*.log
	[ "$(inspect_digest mv)" = "$d2" ]
	shoal rm mv
}

@test "three tasks on one node needing one image: one pull, the others wait for it" {
	push shoal/web:2 "$REG/shoal/dup:1"
	web dup "$REG/shoal/dup:1" 3 'placement: {constraints: ["node.name == node2"]}'
	shoal apply -f "$M/dup.yaml"
	wait_until 60 healthy_is dup 3
	grep "dup\.[0-9].* preparing: waiting for another task's pull" "$LAB_RUN/agent2.log" >&3 || true
	[ "$(grep -c "pulled $REG/shoal/dup:1 " "$LAB_RUN/agent2.log")" -eq 1 ]
	shoal rm dup
}

@test "a registry with Basic auth: unauthorized in shoal ps, then --registry-auth pulls; the password is never logged" {
	command -v htpasswd >/dev/null || skip "htpasswd missing (deps.sh: apache2-utils)"
	local areg
	areg=$(lab addr sched):5001
	mkdir -p "$REGDIR/auth"
	htpasswd -B -b -c "$REGDIR/htpasswd" shoal 'right horse battery' 2>/dev/null
	cat >"$REGDIR/auth.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGDIR/auth
http:
  addr: $areg
auth:
  htpasswd:
    realm: shoal-lab
    path: $REGDIR/htpasswd
EOF
	lab spawn registry-auth sched docker-registry serve "$REGDIR/auth.yml" >/dev/null
	wait_until 10 lab exec node1 curl -s -o /dev/null "http://$areg/v2/"
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$areg" \
		"$(printf 'shoal:right horse battery' | base64 -w0)" >"$BATS_FILE_TMPDIR/auth.json"
	chmod 600 "$BATS_FILE_TMPDIR/auth.json"
	timeout 120 bash "$LAB_BIN" exec sched "$SHOAL_BIN/shoalrt" --root "$SRC" push \
		--registry-auth "$BATS_FILE_TMPDIR/auth.json" --insecure-registry "$areg" \
		shoal/web:2 "$areg/priv/web:1" >/dev/null
	# node3's agent speaks to it, without credentials first.
	lab kill agent3
	AGENT_ARGS="--insecure-registry $areg" start_agent 3
	web priv "$areg/priv/web:1" 1 'placement: {constraints: ["node.name == node3"]}'
	shoal apply -f "$M/priv.yaml"
	wait_until 30 ps_has priv "unauthorized"
	shoal ps priv -a >&3
	lab kill agent3
	AGENT_ARGS="--insecure-registry $areg --registry-auth $BATS_FILE_TMPDIR/auth.json" start_agent 3
	wait_until 60 healthy_is priv 1
	[ "$(grep -c "pulled $areg/priv/web:1 " "$LAB_RUN/agent3.log")" -eq 1 ]
	# Neither the password nor its base64 form is in any daemon's log or in inspect.
	[ "$(cat "$LAB_RUN"/agent*.log "$LAB_RUN/sched.log" | grep -c -e battery -e "$(printf 'shoal:right horse battery' | base64 -w0)")" -eq 0 ]
	[ "$(shoal inspect priv | grep -c battery)" -eq 0 ]
	shoal rm priv
}

# images_of NODE: "name:tag" of every image in the node's store.
images_of() {
	jq -r '.images[] | "\(.name):\(.tag)"' "$DATA/$1/index.json" | sort
}

@test "unused images are pruned: by the agent after --image-gc-after, and by shoalrt prune" {
	# node3 holds web:1 since the cold pull, no container uses it any more; a replica of
	# keep runs :2 there.
	images_of node3 | grep -qx "$REG/shoal/web:1"
	web keep "$REG/shoal/web:2" 1 'placement: {constraints: ["node.name == node3"]}'
	shoal apply -f "$M/keep.yaml"
	wait_until 30 healthy_is keep 1
	lab kill agent3
	AGENT_ARGS="--image-gc-after 1s" start_agent 3
	wait_until 20 grep -q "image gc: pruned" "$LAB_RUN/agent3.log"
	grep "image gc: pruned" "$LAB_RUN/agent3.log" >&3
	run images_of node3
	echo "node3 keeps: $(tr '\n' ' ' <<<"$output")" >&3
	[[ "$output" != *"$REG/shoal/web:1"* ]]
	[[ "$output" == *"$REG/shoal/web:2"* ]]
	# What is left is in use: pruning everything unused finds nothing more.
	run rt node3 prune --all
	[ "$status" -eq 0 ]
	[ "$output" = "pruned 0 images (deleted 0 blobs, 0 layers)" ]
	# The service did not notice (its containers keep their layers).
	wait_until 20 healthy_is web 3
	# node1 still holds big (its service is gone) and web:1: shoalrt prune --all removes
	# them, nothing a container uses.
	images_of node1 | grep -q "shoal/big"
	run rt node1 prune --all
	echo "node1: $output" >&3
	[ "$status" -eq 0 ]
	[[ "$output" == "pruned "[1-9]* ]]
	[ "$(images_of node1 | grep -c "shoal/big")" -eq 0 ]
	run rt node1 prune --all
	[ "$output" = "pruned 0 images (deleted 0 blobs, 0 layers)" ]
	wait_until 20 healthy_is web 3
	healthy_is keep 1
	shoal rm keep
}
