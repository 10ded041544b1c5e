#!/usr/bin/env bash
# Build Shoal's demo images as OCI image layouts, offline, from Debian's busybox-static.
#
#   images/build.sh [OUTDIR]        (`make images` runs it with OUTDIR=build/images)
#
# Images: shoal/web:1 and shoal/web:2, busybox httpd on port 8080 whose `/` names the
# replica ("web v1 on web.2.k3x9") and whose /healthz answers "ok". Both share one base
# layer (busybox and its applet links); the version lives in a second, small layer.
#
# Directory convention: image NAME:TAG goes to OUTDIR/<last component of NAME>_<TAG>/,
# so shoal/web:1 -> build/images/web_1/. Each is an OCI image layout (oci-layout,
# index.json, blobs/sha256/) whose index names the image in full with the
# org.opencontainers.image.ref.name annotation ("shoal/web:1"): `shoalrt import DIR`
# needs no NAME:TAG.
#
# Deterministic: sorted entries, owner 0:0, fixed mtimes, gzip -n, so the same busybox
# gives the same digests on every run.
set -euo pipefail
umask 022

out=${1:-build/images}
busybox=${BUSYBOX:-/bin/busybox}
epoch=1767225600 # 2026-01-01T00:00:00Z
created=2026-01-01T00:00:00Z
path_env=/bin:/usr/bin:/sbin:/usr/sbin

case "$(uname -m)" in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
*) arch=$(uname -m) ;;
esac

if [ ! -x "$busybox" ]; then
	echo "images/build.sh: $busybox missing: apt-get install busybox-static" >&2
	exit 1
fi
mkdir -p "$out"
# The output is a pure function of busybox, this script and the architecture: the same
# inputs skip the build (every provisioned lab host runs `make images`; a build costs
# seconds of tar and gzip -9 each time).
inputs=$(cat "$busybox" "${BASH_SOURCE[0]}" <(echo "$arch") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ] &&
	[ -f "$out/web_1/index.json" ] && [ -f "$out/web_2/index.json" ]; then
	echo "images/build.sh: $out is up to date"
	exit 0
fi
rm -f "$out/.inputs"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# tar DIR into a layer: sets layer_diff (uncompressed digest) and layer_file (gzip blob).
make_layer() {
	local dir=$1 name=$2
	find "$dir" -exec touch -h -d "@$epoch" {} +
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=gnu \
		-C "$dir" -cf "$work/$name.tar" .
	layer_diff=$(sha "$work/$name.tar")
	gzip -n -9 <"$work/$name.tar" >"$work/$name.tar.gz"
	layer_file=$work/$name.tar.gz
}

# The base layer: busybox, a link per applet, the directories a rootfs needs.
base=$work/base
mkdir -p "$base"/{bin,etc,dev,proc,sys,tmp,root,var/run}
chmod 1777 "$base/tmp"
chmod 700 "$base/root"
cp "$busybox" "$base/bin/busybox"
chmod 755 "$base/bin/busybox"
for applet in $("$busybox" --list); do
	# --list includes busybox itself: a link onto itself would replace the binary.
	[ "$applet" = busybox ] && continue
	ln -s busybox "$base/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
	>"$base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$base/etc/group"
make_layer "$base" base
base_diff=$layer_diff
base_file=$layer_file

# One image: its version layer, config, manifest and layout. $1 = version ("1", "2").
build_image() {
	local v=$1 name=shoal/web dir top diff file cfg man
	top=$work/v$v
	mkdir -p "$top/www/cgi-bin"
	# busybox httpd runs cgi-bin/index.cgi for a directory URL with no index.html: `/` is
	# dynamic without a redirect. The container's hostname is the replica's name.
	cat >"$top/www/cgi-bin/index.cgi" <<CGI
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
printf 'web v$v on %s\n' "\$(/bin/hostname)"
CGI
	chmod 755 "$top/www/cgi-bin/index.cgi"
	printf 'ok\n' >"$top/www/healthz"
	printf 'v%s\n' "$v" >"$top/www/version"
	make_layer "$top" "v$v"
	diff=$layer_diff
	file=$layer_file

	dir=$work/web_$v
	mkdir -p "$dir/blobs/sha256"
	cp "$base_file" "$dir/blobs/sha256/$(sha "$base_file")"
	cp "$file" "$dir/blobs/sha256/$(sha "$file")"

	cfg=$work/config_$v.json
	{
		printf '{"created":"%s","architecture":"%s","os":"linux",' "$created" "$arch"
		printf '"config":{"Env":["PATH=%s"],' "$path_env"
		printf '"Cmd":["/bin/httpd","-f","-p","8080","-h","/www"],'
		printf '"WorkingDir":"/","ExposedPorts":{"8080/tcp":{}},'
		printf '"Labels":{"org.opencontainers.image.version":"%s"}},' "$v"
		printf '"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]},' \
			"$base_diff" "$diff"
		printf '"history":[{"created":"%s","created_by":"images/build.sh: busybox"},' \
			"$created"
		printf '{"created":"%s","created_by":"images/build.sh: web v%s"}]}' "$created" "$v"
	} >"$cfg"
	cp "$cfg" "$dir/blobs/sha256/$(sha "$cfg")"

	man=$work/manifest_$v.json
	{
		printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
		printf '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
		printf '"digest":"sha256:%s","size":%s},' "$(sha "$cfg")" "$(size "$cfg")"
		printf '"layers":['
		printf '{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
		printf '"digest":"sha256:%s","size":%s},' "$(sha "$base_file")" "$(size "$base_file")"
		printf '{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
		printf '"digest":"sha256:%s","size":%s}' "$(sha "$file")" "$(size "$file")"
		printf ']}'
	} >"$man"
	cp "$man" "$dir/blobs/sha256/$(sha "$man")"

	printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
	{
		printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
		printf '"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
		printf '"digest":"sha256:%s","size":%s,' "$(sha "$man")" "$(size "$man")"
		printf '"annotations":{"org.opencontainers.image.ref.name":"%s:%s"}}]}\n' "$name" "$v"
	} >"$dir/index.json"

	rm -rf "${out:?}/web_$v"
	mv "$dir" "$out/web_$v"
	echo "images/build.sh: $name:$v -> $out/web_$v (manifest sha256:$(sha "$man" | cut -c1-12))"
}

build_image 1
build_image 2
echo "$inputs" >"$out/.inputs"
