#!/usr/bin/env bash
# Container start-to-exit of /bin/true: shoalrt vs crun vs plain fork+exec, N interleaved runs
# (default 100), medians and p90 in ms. Root. Needs build/shoal-shim and the runtime objects.
#   bench/runtime.sh [N]
# crun 1.8 refuses this host's hybrid cgroup layout, so (as FACTS.md says) everything runs in
# a private mount namespace with /sys/fs/cgroup/unified unmounted; shoalrt ignores that tree
# anyway. Until runtime/image.c is on the branch, shoalrt is the test build with
# tests/unit/image_fake.c (image lookup is a small JSON read either way).
set -euo pipefail
N=${1:-100}
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
bin=$(cd "$BUILD" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "bench/runtime.sh: needs root" >&2; exit 1; }
command -v crun >/dev/null || { echo "bench/runtime.sh: needs crun (apt-get install crun)" >&2; exit 1; }

if [ "${1:-}" != --inner ] && [ -z "${SHOAL_BENCH_INNER:-}" ]; then
	export SHOAL_BENCH_INNER=1
	exec unshare -m bash -c 'umount /sys/fs/cgroup/unified 2>/dev/null || true; exec "$0" "$@"' "$0" "$N"
fi

work=$(mktemp -d /tmp/shoal-bench.XXXXXX)
cleanup() {
	for id in $(ls "$work/root/containers" 2>/dev/null); do
		"$work/shoalrt" --root "$work/root" rm -f "$id" >/dev/null 2>&1 || true
	done
	crun delete -f shoal-bench >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# One busybox layer, used as the shoalrt image and as crun's rootfs.
l="$work/root/layers/2222222222222222222222222222222222222222222222222222222222222222"
mkdir -p "$l/bin" "$l/proc" "$l/dev" "$l/sys" "$work/root/test-images"
cp /bin/busybox "$l/bin/busybox"
ln -s busybox "$l/bin/true"
cat >"$work/root/test-images/busybox:latest.json" <<JSON
{"layers": ["$l"], "digests": ["${l##*/}"], "cmd": ["sh"], "env": ["PATH=/bin"]}
JSON
cc -std=gnu11 -D_GNU_SOURCE -O2 -I. -Icommon -o "$work/shoalrt" "$bin"/runtime/shoalrt/*.o \
	tests/unit/image_fake.c "$bin/libshoal_runtime.a" "$bin/libshoal_common.a" \
	$(pkg-config --libs libevent libseccomp jansson libsodium) -lpthread -lm
export SHOAL_SHIM="$bin/shoal-shim"

mkdir -p "$work/bundle"
(cd "$work/bundle" && crun spec)
python3 - "$work/bundle/config.json" "$l" <<'PY'
import json, sys
p, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["root"] = {"path": rootfs, "readonly": True}
c["linux"]["cgroupsPath"] = "shoal/bench-crun"
json.dump(c, open(p, "w"))
PY

declare -a t_shoal t_crun t_fork
now() { echo "${EPOCHREALTIME/./}"; }
# Warm-up: page cache, the seccomp BPF cache file.
"$work/shoalrt" --root "$work/root" run --rm busybox /bin/true
crun run --bundle "$work/bundle" shoal-bench >/dev/null
for ((i = 0; i < N; i++)); do
	s=$(now); "$work/shoalrt" --root "$work/root" run --rm busybox /bin/true; e=$(now)
	t_shoal+=($((e - s)))
	s=$(now); crun run --bundle "$work/bundle" shoal-bench; e=$(now)
	t_crun+=($((e - s)))
	s=$(now); /bin/true; e=$(now)
	t_fork+=($((e - s)))
done

stats() {
	local name=$1
	shift
	printf '%s\n' "$@" | sort -n | awk -v name="$name" '
		{ v[NR] = $1 }
		END { printf "%-22s median %7.2f ms   p90 %7.2f ms   min %7.2f ms   (n=%d)\n",
			name, v[int((NR + 1) / 2)] / 1000, v[int(NR * 0.9)] / 1000, v[1] / 1000, NR }'
}
echo "start-to-exit of /bin/true, $N interleaved runs:"
stats "shoalrt run --rm" "${t_shoal[@]}"
stats "crun run (cgroup v1)" "${t_crun[@]}"
stats "fork+exec" "${t_fork[@]}"
