#!/usr/bin/env bats
# The container runtime on this host: shoalrt run/ps/stop/kill/rm/logs/inspect against the
# demo image shoal/web:1 (busybox-static, from `make images`) imported by the real image
# store; isolation inside, limits, re-adoption, and removal that leaves nothing.
# Root only. Every container lives under a temp --root in /tmp and a cgroup under shoal/;
# teardown removes them whether the test passed or not.

bats_require_minimum_version 1.5.0

load helpers

setup_file() {
	shoalrt_setup || return 1
	local build=$SHOAL_BIN
	export RT_ROOT
	RT_ROOT=$(mktemp -d /tmp/shoal-rt.XXXXXX)
	export IMG=shoal/web:1
	# Under make check, the shim (and the container's child until its exec) run with ASan and
	# UBSan too, but the shim's stderr is /dev/null: reports go to files instead, and
	# teardown fails the test that produced one.
	if nm "$SHOALRT" 2>/dev/null | grep -q ' __asan_init'; then
		mkdir -p "$RT_ROOT/sanitizer"
		export ASAN_OPTIONS="log_path=$RT_ROOT/sanitizer/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
		export UBSAN_OPTIONS="print_stacktrace=1:log_path=$RT_ROOT/sanitizer/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
	fi
	"$SHOALRT" --root "$RT_ROOT" import "$build/images/web_1" >/dev/null
	# The image's layers as the store unpacked them, base first: by diff_id (the config's
	# rootfs.diff_ids, the uncompressed digests), whatever their compression.
	export LAYERS
	local blobs="$build/images/web_1/blobs/sha256" man
	man=$(jq -r '.manifests[0].digest' "$build/images/web_1/index.json" | cut -d: -f2)
	LAYERS=$(jq -r '.rootfs.diff_ids[]' "$blobs/$(jq -r .config.digest "$blobs/$man" | cut -d: -f2)" |
		cut -d: -f2)
	export TOP_LAYER="$RT_ROOT/layers/$(echo "$LAYERS" | tail -1)"
	# A checksum of the layers: the image is never written, whatever the containers do.
	layers_sum >"$RT_ROOT/layers.sum"
}

layers_sum() {
	(cd "$RT_ROOT/layers" && find . -printf '%p %m %s\n' | sort | md5sum)
}

rt() {
	timeout 30 "$SHOALRT" --root "$RT_ROOT" "$@"
}

ids() {
	ls "$RT_ROOT/containers" 2>/dev/null || true
}

# Nothing of container $1 (full id) may remain: state dir, cgroup, mount, live shim.
assert_gone() {
	local id=$1 c
	[ ! -e "$RT_ROOT/containers/$id" ]
	for c in /sys/fs/cgroup/*/shoal/"$id" /sys/fs/cgroup/shoal/"$id"; do
		[ ! -e "$c" ] || { echo "cgroup left: $c"; return 1; }
	done
	! grep -q "$id" /proc/mounts || { echo "mount left"; return 1; }
	! pgrep -f -- "--id $id" >/dev/null || { ps -f -p "$(pgrep -f -- "--id $id")"; return 1; }
}

teardown() {
	local id
	for id in $(ids); do
		"$SHOALRT" --root "$RT_ROOT" rm -f "$id" >/dev/null 2>&1 || true
	done
	# Whatever rm could not remove (a failed test mid-way): kill by recorded pid, then files.
	for id in $(ids); do
		local st="$RT_ROOT/containers/$id/state.json" p
		for p in $(grep -oE '"(shim_)?pid": [0-9]+' "$st" 2>/dev/null | grep -oE '[0-9]+$'); do
			[ "$p" -gt 1 ] && grep -q -- "$id" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p"
		done
		rmdir /sys/fs/cgroup/*/shoal/"$id" 2>/dev/null || true
		rm -rf "${RT_ROOT:?}/containers/$id"
	done
	rm -rf "${RT_ROOT:?}/names"
	if [ -n "$(ls "$RT_ROOT/sanitizer" 2>/dev/null)" ]; then
		cat "$RT_ROOT"/sanitizer/*
		rm -f "$RT_ROOT"/sanitizer/*
		return 1
	fi
}

teardown_file() {
	[ -n "${RT_ROOT:-}" ] || return 0
	rm -rf "${RT_ROOT:?}"
}

@test "run streams output and exits with the container's code" {
	run rt run --rm "$IMG" sh -c 'echo out; echo err >&2; exit 3'
	[ "$status" -eq 3 ]
	[[ "$output" == *out* ]]
	[[ "$output" == *err* ]]
	[ -z "$(ids)" ]
}

@test "a missing executable exits 127 with one clear line" {
	run -127 rt run --rm "$IMG" /bin/nope
	[ "$status" -eq 127 ]
	[ "$output" = "shoalrt: executable file not found: /bin/nope" ]
	[ -z "$(ids)" ]
}

@test "a start failing while the shim creates the cgroup leaves no cgroup, mount or shim" {
	# The layers gone from the store: the child's overlay mount fails while the shim, in
	# parallel, creates the container's cgroup. Both are undone; the container is recorded as
	# exited with the reason, as a failed start always is.
	mv "$RT_ROOT/layers" "$RT_ROOT/layers.away"
	run rt run --name broken "$IMG" true
	# (the store made an empty layers dir anew)
	rmdir "$RT_ROOT/layers" 2>/dev/null || true
	mv "$RT_ROOT/layers.away" "$RT_ROOT/layers"
	[ "$status" -eq 125 ]
	[[ "$output" == "shoalrt: mount overlay on "*"No such file or directory" ]]
	local id
	id=$(ids)
	[ ${#id} -eq 64 ]
	rt inspect broken | grep -q '"state": "exited"'
	for c in /sys/fs/cgroup/*/shoal/"$id"; do [ ! -e "$c" ] || { echo "left: $c"; false; }; done
	! grep -q "$id" /proc/mounts
	! pgrep -f -- "--id $id"
	rt rm broken
	assert_gone "$id"
}

@test "bad input prints one line and changes nothing" {
	run rt run nosuch:1 true
	[ "$status" -eq 1 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "shoalrt: "*nosuch* ]]
	run rt run --memory 12x "$IMG" true
	[ "$status" -eq 1 ]
	[ "$output" = 'shoalrt: memory: invalid size "12x" (want a number with Ki, Mi, Gi, k, M or G)' ]
	run rt run --cpus lots "$IMG" true
	[ "$status" -eq 1 ]
	[ -z "$(ids)" ]
	rt run -d --name taken "$IMG" sleep 30
	run rt run --name taken "$IMG" true
	[ "$status" -eq 1 ]
	[ "$output" = 'shoalrt: name "taken" is already in use' ]
	[ "$(ids | wc -l)" -eq 1 ]
}

@test "isolation: own pids, hostname, no mount, no modules, masked and read-only /proc" {
	: >"$RT_ROOT/fake.ko"
	run rt run --rm --hostname iso-test "$IMG" sh -c '
		echo "pid1=$(cat /proc/1/cmdline | tr "\0" " ")"
		echo "nprocs=$(ls -d /proc/[0-9]* | wc -l)"
		echo "host=$(hostname)"
		mount -t tmpfs none /mnt 2>&1 && echo "MOUNT""ED"
		echo x > /tmp/x.ko; insmod /tmp/x.ko 2>&1
		unshare -n true 2>&1 && echo "UNSHA""RED"
		echo "keys=$(cat /proc/keys | wc -c) timer_list=$(cat /proc/timer_list | wc -c)"
		[ -e /proc/kcore ] && echo "kcore=$(cat /proc/kcore | wc -c)"
		echo 1 > /proc/sys/kernel/domainname 2>&1 || echo procsys-ro
		echo 1 > /proc/sysrq-trigger 2>&1 || echo sysrq-ro
		touch /sys/x 2>&1 || echo sys-ro
		ls /sys/firmware | wc -l | sed "s/^/firmware=/"
		grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status
		ls /dev | tr "\n" " "; echo
		echo ok > /dev/null && echo devnull-ok'
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"pid1=sh -c "* ]]
	# sh, the $(...) subshell, ls, wc: nothing of the host.
	[[ "$output" =~ nprocs=[2-5]$'\n' ]]
	[[ "$output" == *"host=iso-test"* ]]
	[ "$(hostname)" != iso-test ]
	[[ "$output" != *MOUNTED* ]]
	[[ "$output" == *"insmod: can't insert '/tmp/x.ko': Operation not permitted"* ]]
	[[ "$output" != *UNSHARED* ]]
	[[ "$output" == *"keys=0 timer_list=0"* ]]
	[[ "$output" != *kcore=[1-9]* ]]
	[[ "$output" == *procsys-ro* ]]
	[[ "$output" == *sysrq-ro* ]]
	[[ "$output" == *sys-ro* ]]
	[[ "$output" == *"firmware=0"* ]]
	# Docker's default set: chown dac_override fowner fsetid kill setgid setuid setpcap
	# net_bind_service net_raw sys_chroot mknod audit_write setfcap.
	[[ "$output" == *"CapEff:	00000000a80425fb"* ]]
	[[ "$output" == *"CapBnd:	00000000a80425fb"* ]]
	# Docker's default: no no_new_privs (--no-new-privileges sets it, see below).
	[[ "$output" == *"NoNewPrivs:	0"* ]]
	[[ "$output" == *"Seccomp:	2"* ]]
	[[ "$output" == *"null pts random shm"* ]] || [[ "$output" == *"null ptmx pts random shm"* ]]
	[[ "$output" == *devnull-ok* ]]
}

@test "a node made with CAP_MKNOD cannot be opened (nodev)" {
	run rt run --rm "$IMG" sh -c 'mknod /tmp/m c 1 3 && cat /tmp/m; mknod /dev/m c 1 3 && cat /dev/m'
	echo "$output"
	[[ "$output" == *"can't open '/tmp/m': Permission denied"* ]]
	[[ "$output" == *"can't open '/dev/m': Permission denied"* ]]
}

@test "network none has only lo, up; host sees the host's interfaces" {
	run rt run --rm "$IMG" cat /proc/net/dev
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c ':')" -eq 1 ]
	[[ "$output" == *"lo:"* ]]
	run rt run --rm "$IMG" ip link show lo
	[[ "$output" == *"UP"* ]]
	run rt run --rm --network host "$IMG" cat /proc/net/dev
	[ "$(echo "$output" | grep -c ':')" -eq "$(grep -c ':' /proc/net/dev)" ]
}

@test "env, workdir and user come from the image unless overridden" {
	# shoal/web:1's config: Env PATH=/bin:/usr/bin:/sbin:/usr/sbin, WorkingDir /.
	run rt run --rm "$IMG" sh -c 'echo "$PATH $HOSTNAME $HOME $(pwd) $(id -u)"'
	[ "$status" -eq 0 ]
	[[ "$output" =~ ^/bin:/usr/bin:/sbin:/usr/sbin\ [0-9a-f]{12}\ /root\ /\ 0$ ]]
	run rt run --rm --env PATH=/bin --env NEW=x --workdir /tmp/w --user nobody "$IMG" \
		sh -c 'echo "$PATH $NEW $(pwd) $(id -u) $(grep CapEff /proc/self/status)"'
	[ "$status" -eq 0 ]
	[ "$output" = "/bin x /tmp/w 65534 CapEff:	0000000000000000" ]
}

@test "the image layer is never written" {
	run rt run --rm "$IMG" sh -c 'echo changed > /bin/busybox2; rm /www/healthz; echo x >> /etc/passwd
		[ ! -e /www/healthz ] && grep -q "^x$" /etc/passwd && echo changed-inside'
	[ "$output" = changed-inside ]
	layers_sum | diff - "$RT_ROOT/layers.sum"
	[ "$(cat "$TOP_LAYER/www/healthz")" = ok ]
}

@test "limits land in the v1 cgroup: cpus, memory, pids" {
	id=$(rt run -d --cpus 0.5 --memory 64Mi --pids 256 "$IMG" sleep 30)
	[ "$(cat /sys/fs/cgroup/cpu/shoal/$id/cpu.cfs_quota_us)" -eq 50000 ]
	[ "$(cat /sys/fs/cgroup/cpu/shoal/$id/cpu.cfs_period_us)" -eq 100000 ]
	[ "$(cat /sys/fs/cgroup/memory/shoal/$id/memory.limit_in_bytes)" -eq 67108864 ]
	[ "$(cat /sys/fs/cgroup/pids/shoal/$id/pids.max)" -eq 256 ]
	pid=$(rt inspect "$id" | grep '"pid":' | grep -oE '[0-9]+')
	grep -q "/shoal/$id" "/proc/$pid/cgroup"
	# Inside, its cgroup namespace is rooted at its own cgroup.
	run rt run --rm "$IMG" cat /proc/self/cgroup
	[[ "$output" == *"memory:/"$'\n'* ]] || [[ "$output" == *"memory:/" ]]
}

@test "OOM: allocating past --memory is killed: 137 and inspect says oom_killed" {
	run rt run --name oom --memory 16Mi "$IMG" sh -c 'x=$(head -c 40000000 /dev/zero | tr "\0" a); echo survived'
	[ "$status" -eq 137 ]
	[[ "$output" != *survived* ]]
	run rt inspect oom
	[[ "$output" == *'"oom_killed": true'* ]]
	[[ "$output" == *'"exit_code": 137'* ]]
	[[ "$output" == *'"state": "exited"'* ]]
}

@test "a fork bomb stops at --pids 32 and the host stays fine" {
	run timeout 20 "$SHOALRT" --root "$RT_ROOT" run --rm --pids 32 "$IMG" sh -c \
		'sh -c "while true; do sleep 100 & done" 2>/dev/null; set -- /proc/[0-9]*; echo procs=$#'
	echo "$output"
	[ "$status" -eq 0 ]
	n=${output#procs=}
	[ "$n" -le 32 ]
	[ "$n" -ge 20 ]
	/bin/true
}

@test "re-adoption: a detached container outlives shoalrt, a new shoalrt finds and stops it" {
	id=$(rt run -d --name bg "$IMG" sh -c 'trap "exit 0" TERM; while true; do sleep 0.1; done')
	[ ${#id} -eq 64 ]
	shim=$(grep -oE '"shim_pid": [0-9]+' "$RT_ROOT/containers/$id/state.json" | grep -oE '[0-9]+$')
	# The shim is nobody's child here: forked by shoalrt, which has exited, own session.
	[ "$(ps -o ppid= -p "$shim" | tr -d ' ')" != "$$" ]
	[ "$(ps -o sid= -p "$shim" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')" ]
	# Set up as an exec'd shoal-shim is: its name, /dev/null on 0-2, and of its starter's
	# fds only the sync socket (3); then the log, two output pipes and a signalfd.
	[ "$(cat "/proc/$shim/comm")" = shoal-shim ]
	for i in 0 1 2; do [ "$(readlink "/proc/$shim/fd/$i")" = /dev/null ]; done
	[[ "$(readlink "/proc/$shim/fd/3")" == socket:* ]]
	ls -l "/proc/$shim/fd"
	[ "$(ls "/proc/$shim/fd" | wc -l)" -eq 8 ]
	[ "$(pgrep -f -- "--id $id")" = "$shim" ]
	run rt ps
	[[ "$output" == *"bg"*"Up"* ]]
	run rt stop bg
	[ "$status" -eq 0 ]
	run rt inspect bg
	[[ "$output" == *'"state": "exited"'* ]]
	[[ "$output" == *'"exit_code": 0'* ]]
	run rt ps
	[[ "$output" != *bg* ]]
	run rt ps -a
	[[ "$output" == *"bg"*"Exited (0)"* ]]
}

@test "stop: a PID 1 that ignores SIGTERM (busybox httpd) dies at the deadline" {
	rt run -d --name web "$IMG" httpd -f -p 8080 -h /www
	sleep 0.2
	start=$(date +%s%N)
	run rt stop -t 2 web
	end=$(date +%s%N)
	[ "$status" -eq 0 ]
	ms=$(( (end - start) / 1000000 ))
	echo "stop took ${ms}ms"
	[ "$ms" -ge 1900 ]
	[ "$ms" -lt 5000 ]
	run rt inspect web
	[[ "$output" == *'"exit_code": 137'* ]]
	[[ "$output" == *'"exit_signal": 9'* ]]
}

@test "kill sends a signal; rm refuses a running container without -f" {
	rt run -d --name k "$IMG" sh -c 'trap "exit 7" USR1; while true; do sleep 0.1; done'
	run rt rm k
	[ "$status" -eq 1 ]
	[ "$output" = "shoalrt: container k is running: stop it first or use rm -f" ]
	rt kill -s USR1 k
	for _ in $(seq 50); do rt ps | grep -q ' k ' || break; sleep 0.1; done
	sleep 0.2
	run rt inspect k
	[[ "$output" == *'"exit_code": 7'* ]]
}

@test "rm leaves no mount, cgroup, shim or state directory" {
	id=$(rt run -d --memory 32Mi --pids 64 "$IMG" sleep 60)
	[ -d "/sys/fs/cgroup/memory/shoal/$id" ]
	rt rm -f "$id"
	assert_gone "$id"
	[ ! -e "$RT_ROOT/names/${id:0:12}" ]
	id2=$(rt run -d --name done "$IMG" true)
	sleep 0.3
	rt rm done
	assert_gone "$id2"
}

@test "--rm removes everything after the exit" {
	rt run --rm --name gone "$IMG" true
	[ -z "$(ids)" ]
	[ ! -e "$RT_ROOT/names/gone" ]
	# The name is free at once; the files, moved out of sight first, go right after.
	rt run --rm --name gone "$IMG" true
	for _ in $(seq 100); do
		[ -z "$(ls -A "$RT_ROOT/trash" 2>/dev/null)" ] && break
		sleep 0.1
	done
	[ -z "$(ls -A "$RT_ROOT/trash" 2>/dev/null)" ]
	[ -z "$(ls /sys/fs/cgroup/memory/shoal/ | grep -E '^[0-9a-f]{64}$' | while read -r c; do grep -l . /dev/null; done)" ]
}

@test "logs: --tail, -f, and rotation at 10 MiB" {
	rt run --name lg "$IMG" sh -c 'for i in 1 2 3 4 5; do echo line$i; done'
	run rt logs lg
	[ "${#lines[@]}" -eq 5 ]
	run rt logs --tail 2 lg
	[ "$output" = $'line4\nline5' ]
	rt run -d --name follow "$IMG" sh -c 'for i in 1 2 3; do echo f$i; sleep 0.2; done'
	run rt logs -f follow
	[ "$output" = $'f1\nf2\nf3' ]
	rt run --name big "$IMG" sh -c 'head -c 11000000 /dev/zero | tr "\0" x; echo; echo last' >/dev/null
	id=$(rt inspect big | grep '"id"' | grep -oE '[0-9a-f]{64}')
	[ -f "$RT_ROOT/containers/$id/log.1" ]
	[ "$(stat -c %s "$RT_ROOT/containers/$id/log")" -le 10485760 ]
	run rt logs --tail 1 big
	[ "$output" = last ]
}

@test "inspect reports id, name, image, pid, state, times, rootfs, cgroup" {
	id=$(rt run -d --name insp "$IMG" sleep 30)
	run rt inspect insp
	[ "$status" -eq 0 ]
	[[ "$output" == *"\"id\": \"$id\""* ]]
	[[ "$output" == *'"name": "insp"'* ]]
	[[ "$output" == *'"image": "shoal/web:1"'* ]]
	[[ "$output" == *"\"image_digest\": \"sha256:"* ]]
	[[ "$output" == *'"state": "running"'* ]]
	[[ "$output" =~ \"pid\":\ [1-9] ]]
	[[ "$output" =~ \"started\":\ \"20[0-9-]+T ]]
	[[ "$output" == *"\"rootfs\": \"$RT_ROOT/containers/$id/rootfs\""* ]]
	[[ "$output" == *"\"cgroup\": \"shoal/$id\""* ]]
	[[ "$output" == *'"ip": null'* ]]
	# The store's rmi keeps these layers while the container exists.
	[ "$(cat "$RT_ROOT/containers/$id/layers")" = "$LAYERS" ]
}

@test "the real image store: unknown images fail; rmi keeps a container's layers" {
	run rt run --rm nosuch:1 true
	[ "$status" -eq 1 ]
	[ "$output" = "shoalrt: no image nosuch:1" ]
	# A second image tag sharing the layers: removing it while a container of shoal/web:1
	# exists must leave every layer the container lists.
	rt import "$(dirname "$SHOALRT")/images/web_1" other/web:1 >/dev/null
	id=$(rt run -d --name pinned other/web:1 sleep 30)
	rt rmi other/web:1
	rt rmi "$IMG"
	for l in $LAYERS; do [ -d "$RT_ROOT/layers/$l" ]; done
	rt rm -f pinned
	assert_gone "$id"
	# Put the image back for any test after this one.
	rt import "$(dirname "$SHOALRT")/images/web_1" >/dev/null
	layers_sum | diff - "$RT_ROOT/layers.sum"
}

# caps_image: shoal/web:1 plus a layer holding /bin/busyboxcap, busybox with the file
# capability cap_net_bind_service+ep (as a non-root nginx gets it), imported as caps/web:1.
caps_image() {
	local src dir w tar ld cfg man newcfg newman
	src=$(dirname "$SHOALRT")/images/web_1
	dir=$RT_ROOT/capsimg
	w=$RT_ROOT/capslayer
	rm -rf "$dir" "$w"
	cp -r "$src" "$dir"
	mkdir -p "$w/bin"
	cp /bin/busybox "$w/bin/busyboxcap"
	setcap cap_net_bind_service+ep "$w/bin/busyboxcap"
	tar=$RT_ROOT/caps.tar
	tar --xattrs --xattrs-include=security.capability --numeric-owner --owner=0 --group=0 \
		-C "$w" -cf "$tar" bin/busyboxcap
	ld=$(sha256sum <"$tar" | cut -d' ' -f1)
	cp "$tar" "$dir/blobs/sha256/$ld"
	man=$(jq -r '.manifests[0].digest' "$dir/index.json" | cut -d: -f2)
	cfg=$(jq -r .config.digest "$dir/blobs/sha256/$man" | cut -d: -f2)
	newcfg=$RT_ROOT/caps.cfg
	jq -c --arg d "sha256:$ld" '.rootfs.diff_ids += [$d]' "$dir/blobs/sha256/$cfg" >"$newcfg"
	cp "$newcfg" "$dir/blobs/sha256/$(sha256sum <"$newcfg" | cut -d' ' -f1)"
	newman=$RT_ROOT/caps.man
	jq -c --arg c "sha256:$(sha256sum <"$newcfg" | cut -d' ' -f1)" \
		--argjson cs "$(stat -c %s "$newcfg")" --arg l "sha256:$ld" \
		--argjson ls "$(stat -c %s "$tar")" \
		'.config.digest = $c | .config.size = $cs | .layers += [{"mediaType":
		"application/vnd.oci.image.layer.v1.tar", "digest": $l, "size": $ls}]' \
		"$dir/blobs/sha256/$man" >"$newman"
	cp "$newman" "$dir/blobs/sha256/$(sha256sum <"$newman" | cut -d' ' -f1)"
	jq -c --arg m "sha256:$(sha256sum <"$newman" | cut -d' ' -f1)" \
		--argjson ms "$(stat -c %s "$newman")" \
		'.manifests[0].digest = $m | .manifests[0].size = $ms |
		.manifests[0].annotations["org.opencontainers.image.ref.name"] = "caps/web:1"' \
		"$src/index.json" >"$dir/index.json"
	rt import "$dir" >/dev/null
}

# As a non-root user, the file capability raises CapEff to cap_net_bind_service (bit 10) and
# lets httpd bind port 80, unless no_new_privs is set.
CAPS_PROBE='grep NoNewPrivs /proc/self/status
	busyboxcap grep CapEff /proc/self/status
	busyboxcap httpd -f -p 80 -h /www 2>&1 & sleep 0.5
	kill -0 $! 2>/dev/null && echo BOUND80'

@test "file capabilities in an image work as under Docker; --no-new-privileges disables them" {
	command -v setcap >/dev/null || skip "setcap missing (libcap2-bin)"
	caps_image
	run rt run --rm --user nobody caps/web:1 sh -c "$CAPS_PROBE"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"NoNewPrivs:	0"* ]]
	[[ "$output" == *"CapEff:	0000000000000400"* ]]
	[[ "$output" == *BOUND80* ]]
	run rt run --rm --no-new-privileges --user nobody caps/web:1 sh -c "$CAPS_PROBE"
	echo "$output"
	[[ "$output" == *"NoNewPrivs:	1"* ]]
	[[ "$output" != *"CapEff:	0000000000000400"* ]]
	[[ "$output" != *BOUND80* ]]
	# shoalrt inspect shows the setting; an exec into the container takes the init's.
	id=$(rt run -d --no-new-privileges caps/web:1 sleep 30)
	rt inspect "$id" | grep -q '"no_new_privileges": true'
	run rt exec "$id" grep NoNewPrivs /proc/self/status
	[ "$output" = "NoNewPrivs:	1" ]
	id2=$(rt run -d caps/web:1 sleep 30)
	rt inspect "$id2" | grep -q '"no_new_privileges": false'
	run rt exec "$id2" grep NoNewPrivs /proc/self/status
	[ "$output" = "NoNewPrivs:	0" ]
}

@test "SHOALRT_TRACE times each phase of a start in shoalrt, the shim and the container" {
	local f="$BATS_TEST_TMPDIR/trace"
	SHOALRT_TRACE=$f rt run --rm "$IMG" sh -c 'ls /proc/self/fd | tr "\n" " "' >"$BATS_TEST_TMPDIR/fds"
	cat "$f"
	# The trace file never reaches the container: stdio and ls's own directory fd only.
	[ "$(cat "$BATS_TEST_TMPDIR/fds")" = "0 1 2 3 " ]
	local rt_pid shim_pid
	rt_pid=$(awk '$1 == "shoalrt-exec" { print $2 }' "$f")
	# The shim is a fork of shoalrt, not an exec of shoal-shim (nor a reload of its state).
	! grep -Eq '^(shim-exec|shim-load) ' "$f"
	shim_pid=$(awk '$1 == "shim-forked" { print $2 }' "$f")
	[ -n "$rt_pid" ] && [ -n "$shim_pid" ] && [ "$rt_pid" != "$shim_pid" ]
	# The phases of one start, in order on the one monotonic clock, each by its process:
	# the container's child is PID 1 of its namespace.
	local want="shoalrt-exec:$rt_pid image-lookup:$rt_pid create-state:$rt_pid
		shim-fork:$rt_pid shim-forked:$shim_pid shim-seccomp-load:$shim_pid
		ct-clone:1 ct-overlay:1 ct-mounts:1 ct-cgroup-join:1 ct-pivot-root:1
		ct-seccomp-execve:1 shim-exec-seen:$shim_pid started-reported:$rt_pid
		exit-reaped:$shim_pid exit-files-rm:$shim_pid exit-reported:$rt_pid"
	local prev=0 p line
	for p in $want; do
		line=$(awk -v n="${p%%:*}" '$1 == n' "$f")
		[ "$(echo "$line" | wc -l)" -eq 1 ] || { echo "phase ${p%%:*}: '$line'"; return 1; }
		read -r _ pid mono _ <<<"$line"
		[ "$pid" = "${p#*:}" ] || { echo "phase $p: pid $pid"; return 1; }
		[ "$mono" -ge "$prev" ] || { echo "phase $p before the one above"; return 1; }
		prev=$mono
	done
	# The shim creates the cgroup after the clone, while the child builds its root; the
	# child joins it only once it exists, before anything of the image runs.
	local clone cg join
	clone=$(awk '$1 == "shim-clone-start" { print $3 }' "$f")
	cg=$(awk '$1 == "shim-cgroup" && $2 == '"$shim_pid"' { print $3 }' "$f")
	join=$(awk '$1 == "ct-cgroup-join" { print $3 }' "$f")
	[ -n "$cg" ] && [ "$clone" -le "$cg" ] && [ "$cg" -le "$join" ]
}

@test "shoalrt loads none of the image libraries; its pull, push and import still work" {
	# libcurl and libarchive bring ~45 shared libraries, loaded at every exec: they belong
	# to shoalrt-image, which shoalrt runs for the verbs that need them.
	! readelf -d "$SHOALRT" | grep -E 'NEEDED.*(curl|archive|crypto)'
	readelf -d "${SHOALRT%/*}/shoalrt-image" | grep -q 'NEEDED.*curl'
	run rt import --help
	[ "$status" -eq 0 ]
	[[ "$output" == "usage: shoalrt import PATH [NAME:TAG]"* ]]
	local build=${SHOAL_SHIM%/*}
	run rt import "$build/images/web_2" shoal/traced:2
	[ "$status" -eq 0 ]
	[[ "$output" == "imported shoal/traced:2 sha256:"* ]]
	rt rmi shoal/traced:2
	run rt pull --insecure-registry 127.0.0.1:1 127.0.0.1:1/none:1
	[ "$status" -eq 1 ]
	[[ "$output" == "shoalrt: "*127.0.0.1:1* ]]
	run rt nosuchverb
	[ "$status" -eq 1 ]
	[[ "$output" == 'shoalrt: unknown verb "nosuchverb"'* ]]
}

@test "the agent's in-process start (container_start via the shim server) confines as run does" {
	# tests/tools/rtinproc starts containers as the agent does: in-process, through a shim
	# server it spawns once (runtime/shim.h). Its shims are no child of the starter, and its
	# containers get the same namespaces, seccomp filter and no_new_privs as shoalrt run's.
	local dir=$BATS_TEST_TMPDIR tools=$SHOAL_BIN/tests/tools pid server out w
	local probe='echo "$$ $(grep Seccomp: /proc/self/status | cut -f2) $(grep NoNewPrivs: /proc/self/status | cut -f2) $(hostname)"'
	mkfifo "$dir/in"
	timeout 30 "$tools/rtinproc" "$RT_ROOT" "$IMG" sh -c "$probe" <"$dir/in" >"$dir/out" &
	pid=$!
	exec {w}>"$dir/in"
	echo go >&"$w"
	wait_until 10 test -s "$dir/out"
	read -r _ st ctpid seccomp nnp host <"$dir/out"
	[ "$st" = 0 ] && [ "$ctpid" = 1 ] && [ "$seccomp" = 2 ] && [ "$nnp" = 1 ]
	[ "$host" != "$(hostname)" ]
	# (its spare, forked ahead for the next start, is its child: not ours either)
	server=$(pgrep -P "$(pgrep -P "$pid")" -f -- 'shoal-shim --server')
	[ -n "$server" ]
	# It leaves with its starter: EOF on its socket.
	exec {w}>&-
	wait "$pid"
	wait_until 10 bash -c "! kill -0 $server 2>/dev/null"
	[ -z "$(ids)" ]
	# A shim that is no server (an older one): the start execs it instead, as before.
	printf '#!/bin/sh\n[ "$1" = --server ] && exit 2\nexec %s "$@"\n' "$SHOAL_SHIM" >"$dir/oldshim"
	chmod +x "$dir/oldshim"
	out=$(echo go | SHOAL_SHIM=$dir/oldshim timeout 30 "$tools/rtinproc" "$RT_ROOT" "$IMG" sh -c "$probe")
	[[ "$out" == *" 0 1 2 1 "* ]]
	# Six starts at once from six threads (the agent's op threads when replicas come in a
	# batch), serialised on the one server socket: each gets a confined container and its own
	# output back.
	timeout 60 "$tools/rtinproc" -j 6 "$RT_ROOT" "$IMG" sh -c "$probe" <<<go >"$dir/par"
	[ "$(grep -c ' 0 1 2 1 ' "$dir/par")" -eq 6 ]
	[ "$(awk '{ print $6 }' "$dir/par" | sort -u | wc -l)" -eq 6 ]
	[ -z "$(ids)" ]
}
