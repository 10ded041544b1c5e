#!/usr/bin/env bash
# Pulling from a registry: `shoalrt pull` against `skopeo copy docker://... oci:...`, in one
# interleaved run, against Debian's docker-registry on 127.0.0.1:5000 of a private network
# namespace (the host's network is never touched).
#   bench/pull.sh [N]        (N interleaved rounds, default 5; root)
#   BENCH_AB=DIR bench/pull.sh   adds rows for the shoalrt built in DIR (an A/B of a change,
#                                measured in the same interleaved run)
#
# The image: 5 gzip layers of ~10 MiB each (incompressible bytes, so ~50 MiB on the wire),
# pushed as bench/big:a; bench/big:b shares its first 4 layers and differs in the fifth.
# Rows, each the median (and min/max) of N rounds:
#   cold    an empty store / an empty OCI layout pulls big:a
#   warm    a store / layout that holds big:a pulls big:b (1 of 5 layers missing)
#   3x cold three pulls of big:a at once into three empty stores (three nodes at once)
# shellcheck disable=SC2016 # the inner shell expands $0 and $@
# shoalrt's pull also verifies and unpacks every layer into its store (what a node needs to
# run the image); skopeo only writes the blobs into the layout. Both verify digests.
set -euo pipefail
N=${1:-5}
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ "$(id -u)" -eq 0 ] || { echo "bench/pull.sh: needs root" >&2; exit 1; }
for t in docker-registry skopeo; do
	command -v $t >/dev/null || { echo "bench/pull.sh: needs $t (bash vagrant/provision/deps.sh)" >&2; exit 1; }
done
bin=$(cd "$BUILD" && pwd)
[ -x "$bin/shoalrt" ] || { echo "bench/pull.sh: run make first" >&2; exit 1; }

if [ -z "${SHOAL_BENCH_INNER:-}" ]; then
	export SHOAL_BENCH_INNER=1
	exec unshare -n bash -c 'ip link set lo up; exec bash "$0" "$@"' "$0" "$N"
fi

work=$(mktemp -d /tmp/shoal-bench-pull.XXXXXX)
reg_pid=
cleanup() {
	[ -z "$reg_pid" ] || kill "$reg_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
REG=127.0.0.1:5000

cat >"$work/reg.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $REG
EOF
docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do
	curl -sf "http://$REG/v2/" >/dev/null 2>&1 && break
	sleep 0.1
done

# ---- the image: an OCI layout with 5 layers (a) and one with the fifth replaced (b) -----
# blob FILE: store FILE in the layout by digest, print "digest size".
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
blob() {
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	mv "$1" "$layout/blobs/sha256/$d"
	echo "$d $s"
}
layer() { # layer NAME: a gzip tar of 10 MiB of random bytes; prints "digest size diff_id"
	local dir=$work/l-$1 d s diff
	mkdir -p "$dir/data"
	head -c $((10 << 20)) /dev/urandom >"$dir/data/$1.bin"
	tar -C "$dir" --sort=name --owner=0 --group=0 --mtime=@0 -cf "$dir.tar" data
	diff=$(sha256sum "$dir.tar" | cut -d' ' -f1)
	gzip -n -1 "$dir.tar"
	read -r d s < <(blob "$dir.tar.gz")
	rm -rf "$dir"
	echo "$d $s $diff"
}
declare -a L
for i in 1 2 3 4 5 6; do L[i]=$(layer "l$i"); done
image() { # image TAG LAYER-INDEXES...: config + manifest; tags the layout's index
	local tag=$1 i descs="" diffs="" d s diff cfg cd cs m md ms
	shift
	for i in "$@"; do
		read -r d s diff <<<"${L[i]}"
		descs+="${descs:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$s}"
		diffs+="${diffs:+,}\"sha256:$diff\""
	done
	cfg=$work/cfg
	printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/true"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffs" >"$cfg"
	read -r cd cs < <(blob "$cfg")
	m=$work/man
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$cd" "$cs" "$descs" >"$m"
	read -r md ms < <(blob "$m")
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' "$md" "$ms" "$tag" >"$layout/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
	skopeo copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$REG/bench/big:$tag"
}
image a 1 2 3 4 5
image b 1 2 3 4 6
size_a=$(($(du -sb "$layout/blobs" | cut -f1) - $(cut -d" " -f2 <<<"${L[6]}")))

# ---- timing -----------------------------------------------------------------------------
now() { echo "${EPOCHREALTIME/./}"; }
declare -A T
run() { # run ROW CMD...: time CMD, append ms to row ROW
	local t0 t1
	t0=$(now)
	"${@:2}" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	t1=$(now)
	T[$1]+="$(((t1 - t0) / 1000)) "
}
rt_pull() { "$bin/shoalrt" --root "$1" pull --insecure-registry "$REG" "$REG/bench/big:$2"; }
ab_pull() { "$ab/shoalrt" --root "$1" pull --insecure-registry "$REG" "$REG/bench/big:$2"; }
ab=${BENCH_AB:+$(cd "$BENCH_AB" && pwd)}
sk_pull() { skopeo copy -q --src-tls-verify=false "docker://$REG/bench/big:$2" "oci:$1:$2"; }
three() { # three FN TAG: FN into three fresh dirs at once
	local pids=() k
	for k in 1 2 3; do
		"$1" "$work/3-$k" "$2" &
		pids+=($!)
	done
	for k in "${pids[@]}"; do wait "$k" || return 1; done
}

for ((r = 1; r <= N; r++)); do
	rm -rf "$work"/s1 "$work"/o1 "$work"/3-*
	run "shoalrt cold" rt_pull "$work/s1" a
	run "skopeo cold" sk_pull "$work/o1" a
	run "shoalrt warm" rt_pull "$work/s1" b
	run "skopeo warm" sk_pull "$work/o1" b
	run "shoalrt 3x cold" three rt_pull a
	rm -rf "$work"/3-*
	run "skopeo 3x cold" three sk_pull a
	[ -n "$ab" ] || continue
	rm -rf "$work"/s2 "$work"/3-*
	run "A/B cold" ab_pull "$work/s2" a
	run "A/B warm" ab_pull "$work/s2" b
	run "A/B 3x cold" three ab_pull a
done

stats() { # stats "ms ms ...": median min max
	tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR]=$1} END {printf "%d %d %d\n", v[int((NR+1)/2)], v[1], v[NR]}'
}
printf 'image: 5 layers, %d MiB of blobs; warm: 1 of 5 layers (%d MiB) missing; %d rounds\n' \
	$((size_a >> 20)) $(($(cut -d' ' -f2 <<<"${L[6]}") >> 20)) "$N"
printf '%-16s %9s %9s %9s %10s\n' row "median ms" "min" "max" "vs skopeo"
for row in cold warm "3x cold"; do
	read -r sm smin smax < <(stats "${T[shoalrt $row]}")
	read -r km kmin kmax < <(stats "${T[skopeo $row]}")
	printf '%-16s %9d %9d %9d %9.2fx\n' "shoalrt $row" "$sm" "$smin" "$smax" "$(echo "$sm / $km" | bc -l)"
	printf '%-16s %9d %9d %9d\n' "skopeo $row" "$km" "$kmin" "$kmax"
	[ -n "$ab" ] || continue
	read -r am amin amax < <(stats "${T[A/B $row]}")
	printf '%-16s %9d %9d %9d %9.2fx\n' "A/B $row" "$am" "$amin" "$amax" "$(echo "$am / $km" | bc -l)"
done
