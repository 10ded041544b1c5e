#!/usr/bin/env bats
# Images from a registry: Debian's docker-registry (the CNCF distribution registry) on the
# lab's scheduler host, plain HTTP, storage in this file's temp dir; `shoalrt push` and
# skopeo put images there, `shoalrt pull` fetches them on node1 (the HTTP traffic stays in
# the lab's namespaces: shoalrt runs with `lab exec`), each into a store of its own under
# /tmp, removed in teardown. A second registry on :5001 wants htpasswd Basic auth.
# Root (namespaces; layers keep their owners).

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
	command -v docker-registry >/dev/null || skip "docker-registry missing (deps.sh)"
	command -v skopeo >/dev/null || skip "skopeo missing (deps.sh)"
	export SHOALRT="$SHOAL_BIN/shoalrt"
	export IMAGES="$SHOAL_BIN/images"
	[ -x "$SHOALRT" ] || { echo "build shoalrt first (make)" >&2; return 1; }
	make -s -C "$SHOAL_ROOT" BUILD="$SHOAL_BIN" images >/dev/null
	timeout 60 bash "$LAB_BIN" down
	timeout 60 bash "$LAB_BIN" up 1
	export REGHOST
	REGHOST=$(lab addr sched)
	export REG="$REGHOST:5000" AREG="$REGHOST:5001"
	export REGDIR="$BATS_FILE_TMPDIR/registry"
	mkdir -p "$REGDIR/open" "$REGDIR/auth"
	start_registry open "$REG"
	htpasswd -B -b -c "$REGDIR/htpasswd" shoal 'right horse battery' 2>/dev/null
	start_registry auth "$AREG" "auth:
  htpasswd:
    realm: shoal-lab
    path: $REGDIR/htpasswd"
	wait_until 10 lab exec node1 curl -sf "http://$REG/v2/"
	wait_until 10 lab exec node1 curl -s -o /dev/null "http://$AREG/v2/"
	# The source store the pushes read from.
	export SRC="$BATS_FILE_TMPDIR/src"
	"$SHOALRT" --root "$SRC" import "$IMAGES/web_1" >/dev/null
	"$SHOALRT" --root "$SRC" import "$IMAGES/web_2" >/dev/null
}

# start_registry NAME ADDR [EXTRA_YAML]: a registry on ADDR in the scheduler's namespace,
# its storage under $REGDIR/NAME, its access log in $LAB_RUN/reg-NAME.log.
start_registry() {
	local name=$1 addr=$2 extra=${3:-}
	cat >"$REGDIR/$name.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGDIR/$name
  delete:
    enabled: true
http:
  addr: $addr
$extra
EOF
	lab spawn "reg-$name" sched docker-registry serve "$REGDIR/$name.yml" >/dev/null
}

setup() {
	ROOT=$(mktemp -d /tmp/shoal-registry-bats.XXXXXX)
	WORK=$(mktemp -d /tmp/shoal-registry-work.XXXXXX)
}

teardown() {
	local d
	for d in "$ROOT"/containers/*; do
		[ -d "$d" ] && "$SHOALRT" --root "$ROOT" rm -f "$(basename "$d")" >/dev/null 2>&1
	done
	rm -rf "${ROOT:?}" "${WORK:?}"
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down
}

# node1's shoalrt on this test's store: its HTTP goes out of node1's namespace.
pull() {
	timeout 120 bash "$LAB_BIN" exec node1 "$SHOALRT" --root "$ROOT" pull --insecure-registry "$REG" \
		--insecure-registry "$AREG" "$@"
}

# push ARGS...: the source store's shoalrt, from the scheduler's namespace.
push() {
	timeout 120 bash "$LAB_BIN" exec sched "$SHOALRT" --root "$SRC" push --insecure-registry "$REG" "$@"
}

rt() {
	timeout 60 "$SHOALRT" --root "$ROOT" "$@"
}

# manifest_of LAYOUT: the path of the manifest blob of an OCI layout.
manifest_of() {
	echo "$1/blobs/sha256/$(jq -r '.manifests[0].digest' "$1/index.json" | cut -d: -f2)"
}

# blob_bytes LAYOUT [N]: bytes of the config and layers of a layout's image (only the top
# layer and the config with N=top).
blob_bytes() {
	local m
	m=$(manifest_of "$1")
	if [ "${2:-}" = top ]; then
		jq '.config.size + .layers[-1].size' "$m"
	else
		jq '.config.size + ([.layers[].size] | add)' "$m"
	fi
}

# What must not change when a pull fails: every blob, layer and the index.
store_listing() {
	(cd "$ROOT" && find blobs layers index.json -printf '%p %y %s\n' 2>/dev/null | sort)
}

# Blob GETs the open registry logged for repository $1 so far.
blob_gets() {
	grep -c "\"GET /v2/$1/blobs/sha256:" "$LAB_RUN/reg-open.log" || true
}

@test "shoalrt push uploads an image, then only the blobs the registry lacks" {
	run push shoal/web:1 "$REG/shoal/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == "pushed $REG/shoal/web:1 sha256:$(basename "$(manifest_of "$IMAGES/web_1")" | cut -c1-12) (3 blobs, 3 uploaded, $(blob_bytes "$IMAGES/web_1") bytes"* ]]
	# :2 shares its base layer with :1: the config and the top layer go, nothing else.
	run push shoal/web:2 "$REG/shoal/web:2"
	[ "$status" -eq 0 ]
	[[ "$output" == *"(3 blobs, 2 uploaded, $(blob_bytes "$IMAGES/web_2" top) bytes"* ]]
	run push shoal/web:2 "$REG/shoal/web:2"
	[[ "$output" == *"(3 blobs, 0 uploaded, 0 bytes"* ]]
	# What a registry client reads back is the manifest byte for byte.
	lab exec node1 curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REG/v2/shoal/web/manifests/1" >"$WORK/m"
	cmp "$WORK/m" "$(manifest_of "$IMAGES/web_1")"
	# skopeo pushes the same layout too (used by the tests below).
	timeout 60 bash "$LAB_BIN" exec sched skopeo copy -q --dest-tls-verify=false "oci:$IMAGES/web_1" \
		"docker://$REG/sk/web:1"
}

@test "a cold pull fetches every blob, verified, and the image runs" {
	run pull "$REG/shoal/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == "pulled $REG/shoal/web:1 sha256:"*" (3 blobs, 3 fetched, $(blob_bytes "$IMAGES/web_1") bytes"* ]]
	run rt images
	[[ "$output" == *"$REG/shoal/web"*" 1 "* ]]
	run rt run --rm "$REG/shoal/web:1" /bin/busybox echo pulled-and-running
	[ "$status" -eq 0 ]
	[[ "$output" == *pulled-and-running* ]]
	# The pull's scratch space is gone.
	[ -z "$(find "$ROOT/tmp" -mindepth 1 -maxdepth 1 ! -name partial)" ]
}

@test "a warm pull of :2 after :1 fetches only the changed layer and the config" {
	pull "$REG/shoal/web:1"
	before=$(blob_gets shoal/web)
	run pull "$REG/shoal/web:2"
	[ "$status" -eq 0 ]
	want=$(blob_bytes "$IMAGES/web_2" top)
	echo "bytes of :2's config and top layer: $want"
	[[ "$output" == *"(3 blobs, 2 fetched, $want bytes"* ]]
	# The registry saw exactly two blob requests for it: nothing else went over the wire.
	[ "$(($(blob_gets shoal/web) - before))" -eq 2 ]
	run rt run --rm "$REG/shoal/web:2" /bin/busybox true
	[ "$status" -eq 0 ]
}

@test "the same layers in zstd are not fetched: the store has them by diff_id" {
	pull "$REG/shoal/web:1"
	# web_1 recompressed: other layer blobs (tar+zstd), the same diff_ids and config. Pushed
	# by shoalrt: skopeo would mount the gzip blobs the registry has instead.
	timeout 120 skopeo copy -q --dest-compress-format zstd "oci:$IMAGES/web_1" "oci:$WORK/zs:zs"
	"$SHOALRT" --root "$WORK/zsrc" import "$WORK/zs" zs/web:1 >/dev/null
	timeout 120 bash "$LAB_BIN" exec sched "$SHOALRT" --root "$WORK/zsrc" push \
		--insecure-registry "$REG" zs/web:1 "$REG/zs/web:1"
	lab exec node1 curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REG/v2/zs/web/manifests/1" >"$WORK/m"
	[ "$(jq -r '.layers[0].mediaType' "$WORK/m")" = application/vnd.oci.image.layer.v1.tar+zstd ]
	[ "$(jq -r '.layers[0].digest' "$WORK/m")" != "$(jq -r '.layers[0].digest' "$(manifest_of "$IMAGES/web_1")")" ]
	before=$(blob_gets zs/web)
	run pull "$REG/zs/web:1"
	[ "$status" -eq 0 ]
	echo "$output"
	[[ "$output" == *"(3 blobs, 0 fetched, 0 bytes"* ]]
	# Not one blob request for it: the layers were skipped by their diff_ids.
	[ "$(($(blob_gets zs/web) - before))" -eq 0 ]
	[ "$(find "$ROOT/layers" -mindepth 1 -maxdepth 1 | wc -l)" -eq 2 ]
	run rt run --rm "$REG/zs/web:1" /bin/busybox cat /www/healthz
	[ "$status" -eq 0 ]
	[ "$output" = ok ]
}

@test "an image skopeo pushed pulls under its name, with the same digest" {
	run pull "$REG/sk/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == "pulled $REG/sk/web:1 sha256:$(basename "$(manifest_of "$IMAGES/web_1")" | cut -c1-12)"* ]]
	# By digest too: the store answers to name@digest.
	d=$(basename "$(manifest_of "$IMAGES/web_1")")
	run pull "$REG/sk/web@sha256:$d"
	[ "$status" -eq 0 ]
	[[ "$output" == *"0 fetched, 0 bytes"* ]]
	rt run --rm "$REG/sk/web@sha256:$d" /bin/busybox true
}

@test "a multi-platform index picks this machine's platform; a Docker schema 2 image pulls" {
	# An OCI index over web_1's manifest for linux/arm64 and linux/amd64, pushed with --all.
	cp -r "$IMAGES/web_1" "$WORK/idx"
	m=$(jq -c '.manifests[0] | {mediaType, digest, size}' "$IMAGES/web_1/index.json")
	jq -cn --argjson m "$m" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
		manifests: [$m + {platform: {architecture: "arm64", os: "linux"}},
			$m + {platform: {architecture: "amd64", os: "linux"}}]}' >"$WORK/ix"
	ih=$(sha256sum "$WORK/ix" | cut -d' ' -f1)
	jq -cn --arg d "sha256:$ih" --argjson s "$(stat -c %s "$WORK/ix")" '{schemaVersion: 2,
		manifests: [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d,
		size: $s, annotations: {"org.opencontainers.image.ref.name": "multi"}}]}' \
		>"$WORK/idx/index.json"
	mv "$WORK/ix" "$WORK/idx/blobs/sha256/$ih"
	timeout 60 bash "$LAB_BIN" exec sched skopeo copy -q --all --dest-tls-verify=false \
		"oci:$WORK/idx:multi" "docker://$REG/multi/web:1"
	run pull "$REG/multi/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == "pulled $REG/multi/web:1 sha256:$(basename "$(manifest_of "$IMAGES/web_1")" | cut -c1-12)"* ]]
	run pull --platform linux/s390x "$REG/multi/web:1"
	[ "$status" -eq 1 ]
	[[ "$output" == *"index: no image for linux/s390x (it has linux/arm64, linux/amd64)"* ]]
	# skopeo converts to Docker's v2s2 (gzip layers, Docker media types).
	timeout 60 bash "$LAB_BIN" exec sched skopeo copy -q --format v2s2 --dest-tls-verify=false \
		"oci:$IMAGES/web_2" "docker://$REG/v2s2/web:2"
	run pull "$REG/v2s2/web:2"
	[ "$status" -eq 0 ]
	[[ "$output" == *"(3 blobs, 2 fetched"* ]] # the base layer is web_1's, pulled above
	run rt run --rm "$REG/v2s2/web:2" /bin/busybox cat /www/version
	[ "$status" -eq 0 ]
	[ "$output" = v2 ]
}

@test "an interrupted pull resumes from the verified part on disk (Range)" {
	m=$(manifest_of "$IMAGES/web_1")
	big=$(jq -r '.layers | max_by(.size) | .digest' "$m" | cut -d: -f2)
	size=$(stat -c %s "$IMAGES/web_1/blobs/sha256/$big")
	half=$((size / 2))
	mkdir -p "$ROOT/tmp/partial"
	head -c "$half" "$IMAGES/web_1/blobs/sha256/$big" >"$ROOT/tmp/partial/$big"
	run pull "$REG/shoal/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == *"(3 blobs, 3 fetched, $(($(blob_bytes "$IMAGES/web_1") - half)) bytes = "*", $half resumed)" ]]
	[ ! -e "$ROOT/tmp/partial/$big" ]
	# A partial that is not a prefix of the blob fails the check and is thrown away.
	rt rmi "$REG/shoal/web:1"
	head -c "$half" /dev/urandom >"$ROOT/tmp/partial/$big"
	run pull "$REG/shoal/web:1"
	[ "$status" -eq 1 ]
	[[ "$output" == *"layer sha256:${big:0:12}…: digest mismatch"* ]]
	[ ! -e "$ROOT/tmp/partial/$big" ]
	run pull "$REG/shoal/web:1"
	[ "$status" -eq 0 ]
}

@test "two pulls of one image into one store at once fetch each blob once" {
	big=$(jq -r '.layers | max_by(.size) | .digest' "$(manifest_of "$IMAGES/web_1")" | cut -d: -f2)
	mkdir -p "$ROOT/tmp/partial"
	: >"$ROOT/tmp/partial/$big"
	before=$(blob_gets shoal/web)
	# Hold the big layer's lock for a moment so that both pulls queue behind it.
	flock "$ROOT/tmp/partial/$big" sleep 2 &
	holder=$!
	sleep 0.3
	pull "$REG/shoal/web:1" >"$WORK/a" 2>&1 &
	a=$!
	pull "$REG/shoal/web:1" >"$WORK/b" 2>&1 &
	b=$!
	wait "$a"
	wait "$b"
	wait "$holder"
	cat "$WORK/a" "$WORK/b"
	[ "$(($(blob_gets shoal/web) - before))" -eq 3 ]
	[ "$(cat "$WORK/a" "$WORK/b" | grep -c '^pulled ')" -eq 2 ]
	[ -z "$(find "$ROOT/tmp/partial" -mindepth 1)" ]
	rt run --rm "$REG/shoal/web:1" /bin/busybox true
}

@test "a corrupted blob in the registry is refused and the store is unchanged" {
	pull "$REG/shoal/web:1"
	before=$(store_listing)
	top=$(jq -r '.layers[-1].digest' "$(manifest_of "$IMAGES/web_2")" | cut -d: -f2)
	data="$REGDIR/open/docker/registry/v2/blobs/sha256/${top:0:2}/$top/data"
	cp "$data" "$WORK/good"
	# Same size, other bytes: only the digest can tell.
	printf 'XXXX' | dd of="$data" bs=1 seek=20 conv=notrunc status=none
	run pull "$REG/shoal/web:2"
	cp "$WORK/good" "$data"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == "shoalrt: pull $REG/shoal/web:2: layer sha256:${top:0:12}…: digest mismatch (got sha256:"* ]]
	[ "$(store_listing)" = "$before" ]
	[ ! -e "$ROOT/tmp/partial/$top" ]
	[ -z "$(rt images | awk '$2 == "2"')" ]
	run pull "$REG/shoal/web:2"
	[ "$status" -eq 0 ]
}

@test "Basic auth: right credentials pull, wrong and none are refused without leaking them" {
	timeout 60 bash "$LAB_BIN" exec sched skopeo copy -q --dest-tls-verify=false \
		--dest-creds 'shoal:right horse battery' "oci:$IMAGES/web_1" "docker://$AREG/priv/web:1"
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$AREG" \
		"$(printf 'shoal:right horse battery' | base64 -w0)" >"$WORK/good.json"
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$AREG" \
		"$(printf 'shoal:wrong staple' | base64 -w0)" >"$WORK/bad.json"
	run pull "$AREG/priv/web:1"
	[ "$status" -eq 1 ]
	[[ "$output" == *"unauthorized"*"no credentials for it"* ]]
	run pull --registry-auth "$WORK/bad.json" "$AREG/priv/web:1"
	[ "$status" -eq 1 ]
	[[ "$output" == *"unauthorized"*"credentials refused"* ]]
	[[ "$output" != *staple* && "$output" != *"$(printf 'shoal:wrong staple' | base64 -w0)"* ]]
	[ ! -e "$ROOT/index.json" ]
	run timeout 120 bash "$LAB_BIN" exec node1 env \
		REGISTRY_AUTH_FILE="$WORK/good.json" "$SHOALRT" --root "$ROOT" pull \
		--insecure-registry "$AREG" "$AREG/priv/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == *"3 fetched"* && "$output" != *battery* ]]
	# push with the credentials too: only the manifest is new.
	run timeout 120 bash "$LAB_BIN" exec sched "$SHOALRT" --root "$SRC" push --registry-auth "$WORK/good.json" \
		--insecure-registry "$AREG" shoal/web:1 "$AREG/priv/web:again"
	[ "$status" -eq 0 ]
	[[ "$output" == *"0 uploaded"* ]]
}

@test "Bearer: the token flow from the registry's challenge, for pull and push" {
	command -v openssl >/dev/null || skip "openssl missing (deps.sh)"
	# A token server as small as can be: busybox httpd serving one JWT (RS256, the signing
	# certificate in x5c) for repository tok/web, pull and push, valid for an hour; the
	# registry trusts that certificate.
	local d=$REGDIR/tok now x5c h p sig treg=$REGHOST:5003
	mkdir -p "$d/www"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/key.pem" -out "$d/cert.pem" \
		-days 1 -subj /CN=shoal-token 2>/dev/null
	b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
	now=$(date +%s)
	x5c=$(openssl x509 -in "$d/cert.pem" -outform DER | base64 -w0)
	h=$(printf '{"typ":"JWT","alg":"RS256","x5c":["%s"]}' "$x5c" | b64url)
	p=$(printf '{"iss":"shoal-lab-issuer","sub":"t","aud":"shoal-lab","exp":%d,"nbf":%d,"iat":%d,"jti":"j1","access":[{"type":"repository","name":"tok/web","actions":["pull","push"]}]}' \
		$((now + 3600)) $((now - 60)) $((now - 60)) | b64url)
	sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$d/key.pem" | b64url)
	printf '{"token":"%s.%s.%s"}' "$h" "$p" "$sig" >"$d/www/token"
	lab spawn tok-httpd sched busybox httpd -f -p "$REGHOST:5002" -h "$d/www" >/dev/null
	start_registry tok "$treg" "auth:
  token:
    realm: http://$REGHOST:5002/token
    service: shoal-lab
    issuer: shoal-lab-issuer
    rootcertbundle: $d/cert.pem"
	wait_until 10 bash "$LAB_BIN" exec node1 curl -s -o /dev/null "http://$treg/v2/"
	run bash "$LAB_BIN" exec node1 curl -si "http://$treg/v2/tok/web/manifests/1"
	[[ "$output" == *"401 Unauthorized"* && "$output" == *'Bearer realm='* ]]
	run timeout 120 bash "$LAB_BIN" exec sched "$SHOALRT" --root "$SRC" push \
		--insecure-registry "$treg" shoal/web:1 "$treg/tok/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == *"(3 blobs, 3 uploaded"* ]]
	run timeout 120 bash "$LAB_BIN" exec node1 "$SHOALRT" --root "$ROOT" pull \
		--insecure-registry "$treg" "$treg/tok/web:1"
	[ "$status" -eq 0 ]
	[[ "$output" == *"(3 blobs, 3 fetched"* && "$output" != *"$sig"* ]]
	# The token covers tok/web only: another repository is refused with the reason.
	run timeout 120 bash "$LAB_BIN" exec node1 "$SHOALRT" --root "$ROOT" pull \
		--insecure-registry "$treg" "$treg/other/web:1"
	[ "$status" -eq 1 ]
	[[ "$output" == *"unauthorized by $treg"* ]]
	lab kill reg-tok
	lab kill tok-httpd
}

@test "an image built with umoci (whiteout, hard link, symlink) pushed by skopeo pulls and runs" {
	command -v umoci >/dev/null || skip "umoci missing (deps.sh)"
	cd "$WORK"
	umoci init --layout um
	umoci new --image um:1
	umoci unpack --image um:1 b1 >/dev/null
	mkdir -p b1/rootfs/bin b1/rootfs/etc
	cp /bin/busybox b1/rootfs/bin/
	ln -s busybox b1/rootfs/bin/sh
	echo hello >b1/rootfs/etc/greeting
	ln b1/rootfs/etc/greeting b1/rootfs/etc/hardlink
	echo gone >b1/rootfs/etc/gone
	umoci repack --image um:1 b1
	umoci unpack --image um:1 b2 >/dev/null
	rm b2/rootfs/etc/gone
	echo two >b2/rootfs/etc/second
	umoci repack --image um:1 b2
	umoci config --image um:1 --config.cmd /bin/sh --config.cmd -c --config.cmd \
		'cat /etc/greeting /etc/hardlink /etc/second; ls /etc/gone; stat -c %h /etc/greeting; readlink /bin/sh'
	# umoci's manifest has no mediaType: the registry's Content-Type must say it.
	run ! jq -e .mediaType "$(manifest_of um)"
	timeout 60 bash "$LAB_BIN" exec sched skopeo copy -q --dest-tls-verify=false oci:um:1 \
		"docker://$REG/umoci/img:1"
	run pull "$REG/umoci/img:1"
	[ "$status" -eq 0 ]
	[[ "$output" == *"(3 blobs, 3 fetched"* ]]
	run rt run --rm "$REG/umoci/img:1"
	echo "$output"
	[ "${lines[0]}" = hello ]
	[ "${lines[1]}" = hello ]
	[ "${lines[2]}" = two ]
	[[ "${lines[3]}" == *"/etc/gone"*"No such file"* ]]
	[ "${lines[4]}" = 2 ]
	[ "${lines[5]}" = busybox ]
}

@test "bad references, unknown tags and a registry that is down fail cleanly" {
	run pull '../../x:1'
	[ "$status" -eq 1 ]
	[[ "$output" == *'invalid reference "../../x:1": ".." is not a path component'* ]]
	run pull "$REG/shoal/web:nosuch"
	[ "$status" -eq 1 ]
	[[ "$output" == *"answered 404: manifest unknown (MANIFEST_UNKNOWN)"* ]]
	run timeout 60 bash "$LAB_BIN" exec node1 "$SHOALRT" --root "$ROOT" pull \
		--insecure-registry "$REGHOST:5009" "$REGHOST:5009/x:1"
	[ "$status" -eq 1 ]
	[[ "$output" == *"Couldn't connect to server"* ]]
	[ ! -e "$ROOT/index.json" ]
	[ -z "$(find "$ROOT/blobs/sha256" "$ROOT/layers" -mindepth 1)" ]
}

@test "names are normalised as Docker's: docker.io/local/nginx:docker runs as local/nginx:docker" {
	rt import "$IMAGES/web_1" docker.io/local/nginx:docker
	run rt images
	[[ "$output" == *"local/nginx  "*"docker"* ]]
	[[ "$output" != *docker.io* ]]
	run rt run --rm local/nginx:docker /bin/busybox echo found
	[ "$status" -eq 0 ]
	[[ "$output" == *found* ]]
	rt import "$IMAGES/web_1" docker.io/library/busybox
	rt run --rm busybox:latest /bin/busybox true
	run rt import "$IMAGES/web_1" 'UPPER/x:1'
	[ "$status" -eq 1 ]
	[[ "$output" == *"repository name must be lowercase"* ]]
}
