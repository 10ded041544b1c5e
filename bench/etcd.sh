#!/usr/bin/env bash
# The etcd store against the SQLite store: N task rows (store_task_put) in transactions of 100,
# each etcd transaction fenced by the leader key, into a local 3-member etcd cluster (Debian's
# etcd-server on loopback, data in /tmp) and into the SQLite store (WAL, synchronous=FULL).
#   bench/etcd.sh                  N = 10,000 and 100,000
#   ETCD_ROWS="1000 5000" bench/etcd.sh
# Prints rows/s of each store per N; "etcd pipelined" is the loop's asynchronous commit
# (store_etcd_tx_commit_async) of all N rows as one batch: transactions of up to 127 rows,
# 8 in flight. Issue 19's later target: 100,000 replicas on 1,000 nodes
# acknowledged in < 60 s with the etcd store (bench/scale.sh, once the scheduler uses it).
# Other arguments (bench/run passes its own) are ignored.
set -eEuo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROWS=${ETCD_ROWS:-10000 100000}

command -v etcd >/dev/null || {
	echo "bench/etcd.sh: etcd-server is not installed (vagrant/provision/deps.sh)" >&2
	exit 1
}
make -s BUILD="$BUILD" "$BUILD/tests/tools/etcdprobe" >/dev/null
probe=$(cd "$BUILD" && pwd)/tests/tools/etcdprobe

# shellcheck source=tests/integration/etcd_cluster.bash
. tests/integration/etcd_cluster.bash
dir=$(mktemp -d /tmp/shoal-bench-etcd.XXXXXX)
trap etcd_cluster_down EXIT
etcd_cluster_up "$dir"

printf '%-10s %14s %16s %14s\n' rows "etcd rows/s" "etcd pipelined" "sqlite rows/s"
run=0
for n in $ROWS; do
	run=$((run + 1))
	out=$(ETCDPROBE_ASYNC=1 ETCDPROBE_PREFIX=/bench$run/ "$probe" "$ETCD_ENDPOINTS" bench "$n")
	printf '%-10s %14s %16s %14s\n' "$n" "$(awk '$1 == "etcd" {print $2}' <<<"$out")" \
		"$(awk '$1 == "etcd-pipelined" {print $2}' <<<"$out")" \
		"$(awk '$1 == "sqlite" {print $2}' <<<"$out")"
done
