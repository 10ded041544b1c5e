#!/usr/bin/env bash
# shellcheck disable=SC2016 # single-quoted $EPOCHREALTIME is for the container's shell
# Container start times: shoalrt vs crun vs plain fork+exec, on this machine, in one run.
#   bench/runtime.sh [N]        (N interleaved runs per row, default 100; root)
#   BENCH_AB=DIR bench/runtime.sh   adds rows for the shoalrt/shoal-shim built in DIR (an A/B
#                                   of a change, measured in the same interleaved run)
#
# 1. start-to-exit of /bin/true in a fresh container from shoal/web:1: `shoalrt run --rm`
#    (network none, and bridge: a veth pair onto a bridge, eth0 addressed, default route),
#    `crun run` on a bundle of the same rootfs with an equivalent config.json, and fork+exec of
#    /bin/true as the floor. Median, p95, ratio to crun.
# 2. start request -> the container's execve: the container runs busybox sh printing
#    $EPOCHREALTIME (its first act after exec), minus the timestamp taken just before the start
#    command (the same busybox sh forked directly is the floor row).
#    Two paths: the CLI's (`shoalrt run`, whose own exec is part of the interval; it forks
#    its shim, runtime/shim.h), and the agent's: the agent never execs shoalrt, it calls the
#    runtime library in-process (agent/tasks_op.c: container_create_from_image, then
#    container_start, which execs shoal-shim). tests/tools/rtinproc does the same, a long-lived
#    threaded process started once, one start per request, timed from just before the call.
# 3. where the time of a `shoalrt run --rm` goes, phase by phase: the same start traced with
#    SHOALRT_TRACE (runtime/trace.h) in each process, medians by bench/phases.awk; and the
#    same for the agent's path (rtinproc).
# 4. `shoalrt run --detach` -> busybox httpd of shoal/web:1 accepting a TCP connection on a free
#    127.0.0.1 port (--network host).
#
# The equivalent crun config: namespaces pid, mount, uts, ipc, network and cgroup; Docker's 14
# default capabilities, no_new_privs; the same masked and read-only paths; the same cgroup
# limits (cpu quota 1 CPU, memory 256 MiB without swap, pids 1024); /proc, a tmpfs /dev with
# devpts and shm, read-only /sys; and a Docker-style seccomp profile in config.json: an
# allowlist (default EPERM) of every x86_64 syscall except those runtime/seccomp.c refuses,
# clone with namespace flags refused, clone3 ENOSYS, for x86_64, x86 and x32. crun compiles it
# with libseccomp at every start; shoalrt compiles its filter once and caches the BPF.
# crun gets the rootfs as an overlay of the same store layers, mounted once for all its runs;
# shoalrt mounts a fresh overlay per container (its upper dir is the container's own).
#
# crun 1.8 refuses this host's hybrid cgroup layout, so everything runs in a private
# mount namespace with /sys/fs/cgroup/unified unmounted; shoalrt ignores that tree anyway. It
# also runs in a private network namespace (lo up), where the bridge rows get their own bridge:
# the host's network is never touched.
set -euo pipefail
N=${1:-100}
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ "$(id -u)" -eq 0 ] || { echo "bench/runtime.sh: needs root" >&2; exit 1; }
for t in crun python3; do
	command -v $t >/dev/null || { echo "bench/runtime.sh: needs $t (bash vagrant/provision/deps.sh --bench)" >&2; exit 1; }
done
bin=$(cd "$BUILD" && pwd)
if [ ! -x "$bin/shoalrt" ] || [ ! -x "$bin/shoal-shim" ] || [ ! -x "$bin/tests/tools/rtinproc" ]; then
	echo "bench/runtime.sh: run make first" >&2
	exit 1
fi

if [ -z "${SHOAL_BENCH_INNER:-}" ]; then
	make -s BUILD="$BUILD" images >/dev/null
	export SHOAL_BENCH_INNER=1
	exec unshare -m -n --propagation private bash -c \
		'ip link set lo up; umount /sys/fs/cgroup/unified 2>/dev/null || true; exec "$0" "$@"' \
		"$0" "$N"
fi

work=$(mktemp -d /tmp/shoal-bench.XXXXXX)
root=$work/root
cid=shoal-bench-$$
cleanup() {
	local d p
	# The in-process starters end at EOF on their requests, after their last start.
	for p in "${inproc_pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	for d in "$root"/containers/*; do
		[ -d "$d" ] && "$bin/shoalrt" --root "$root" rm -f "${d##*/}" >/dev/null 2>&1
	done
	crun delete -f "$cid" >/dev/null 2>&1 || true
	umount "$work/rootfs" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
# BENCH_KEEP=1 keeps the work dir (store, bundles) for profiling by hand.
[ -z "${BENCH_KEEP:-}" ] || trap - EXIT
export SHOAL_SHIM="$bin/shoal-shim"
rt() { "$bin/shoalrt" --root "$root" "$@"; }
ab=${BENCH_AB:-}
rt_ab() { SHOAL_SHIM="$ab/shoal-shim" "$ab/shoalrt" --root "$root" "$@"; }
declare -a inproc_pids=()

rt import "$bin/images/web_1" >/dev/null
layers=$(python3 - "$bin/images/web_1" <<'PY'
import json, sys
d = sys.argv[1]
ix = json.load(open(d + "/index.json"))
blob = lambda dg: d + "/blobs/sha256/" + dg.split(":")[1]
m = json.load(open(blob(ix["manifests"][0]["digest"])))
# The store unpacks a layer under its diff_id (the uncompressed digest, in the config).
ids = json.load(open(blob(m["config"]["digest"])))["rootfs"]["diff_ids"]
# overlayfs wants the nearest parent first.
print(":".join(reversed([i.split(":")[1] for i in ids])))
PY
)
lower=$(echo "$layers" | tr ':' '\n' | sed "s|^|$root/layers/|" | paste -sd:)
mkdir -p "$work/rootfs" "$work/upper" "$work/ovwork"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$work/upper,workdir=$work/ovwork" \
	"$work/rootfs"

# Two bundles on that rootfs: /bin/true, and sh printing its exec time.
for b in true stamp; do
	mkdir -p "$work/bundle-$b"
	(cd "$work/bundle-$b" && crun spec)
done
python3 - "$work" "$(ulimit -Hn)" runtime/seccomp.c /usr/include/x86_64-linux-gnu/asm/unistd_64.h <<'PY'
import json, re, sys
work, nofile, seccomp_c, unistd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
src = open(seccomp_c).read()
# The same allowlist as runtime/seccomp.c's: its allowed[] names, socket without AF_ALG and
# AF_VSOCK, Docker's personality values, clone without namespace flags, clone3 ENOSYS.
start = src.index("allowed[] = {")
allowed = sorted(set(re.findall(r'"(\w+)"', src[start:src.index("};", start)])))
known = set(re.findall(r"#define __NR_(\w+)", open(unistd).read()))
names = [n for n in allowed if n in known]
NS = 0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x02000000
caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
for b, args in (("true", ["/bin/true"]), ("stamp", ["/bin/sh", "-c", "echo $EPOCHREALTIME"])):
    p = f"{work}/bundle-{b}/config.json"
    c = json.load(open(p))
    pr = c["process"]
    pr["terminal"] = False
    pr["args"] = args
    pr["env"] = ["PATH=/bin:/usr/bin:/sbin:/usr/sbin", "HOME=/root"]
    pr["noNewPrivileges"] = True
    pr["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps,
                          "inheritable": [], "ambient": []}
    pr["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}]
    c["root"] = {"path": f"{work}/rootfs", "readonly": False}
    c["hostname"] = "bench"
    # shoalrt mounts no mqueue and no cgroupfs inside.
    c["mounts"] = [m for m in c["mounts"] if m["destination"] not in ("/dev/mqueue", "/sys/fs/cgroup")]
    lx = c["linux"]
    lx["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    lx["maskedPaths"] = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                         "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                         "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                         "/sys/devices/virtual/powercap"]
    lx["readonlyPaths"] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    # No device cgroup rules: shoalrt's /dev and rootfs are nodev instead.
    lx["resources"] = {"memory": {"limit": 256 << 20, "swap": 256 << 20},
                       "pids": {"limit": 1024},
                       "cpu": {"quota": 100000, "period": 100000}}
    lx["cgroupsPath"] = "shoal/crun-bench"
    lx["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"}]},
        ] + [
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": f, "op": "SCMP_CMP_EQ"}]}
            for f in range(39, 64) if f != 40
        ] + [
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}
            for v in (0x0, 0x0008, 0x20000, 0x20008, 0xffffffff)
        ] + [
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": NS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]}
    json.dump(c, open(p, "w"), indent=1)
PY

# --no-new-privileges: crun's config sets noNewPrivileges, so both do the same work.
lim=(--cpus 1 --memory 256Mi --pids 1024 --no-new-privileges)
# The bridge rows' bridge, in this private network namespace (gone with it).
ip link add shoalbench0 type bridge
ip addr add 10.99.0.1/24 dev shoalbench0
ip link set shoalbench0 up
brnet=(--network bridge --ip 10.99.0.2/24 --gateway 10.99.0.1 --bridge shoalbench0)
# Timestamps in microseconds, read by this shell itself: a $(...) to get one would fork a
# subshell whose exit and reaping then sit inside every interval, inflating the floor rows
# most (they used to: 6-10 ms for fork+exec of /bin/true instead of ~3).
# Warm-up: page cache, the seccomp BPF cache file; and a check that each path works.
rt run --rm "${lim[@]}" shoal/web:1 /bin/true
rt run --rm "${lim[@]}" "${brnet[@]}" shoal/web:1 /bin/true
crun run --bundle "$work/bundle-true" "$cid"
[ "$(crun run --bundle "$work/bundle-stamp" "$cid" | cut -d. -f1)" -gt 0 ]

# The agent's path: rtinproc NAME SHIM TOOL [TRACE] starts a tests/tools/rtinproc (the same
# limits as lim, network none, --rm) fed one line per start through fifos; its fds are then
# ${NAME_w} (requests) and ${NAME_r} (replies "START_US STATUS OUTPUT").
rtinproc() {
	mkfifo "$work/$1.in" "$work/$1.out"
	SHOAL_SHIM=$2 SHOALRT_TRACE=${4:-} "$3" "$root" shoal/web:1 /bin/sh -c 'echo $EPOCHREALTIME' \
		<"$work/$1.in" >"$work/$1.out" &
	inproc_pids+=($!)
	eval "exec {${1}_w}>\"\$work/$1.in\" {${1}_r}<\"\$work/$1.out\""
}
# One start through it: the interval from its start to the container's exec in x_NAME.
inproc_start() {
	local w=${1}_w r=${1}_r s st x
	echo go >&"${!w}"
	read -r s st x <&"${!r}"
	[ "$st" = 0 ] || { echo "bench/runtime.sh: $1: container exited $st" >&2; exit 1; }
	eval "x_$1+=(\$((\${x/./} - s)))"
}
rtinproc ip "$bin/shoal-shim" "$bin/tests/tools/rtinproc"
rtinproc iptr "$bin/shoal-shim" "$bin/tests/tools/rtinproc" "$work/agent-trace"
inproc_start ip
inproc_start iptr
x_ip=()
ab_ip=
if [ -n "$ab" ] && [ -x "$ab/tests/tools/rtinproc" ]; then
	ab_ip=1
	rtinproc ipab "$ab/shoal-shim" "$ab/tests/tools/rtinproc"
	inproc_start ipab
	# shellcheck disable=SC2034 # filled by inproc_start, read by abrow (by name)
	x_ipab=()
fi

declare -a t_shoal t_bridge t_crun t_fork x_shoal x_crun x_fork t_ab x_ab x_ip
[ -z "$ab" ] || rt_ab run --rm "${lim[@]}" shoal/web:1 /bin/true
for ((i = 0; i < N; i++)); do
	if [ -n "$ab" ]; then
		s=${EPOCHREALTIME/./}; rt_ab run --rm "${lim[@]}" shoal/web:1 /bin/true; e=${EPOCHREALTIME/./}
		t_ab+=($((e - s)))
		s=${EPOCHREALTIME/./}; x=$(rt_ab run --rm "${lim[@]}" shoal/web:1 /bin/sh -c 'echo $EPOCHREALTIME')
		x_ab+=($((${x/./} - s)))
	fi
	s=${EPOCHREALTIME/./}; rt run --rm "${lim[@]}" shoal/web:1 /bin/true; e=${EPOCHREALTIME/./}
	t_shoal+=($((e - s)))
	s=${EPOCHREALTIME/./}; rt run --rm "${lim[@]}" "${brnet[@]}" shoal/web:1 /bin/true; e=${EPOCHREALTIME/./}
	t_bridge+=($((e - s)))
	s=${EPOCHREALTIME/./}; crun run --bundle "$work/bundle-true" "$cid"; e=${EPOCHREALTIME/./}
	t_crun+=($((e - s)))
	s=${EPOCHREALTIME/./}; /bin/true; e=${EPOCHREALTIME/./}
	t_fork+=($((e - s)))

	s=${EPOCHREALTIME/./}; x=$(rt run --rm "${lim[@]}" shoal/web:1 /bin/sh -c 'echo $EPOCHREALTIME')
	x_shoal+=($((${x/./} - s)))
	s=${EPOCHREALTIME/./}; x=$(crun run --bundle "$work/bundle-stamp" "$cid")
	x_crun+=($((${x/./} - s)))
	s=${EPOCHREALTIME/./}; x=$(/bin/busybox sh -c 'echo $EPOCHREALTIME')
	x_fork+=($((${x/./} - s)))
	inproc_start ip
	[ -z "$ab_ip" ] || inproc_start ipab
	inproc_start iptr

	# The same start traced phase by phase (runtime/trace.h), with this script's own clock
	# before the exec and after the exit.
	tr=$work/trace.$i
	echo "bench-start 0 0 ${EPOCHREALTIME/./}" >"$tr"
	SHOALRT_TRACE=$tr rt run --rm "${lim[@]}" shoal/web:1 /bin/true
	echo "bench-end 0 0 ${EPOCHREALTIME/./}" >>"$tr"
done

# Detached start -> the web server accepts: connect() every 0.2 ms until it succeeds.
D=$((N / 5 < 10 ? 10 : N / 5))
accept=$(python3 - "$bin/shoalrt" "$root" "$D" <<'PY'
import socket, subprocess, sys, time
shoalrt, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = []
for _ in range(n):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    t0 = time.perf_counter()
    cid = subprocess.run([shoalrt, "--root", root, "run", "-d", "--network", "host",
                          "--cpus", "1", "--memory", "256Mi", "--pids", "1024", "shoal/web:1",
                          "/bin/httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
                         check=True, capture_output=True, text=True).stdout.strip()
    t1 = time.perf_counter()
    while True:
        c = socket.socket()
        try:
            c.connect(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            time.sleep(0.0002)
        finally:
            c.close()
        if time.perf_counter() - t0 > 5:
            sys.exit("httpd never accepted")
    t2 = time.perf_counter()
    out.append(f"{int((t1 - t0) * 1e6)} {int((t2 - t0) * 1e6)}")
    subprocess.run([shoalrt, "--root", root, "rm", "-f", cid], check=True, capture_output=True)
print("\n".join(out))
PY
)

# "median p95" in ms of the microsecond values given.
stats() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
		i = int(NR * 0.95 + 0.5); if (i < 1) i = 1
		printf "%.2f %.2f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) / 1000, v[i] / 1000 }'
}
row() { # label median p95 [crun median]
	if [ -n "${4:-}" ]; then
		printf '  %-34s %9s %9s %8.2fx\n' "$1" "$2" "$3" "$(echo "$2 / $4" | bc -l)"
	else
		printf '  %-34s %9s %9s %9s\n' "$1" "$2" "$3" "-"
	fi
}
abrow() { # label array: its row vs crun's median $cm
	local -n v=$2
	local m p
	read -r m p < <(stats "${v[@]}")
	row "$1" "$m" "$p" "$cm"
}
read -r sm sp < <(stats "${t_shoal[@]}")
read -r cm cp < <(stats "${t_crun[@]}")
read -r fm fp < <(stats "${t_fork[@]}")
echo "runtime: start-to-exit of /bin/true in a fresh container of shoal/web:1 ($N runs, interleaved)"
printf '  %-34s %9s %9s %9s\n' "" "median ms" "p95 ms" "vs crun"
row "shoalrt run --rm" "$sm" "$sp" "$cm"
read -r bm bp < <(stats "${t_bridge[@]}")
row "shoalrt run --rm --network bridge" "$bm" "$bp" "$cm"
[ -z "$ab" ] || abrow "shoalrt run --rm (A/B: \$BENCH_AB)" t_ab
row "crun run (equivalent config.json)" "$cm" "$cp" "$cm"
row "fork+exec /bin/true (floor)" "$fm" "$fp" "$cm"
read -r sm sp < <(stats "${x_shoal[@]}")
read -r cm cp < <(stats "${x_crun[@]}")
read -r fm fp < <(stats "${x_fork[@]}")
echo "runtime: start request -> container's execve (sh prints \$EPOCHREALTIME; $N runs, interleaved)"
row "CLI: shoalrt run --rm" "$sm" "$sp" "$cm"
[ -z "$ab" ] || abrow "CLI: shoalrt run --rm (A/B)" x_ab
read -r im ip < <(stats "${x_ip[@]}")
row "agent: in-process container_start" "$im" "$ip" "$cm"
[ -z "$ab_ip" ] || abrow "agent: in-process (A/B)" x_ipab
row "crun run" "$cm" "$cp" "$cm"
row "fork+exec busybox sh (floor)" "$fm" "$fp" "$cm"
printf '  CLI / floor: %.2fx, agent / floor: %.2fx (issue 18 target: <= 2x)\n' \
	"$(echo "$sm / $fm" | bc -l)" "$(echo "$im / $fm" | bc -l)"
echo "runtime: where shoalrt run --rm of /bin/true spends its time (SHOALRT_TRACE; $N runs)"
echo "  (each phase: time since the mark before it on the start's timeline; bench-start is"
echo "  this script's clock before it forks shoalrt, bench-end after shoalrt exited)"
awk -f bench/phases.awk "$work"/trace.*
echo "runtime: where the agent's in-process start of sh spends its time (rtinproc, SHOALRT_TRACE;"
echo "  $N runs; bench-start is just before container_create_from_image, bench-end after the exit)"
# One file per start, as phases.awk wants (the first start was the warm-up).
awk -v d="$work" '/^bench-start/ { f = d "/atrace." ++n } n > 1 { print > f }' "$work/agent-trace"
awk -v caller=agent -f bench/phases.awk "$work"/atrace.*
mapfile -t a_ret < <(echo "$accept" | cut -d' ' -f1)
mapfile -t a_acc < <(echo "$accept" | cut -d' ' -f2)
read -r dm dp < <(stats "${a_ret[@]}")
read -r am ap < <(stats "${a_acc[@]}")
echo "runtime: shoalrt run --detach of shoal/web:1 httpd, --network host on 127.0.0.1 ($D runs)"
row "run -d returns" "$dm" "$dp"
row "run -d -> httpd accepts a connection" "$am" "$ap"
