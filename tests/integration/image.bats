#!/usr/bin/env bats
# The image store through shoalrt, as an operator uses it: import the demo images that
# `make images` builds, list them, remove them, and fail cleanly on damaged input.
# Root (layers keep their owners; whiteouts are device nodes). Every test gets its own store
# under /tmp, removed in teardown whether the test passed or not.

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

setup_file() {
	local build=${BUILD:-build}
	case "$build" in /*) ;; *) build=$REPO/$build ;; esac
	export SHOALRT=${SHOAL_BIN:-$build}/shoalrt
	export IMAGES=$build/images
	[ -x "$SHOALRT" ] || { echo "build shoalrt first (make)" >&2; return 1; }
	make -s -C "$REPO" BUILD="$build" images >/dev/null
}

setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
	ROOT=$(mktemp -d /tmp/shoal-image-bats.XXXXXX)
	WORK=$(mktemp -d /tmp/shoal-image-work.XXXXXX)
}

teardown() {
	rm -rf "${ROOT:?}" "${WORK:?}"
}

rt() {
	timeout 60 "$SHOALRT" --root "$ROOT" "$@"
}

# A listing of everything in the store: what must not change when an import fails.
store_listing() {
	(cd "$ROOT" && find . -printf '%p %y %m %U:%G %s\n' | sort &&
		find . -type f -exec sha256sum {} + | sort)
}

manifest_hex() {
	jq -r '.manifests[0].digest' "$1/index.json" | cut -d: -f2
}

# A `docker save` archive of the OCI layout $1 at $2: manifest.json, <config hex>.json,
# <diff id>/layer.tar (uncompressed, as docker writes them) and a repositories file.
make_docker_save() {
	local src=$1 out=$2 d man cfg l diff layers=() tags
	d=$(mktemp -d "$WORK/ds.XXXXXX")
	man=$(manifest_hex "$src")
	cfg=$(jq -r '.config.digest' "$src/blobs/sha256/$man" | cut -d: -f2)
	tags=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$src/index.json")
	cp "$src/blobs/sha256/$cfg" "$d/$cfg.json"
	for l in $(jq -r '.layers[].digest' "$src/blobs/sha256/$man" | cut -d: -f2); do
		gunzip -c "$src/blobs/sha256/$l" >"$d/layer.tmp"
		diff=$(sha256sum "$d/layer.tmp" | cut -d' ' -f1)
		mkdir -p "$d/$diff"
		mv "$d/layer.tmp" "$d/$diff/layer.tar"
		layers+=("\"$diff/layer.tar\"")
	done
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]\n' "$cfg" "$tags" \
		"$(IFS=,; echo "${layers[*]}")" >"$d/manifest.json"
	printf '{"%s":{"%s":"%s"}}\n' "${tags%:*}" "${tags##*:}" "$diff" >"$d/repositories"
	tar -C "$d" -cf "$out" .
}

@test "make images output imports, both images share their base layer" {
	run rt import "$IMAGES/web_1"
	[ "$status" -eq 0 ]
	[[ "$output" == "imported shoal/web:1 sha256:$(manifest_hex "$IMAGES/web_1" | cut -c1-12) (2 layers, "* ]]
	run rt import "$IMAGES/web_2"
	[ "$status" -eq 0 ]
	[[ "$output" == "imported shoal/web:2 "* ]]

	[ "$(ls "$ROOT/layers" | wc -l)" -eq 3 ]
	# 2 manifests, 2 configs, 1 shared base layer, 2 version layers
	[ "$(ls "$ROOT/blobs/sha256" | wc -l)" -eq 7 ]
	# The busybox binary is stored once: one unpacked copy, and the whole store is well
	# under two of them.
	[ "$(find "$ROOT/layers" -name busybox -type f | wc -l)" -eq 1 ]
	bb=$(stat -c %s /bin/busybox)
	used=$(du -sb "$ROOT/layers" | cut -f1)
	[ "$used" -lt $((bb * 3 / 2)) ]
	grep -q 'web v1' "$ROOT"/layers/*/www/cgi-bin/index.cgi
	grep -q 'web v2' "$ROOT"/layers/*/www/cgi-bin/index.cgi
	[ -z "$(ls -A "$ROOT/tmp")" ]
}

@test "shoalrt images: table and -o json" {
	rt import "$IMAGES/web_1"
	rt import "$IMAGES/web_2"
	run rt images
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 3 ]
	[ "$(echo "${lines[0]}" | tr -s ' ')" = "NAME TAG DIGEST LAYERS SIZE CREATED" ]
	d1=$(manifest_hex "$IMAGES/web_1" | cut -c1-12)
	d2=$(manifest_hex "$IMAGES/web_2" | cut -c1-12)
	[[ "$(echo "${lines[1]}" | tr -s ' ')" =~ ^shoal/web\ 1\ $d1\ 2\ 1\.[0-9]Mi\ [0-9]+s\ ago$ ]]
	[[ "$(echo "${lines[2]}" | tr -s ' ')" =~ ^shoal/web\ 2\ $d2\ 2\ 1\.[0-9]Mi\ [0-9]+s\ ago$ ]]

	run rt -o json images
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jq length)" -eq 2 ]
	[ "$(echo "$output" | jq -r '.[0].name + ":" + .[0].tag')" = "shoal/web:1" ]
	[ "$(echo "$output" | jq -r '.[0].digest')" = "sha256:$(manifest_hex "$IMAGES/web_1")" ]
	[ "$(echo "$output" | jq -r '.[0].layers[0] == .[1].layers[0]')" = true ]
	[ "$(echo "$output" | jq -r '.[1].layers | length')" -eq 2 ]
	[ "$(echo "$output" | jq -r '.[0].size > 1000000')" = true ]
}

@test "the demo image serves its hostname and version, and /healthz" {
	rt import "$IMAGES/web_2"
	base=$(rt -o json images | jq -r '.[0].layers[0]' | cut -d: -f2)
	top=$(rt -o json images | jq -r '.[0].layers[1]' | cut -d: -f2)
	mkdir "$WORK/rootfs"
	# A private mount, network, UTS and PID namespace: the overlay and httpd die with it.
	run timeout 20 unshare -m -n -u -p -f sh -c "
		mount -t overlay overlay -o lowerdir=$ROOT/layers/$top:$ROOT/layers/$base $WORK/rootfs &&
		ip link set lo up && hostname web.2.k3x9 &&
		{ chroot $WORK/rootfs /bin/httpd -f -p 18080 -h /www & } &&
		sleep 0.5 &&
		timeout 5 busybox wget -qO- http://127.0.0.1:18080/ &&
		timeout 5 busybox wget -qO- http://127.0.0.1:18080/healthz"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "web v2 on web.2.k3x9" ]
	[ "${lines[1]}" = "ok" ]
}

@test "rmi keeps the layers the other image uses, then removes everything" {
	rt import "$IMAGES/web_1"
	rt import "$IMAGES/web_2"
	base=$(rt -o json images | jq -r '.[0].layers[0]' | cut -d: -f2)
	run rt rmi shoal/web:1
	[ "$status" -eq 0 ]
	[ "$output" = "removed shoal/web:1 (deleted 3 blobs, 1 layer)" ]
	[ "$(ls "$ROOT/layers" | wc -l)" -eq 2 ]
	[ -d "$ROOT/layers/$base/bin" ]
	[ "$(rt images | wc -l)" -eq 2 ]
	run rt rmi shoal/web:1
	[ "$status" -eq 1 ]
	[ "$output" = "shoalrt: rmi shoal/web:1: no image shoal/web:1" ]
	run rt rmi shoal/web:2
	[ "$status" -eq 0 ]
	[ -z "$(ls -A "$ROOT/layers" "$ROOT/blobs/sha256" "$ROOT/tmp" | grep -v ':$' | grep .)" ]
}

@test "rmi keeps layers a container uses" {
	rt import "$IMAGES/web_1"
	rt -o json images | jq -r '.[0].layers[]' | cut -d: -f2 >"$WORK/layers"
	mkdir -p "$ROOT/containers/c1"
	cp "$WORK/layers" "$ROOT/containers/c1/layers"
	run rt rmi shoal/web:1
	[ "$status" -eq 0 ]
	[ "$output" = "removed shoal/web:1 (deleted 4 blobs, 0 layers)" ]
	[ "$(ls "$ROOT/layers" | wc -l)" -eq 2 ]
}

@test "an import with a bad digest says which blob and leaves the store unchanged" {
	rt import "$IMAGES/web_1"
	cp -r "$IMAGES/web_2" "$WORK/bad"
	man=$(manifest_hex "$WORK/bad")
	top=$(jq -r '.layers[1].digest' "$WORK/bad/blobs/sha256/$man" | cut -d: -f2)
	printf 'X' | dd of="$WORK/bad/blobs/sha256/$top" bs=1 seek=100 conv=notrunc 2>/dev/null
	before=$(store_listing)
	run rt import "$WORK/bad"
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" =~ ^shoalrt:\ import\ $WORK/bad:\ layer\ sha256:${top:0:12}…:\ digest\ mismatch\ \(got\ sha256:[0-9a-f]{12}…\)$ ]]
	[ "$(store_listing)" = "$before" ]

	# truncated, and missing
	cp -r "$IMAGES/web_2" "$WORK/trunc"
	truncate -s 50 "$WORK/trunc/blobs/sha256/$top"
	run rt import "$WORK/trunc"
	[ "$status" -eq 1 ]
	[[ "$output" == *"(truncated)" ]]
	rm "$WORK/trunc/blobs/sha256/$top"
	run rt import "$WORK/trunc"
	[ "$status" -eq 1 ]
	[[ "$output" == *"layer sha256:${top:0:12}…: missing from the archive"* ]]
	[ "$(store_listing)" = "$before" ]
}

@test "an OCI layout as a tar imports" {
	tar -C "$IMAGES/web_1" -cf "$WORK/web_1.tar" .
	run rt import "$WORK/web_1.tar"
	[ "$status" -eq 0 ]
	[[ "$output" == "imported shoal/web:1 "* ]]
	run rt import "$WORK/web_1.tar" mirror/web:latest
	[ "$status" -eq 0 ]
	[ "$(ls "$ROOT/layers" | wc -l)" -eq 2 ]
	[ "$(rt images | awk 'NR>1 {print $1 ":" $2}' | tr '\n' ' ')" = "mirror/web:latest shoal/web:1 " ]
}

@test "a docker save archive imports, names from RepoTags, digests computed" {
	make_docker_save "$IMAGES/web_1" "$WORK/ds.tar"
	run rt import "$WORK/ds.tar"
	[ "$status" -eq 0 ]
	[[ "$output" == "imported shoal/web:1 sha256:"*" (2 layers, "* ]]
	run rt -o json images
	# docker save layers are uncompressed: their digests are the config's diff_ids
	man=$(manifest_hex "$IMAGES/web_1")
	cfg=$(jq -r '.config.digest' "$IMAGES/web_1/blobs/sha256/$man" | cut -d: -f2)
	[ "$(echo "$output" | jq -c '.[0].layers')" = "$(jq -c '.rootfs.diff_ids' "$IMAGES/web_1/blobs/sha256/$cfg")" ]
	grep -q 'web v1' "$ROOT"/layers/*/www/cgi-bin/index.cgi

	# a layer whose content disagrees with the config's diff_id is refused
	mkdir "$WORK/x" && tar -C "$WORK/x" -xf "$WORK/ds.tar"
	l=$(jq -r '.[0].Layers[1]' "$WORK/x/manifest.json")
	printf 'junk' >>"$WORK/x/$l"
	tar -C "$WORK/x" -cf "$WORK/bad.tar" .
	before=$(store_listing)
	run rt import "$WORK/bad.tar" other/web:1
	[ "$status" -eq 1 ]
	[[ "$output" == *"digest mismatch (config says sha256:"* ]]
	[ "$(store_listing)" = "$before" ]
}

@test "an archive entry escaping the import is refused" {
	mkdir -p "$WORK/evil"
	printf 'x' >"$WORK/evil/f"
	tar -C "$WORK/evil" -cf "$WORK/evil.tar" --transform 's,^f,../../shoal-escape,' f
	rt images >/dev/null # an empty store, opened (created) once
	before=$(store_listing)
	run rt import "$WORK/evil.tar"
	[ "$status" -eq 1 ]
	[[ "$output" == *'entry "../../shoal-escape": path with ".." refused'* ]]
	[ "$(store_listing)" = "$before" ]
	[ ! -e "$ROOT/shoal-escape" ] && [ ! -e /tmp/shoal-escape ]
}
