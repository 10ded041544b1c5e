#!/usr/bin/env bats
# A hostile image or container against the runtime on this host (shoalrt, no lab needed):
# each case says what the attacker tried and what must hold afterwards.
#   - seccomp is an allowlist: io_uring, AF_VSOCK sockets, personality(READ_IMPLIES_EXEC),
#     user namespaces are refused; ordinary programs (busybox sh, httpd, wget) still work;
#   - a fork bomb in a container without --pids stops at the default limit;
#   - an image whose /proc and /sys are symlinks still gets procfs, sysfs and the masks;
#   - a decompression-bomb layer is refused and the store is left as it was.
# Images are the demo image shoal/web:1 (busybox-static, `make images`) plus one layer made
# here. Root only; everything lives under a temp --root in /tmp and cgroups under shoal/,
# removed in teardown whether the test passed or not.

bats_require_minimum_version 1.5.0

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

load helpers

setup_file() {
	shoalrt_setup || return 1
	export WEB1=$SHOAL_BIN/images/web_1
	export RT_ROOT WORK
	RT_ROOT=$(mktemp -d /tmp/shoal-hostile-rt.XXXXXX)
	WORK=$(mktemp -d /tmp/shoal-hostile-work.XXXXXX)
	"$SHOALRT" --root "$RT_ROOT" import "$WEB1" >/dev/null
	export IMG=shoal/web:1
	# test/probe:1: the demo image plus /bin/sysprobe (tests/tools/sysprobe.c), static as the
	# image has no libc.
	mkdir -p "$WORK/probe/bin"
	cc -static -O2 -o "$WORK/probe/bin/sysprobe" "$REPO/tests/tools/sysprobe.c"
	add_layer "$WEB1" "$WORK/probe.oci" test/probe:1 "$WORK/probe"
	"$SHOALRT" --root "$RT_ROOT" import "$WORK/probe.oci" >/dev/null
}

rt() {
	timeout 60 "$SHOALRT" --root "$RT_ROOT" "$@"
}

ids() {
	ls "$RT_ROOT/containers" 2>/dev/null || true
}

teardown() {
	local id p
	for id in $(ids); do
		"$SHOALRT" --root "$RT_ROOT" rm -f "$id" >/dev/null 2>&1 || true
	done
	for id in $(ids); do
		for p in $(grep -oE '"(shim_)?pid": [0-9]+' "$RT_ROOT/containers/$id/state.json" \
			2>/dev/null | grep -oE '[0-9]+$'); do
			[ "$p" -gt 1 ] && grep -q -- "$id" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p"
		done
		rmdir /sys/fs/cgroup/*/shoal/"$id" 2>/dev/null || true
		rm -rf "${RT_ROOT:?}/containers/$id"
	done
}

teardown_file() {
	[ -n "${RT_ROOT:-}" ] || return 0
	rm -rf "${RT_ROOT:?}" "${WORK:?}"
}

# add_layer SRC DST REF DIR: the OCI layout DST is SRC with DIR's content as one more layer
# (gzip), named REF.
add_layer() {
	local src=$1 dst=$2 ref=$3 dir=$4 man cfg diff lsha lsize csha csize msha msize
	rm -rf "$dst"
	cp -a "$src" "$dst"
	tar --sort=name --owner=0 --group=0 --numeric-owner -C "$dir" -cf "$dst/layer.tar" .
	diff=$(sha256sum "$dst/layer.tar" | cut -d' ' -f1)
	gzip -n -c "$dst/layer.tar" >"$dst/layer.tgz"
	rm "$dst/layer.tar"
	lsha=$(sha256sum "$dst/layer.tgz" | cut -d' ' -f1)
	lsize=$(stat -c %s "$dst/layer.tgz")
	mv "$dst/layer.tgz" "$dst/blobs/sha256/$lsha"
	man=$(jq -r '.manifests[0].digest' "$dst/index.json" | cut -d: -f2)
	cfg=$(jq -r '.config.digest' "$dst/blobs/sha256/$man" | cut -d: -f2)
	jq -c --arg d "sha256:$diff" '.rootfs.diff_ids += [$d]' "$dst/blobs/sha256/$cfg" >"$dst/cfg"
	csha=$(sha256sum "$dst/cfg" | cut -d' ' -f1)
	csize=$(stat -c %s "$dst/cfg")
	mv "$dst/cfg" "$dst/blobs/sha256/$csha"
	jq -c --arg c "sha256:$csha" --argjson cs "$csize" --arg l "sha256:$lsha" \
		--argjson ls "$lsize" '.config.digest = $c | .config.size = $cs |
		.layers += [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
		"digest": $l, "size": $ls}]' "$dst/blobs/sha256/$man" >"$dst/man"
	msha=$(sha256sum "$dst/man" | cut -d' ' -f1)
	msize=$(stat -c %s "$dst/man")
	mv "$dst/man" "$dst/blobs/sha256/$msha"
	jq -c --arg m "sha256:$msha" --argjson ms "$msize" --arg r "$ref" \
		'.manifests[0].digest = $m | .manifests[0].size = $ms |
		.manifests[0].annotations["org.opencontainers.image.ref.name"] = $r' \
		"$WEB1/index.json" >"$dst/index.json"
}

# A listing of everything in the store: what must not change when an import fails.
store_listing() {
	(cd "$RT_ROOT" && find . -path ./containers -prune -o -printf '%p %y %m %s\n' | sort &&
		find . -path ./containers -prune -o -type f -exec sha256sum {} + | sort)
}

@test "seccomp: io_uring, AF_VSOCK, READ_IMPLIES_EXEC, user namespaces are refused; busybox still serves" {
	# The attacker: root in a container, calling what Docker's default profile refuses.
	run rt run --rm test/probe:1 /bin/sysprobe
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"io_uring_setup EPERM"* ]]
	[[ "$output" == *"socket_vsock EPERM"* ]]
	# High bits the kernel ignores (it reads an int) must not sneak AF_VSOCK past the filter.
	[[ "$output" == *"socket_vsock_high EPERM"* ]]
	[[ "$output" == *"personality_read_implies_exec EPERM"* ]]
	[[ "$output" == *"unshare_user EPERM"* ]]
	# clone3: ENOSYS, so libc falls back to clone (whose namespace flags are checked).
	[[ "$output" == *"clone3 ENOSYS"* ]]
	[[ "$output" == *"socket_inet ok"* ]]
	[[ "$output" == *"personality_query ok"* ]]
	[[ "$output" == *"fork ok"* ]]
	# An allowlist must not break ordinary programs: httpd serving, wget fetching, sh piping.
	run rt run --rm "$IMG" sh -c 'httpd -p 127.0.0.1:8080 -h /www
		for i in 1 2 3 4 5 6 7 8 9 10; do
			out=$(timeout 5 wget -q -O - http://127.0.0.1:8080/healthz 2>&1) && break
			sleep 0.2
		done
		echo "healthz=$out"; echo abc | tr a-c x-z | sed "s/^/tr=/"; date +%Y >/dev/null && echo date-ok'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"healthz=ok"* ]]
	[[ "$output" == *"tr=xyz"* ]]
	[[ "$output" == *"date-ok"* ]]
}

@test "a fork bomb in a container without --pids stops at the default limit; the host can still fork" {
	# The limit first: were it missing, the bomb below would take the host's pids.
	id=$(rt run -d "$IMG" sleep 60)
	[ "$(cat "/sys/fs/cgroup/pids/shoal/$id/pids.max")" -eq 4096 ]
	# Every container together: 3/4 of the host's pids.
	max=$(cat /proc/sys/kernel/pid_max)
	tmax=$(cat /proc/sys/kernel/threads-max)
	[ "$tmax" -lt "$max" ] && max=$tmax
	[ "$(cat /sys/fs/cgroup/pids/shoal/pids.max)" -eq $((max / 4 * 3)) ]
	rt rm -f "$id" >/dev/null

	# The attacker: a process forking until fork fails (in C: a shell loop forks ~80/s here).
	id=$(rt run -d test/probe:1 /bin/sysprobe forkbomb)
	wait_bombed() { rt logs "$id" | grep -q '^forkbomb '; }
	for _ in $(seq 1 300); do wait_bombed && break; sleep 0.1; done
	run rt logs "$id"
	echo "$output"
	[[ "$output" =~ ^forkbomb\ ([0-9]+)\ EAGAIN$ ]]
	[ "${BASH_REMATCH[1]}" -le 4096 ]
	[ "${BASH_REMATCH[1]}" -ge 4000 ]
	[ "$(cat "/sys/fs/cgroup/pids/shoal/$id/pids.current")" -le 4096 ]
	# The host is unharmed: it can fork, and the runtime still answers.
	/bin/true
	rt ps >/dev/null
	rt rm -f "$id" >/dev/null
}

@test "an image whose /proc and /sys are symlinks still gets procfs, sysfs and the masks" {
	# The attacker: an image with /proc -> /tmp and /sys -> /tmp, so that the runtime's mounts
	# follow the links (from the host's side: onto the host's /tmp) and leave /proc unmasked.
	mkdir -p "$WORK/links"
	ln -sfn /tmp "$WORK/links/proc"
	ln -sfn /tmp "$WORK/links/sys"
	add_layer "$WEB1" "$WORK/links.oci" test/links:1 "$WORK/links"
	rt import "$WORK/links.oci" >/dev/null
	run rt run --rm test/links:1 sh -c '
		[ -L /proc ] && echo proc-is-link
		[ -L /sys ] && echo sys-is-link
		grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status
		echo "kcore=$(cat /proc/kcore 2>/dev/null | wc -c) keys=$(cat /proc/keys | wc -c)"
		echo 1 > /proc/sysrq-trigger 2>/dev/null || echo sysrq-ro
		touch /sys/x 2>/dev/null || echo sys-ro
		echo "firmware=$(ls /sys/firmware | wc -l)"
		echo "tmp=$(ls -A /tmp | wc -l)"'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *is-link* ]]
	[[ "$output" == *"Seccomp:	2"* ]]
	# no_new_privs follows Docker's default (off) unless asked for.
	[[ "$output" == *"NoNewPrivs:	0"* ]]
	[[ "$output" == *"kcore=0 keys=0"* ]]
	[[ "$output" == *sysrq-ro* ]]
	[[ "$output" == *sys-ro* ]]
	[[ "$output" == *"firmware=0"* ]]
	# procfs and sysfs are where they belong, not on /tmp.
	[[ "$output" == *"tmp=0"* ]]
	# And the image itself was not changed: its layer (stored under its diff_id) still holds
	# the links.
	local blobs=$WORK/links.oci/blobs/sha256 man cfg
	man=$blobs/$(jq -r '.manifests[0].digest' "$WORK/links.oci/index.json" | cut -d: -f2)
	cfg=$blobs/$(jq -r '.config.digest' "$man" | cut -d: -f2)
	[ -L "$RT_ROOT/layers/$(jq -r '.rootfs.diff_ids[-1]' "$cfg" | cut -d: -f2)/proc" ]
}

@test "a decompression-bomb layer (about 200 KiB of gzip, 200 MiB unpacked) is refused, the store unchanged" {
	# The attacker: an image whose layer is a tiny gzip of zeros.
	mkdir -p "$WORK/bomb"
	head -c $((200 << 20)) /dev/zero >"$WORK/bomb/zeros"
	add_layer "$WEB1" "$WORK/bomb.oci" test/bomb:1 "$WORK/bomb"
	rm -f "$WORK/bomb/zeros"
	before=$(store_listing)
	run rt import "$WORK/bomb.oci"
	echo "$output"
	[ "$status" -ne 0 ]
	[ "$(echo "$output" | wc -l)" -eq 1 ]
	[[ "$output" == *'at entry "./zeros": expands more than 100 times'* ]]
	[[ "$output" == *"refused as a decompression bomb"* ]]
	[[ "$output" == *"SHOAL_LAYER_MAX_RATIO"* ]]
	[ "$(store_listing)" = "$before" ]
	run rt images
	[[ "$output" != *test/bomb* ]]
	# The operator's way out: a higher ratio lets the same image in.
	SHOAL_LAYER_MAX_RATIO=0 rt import "$WORK/bomb.oci" >/dev/null
	rt images | grep -q test/bomb
	rt rmi test/bomb:1 >/dev/null
}
