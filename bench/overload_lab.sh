#!/usr/bin/env bash
# Issue 20's own table on the demo lab: Shoal's node proxy vs HAProxy when every replica is busy.
#   bench/overload_lab.sh [ROUNDS]   (default $ROUNDS or 3; root: it builds a namespace lab)
#   OVERLOAD_SECONDS=N               seconds per wrk run (default 8)
#   LAB_ID                           lab id (default olab: its own lab, torn down at exit)
#
# The lab as `make demo` provisions it: 3 replicas of shoal/web:1 at cpus 0.1 (manifests/
# web.yaml), published on every node's :8080. wrk -t2 -c50 -d8s runs in node3's namespace
# against node1's address:8080 (Shoal's proxy) and, in the same minute, against HAProxy 2.6
# started in node1's namespace on :8081 (mode tcp, balance roundrobin, timeout connect 1s,
# timeout queue 30s, default retries) with the three task IPs as servers. The order alternates
# each round (a throttled replica is still busy with the last run's leftovers). Counted:
# responses, connections closed with no response (wrk's socket errors connect+read+write),
# and wrk's own timeouts (a client that gave up waiting: not a close). httpd's answers end at
# its close (no Content-Length), and wrk counts that EOF as one read error per response (it
# resets the parser in the reconnect, then sees n == 0 with no body): those are taken off.
# wrk sends "Connection: close", as bench/proxy.sh's overload row does.
set -euo pipefail
ROUNDS=${1:-${ROUNDS:-3}}
SECS=${OVERLOAD_SECONDS:-8}
cd "$(dirname "$0")/.."
export LAB_ID=${LAB_ID:-olab}
BUILD=${BUILD:-build}
export SHOAL_BIN=${SHOAL_BIN:-$(cd "$BUILD" && pwd)}
export LAB_RUN=${LAB_RUN:-/run/shoal-lab-$LAB_ID}
for t in wrk haproxy jq; do
	command -v $t >/dev/null || { echo "bench/overload_lab.sh: needs $t (bash vagrant/provision/deps.sh --bench)" >&2; exit 1; }
done
if [ "$(id -u)" != 0 ]; then
	echo "overload_lab: skipped (needs root for the namespace lab)"
	exit 0
fi
lab=tests/lab/lab
work=$(mktemp -d /tmp/shoal-overload-lab.XXXXXX)
hap=
cleanup() {
	[ -z "$hap" ] || kill "$hap" 2>/dev/null || true
	wait 2>/dev/null || true
	timeout 120 bash "$lab" down >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NODES=3 bash tests/lab/demo >"$work/demo.log" 2>&1 || { tail -30 "$work/demo.log" >&2; exit 1; }
root="$LAB_RUN/hosts/sched"
shoal() {
	bash "$lab" exec sched "$root/usr/local/bin/shoal" --scheduler "$(bash "$lab" addr sched):7100" \
		--token-file "$root/var/lib/shoal/scheduler/admin.token" "$@"
}
mapfile -t ips < <(shoal ps web -o json | jq -r '.[] | select(.desired == "running" and .state == "running") | .ip' | sort)
[ "${#ips[@]}" -eq 3 ] || { echo "overload_lab: want 3 running replicas, have ${#ips[@]}" >&2; exit 1; }
n1=$(bash "$lab" addr node1)
{
	printf 'global\n\tmaxconn 8000\n'
	printf 'defaults\n\tmode tcp\n\tbalance roundrobin\n\ttimeout connect 1s\n'
	printf '\ttimeout queue 30s\n\ttimeout client 10m\n\ttimeout server 10m\n'
	printf 'frontend fe\n\tbind %s:8081\n\tdefault_backend be\n' "$n1"
	printf 'backend be\n'
	for i in 0 1 2; do printf '\tserver s%d %s:8080\n' "$i" "${ips[$i]}"; done
} >"$work/haproxy.cfg"
bash "$lab" exec node1 haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
hap=$!
for _ in $(seq 1 100); do
	bash "$lab" exec node3 timeout 1 bash -c "exec 3<>/dev/tcp/$n1/8081" 2>/dev/null && break
	sleep 0.1
done

echo "overload_lab: 3 replicas of shoal/web:1 at cpus 0.1 (${ips[*]}), wrk -t2 -c50 -d${SECS}s from node3 to node1 ($n1), $ROUNDS rounds; uptime:$(uptime | sed 's/.*load/ load/')"
# A warm-up run, not counted: round 1's first run would otherwise be the only one on idle
# replicas (every later run starts on the last one's leftovers), a bias for whichever goes
# first (HAProxy).
bash "$lab" exec node3 wrk -t2 -c50 -d"${SECS}s" -H "Connection: close" "http://$n1:8080/" >/dev/null
printf '  %-7s %-24s %10s %22s %14s\n' round through responses "closed, no response" "wrk timeouts"
for ((i = 0; i < ROUNDS; i++)); do
	order="haproxy shoal"
	[ $((i % 2)) = 0 ] || order="shoal haproxy"
	for t in $order; do
		port=8080 name="Shoal's proxy $n1:8080"
		[ "$t" = haproxy ] && port=8081 name="HAProxy 2.6"
		out=$(bash "$lab" exec node3 wrk -t2 -c50 -d"${SECS}s" -H "Connection: close" "http://$n1:$port/")
		echo "$out" | awk -v r="$((i + 1))" -v t="$name" -v k="$t" '/requests in/ { n = $1 }
			/Socket errors/ { gsub(",", ""); c = $4 + $6 + $8; to = $10 }
			END { c -= n; if (c < 0) c = 0
				printf "  %-7s %-24s %10d %22d %14d\n", r, t, n, c, to }' | tee -a "$work/rows"
	done
done
awk '{ k = ($2 == "HAProxy") ? "HAProxy 2.6" : "Shoal"; r[k] += $(NF-2); c[k] += $(NF-1); to[k] += $NF }
	END { for (k in r) printf "  %-7s %-24s %10d %22d %14d\n", "sum", k, r[k], c[k], to[k] }' "$work/rows"
# What Shoal's proxies say they closed themselves (a queue timeout), and whether a replica was
# replaced meanwhile: its health check (1 s timeout) can fail while it is this busy, and the
# connections it held then end with no response through either proxy, while HAProxy, which
# knows only the three first addresses, goes on trying the one that is gone.
echo "  Shoal's proxies' own count (shoal services --stats, all nodes): $(shoal services --stats -o json |
	jq -r '.[] | select(.name == "web") | .stats[] | select(.backend == "") |
		"\(.connections) connections, \(.queued) queued, \(.queue_timeouts) queue timeouts"')"
mapfile -t now < <(shoal ps web -o json | jq -r '.[] | select(.desired == "running" and .state == "running") | .ip' | sort)
[ "${ips[*]}" = "${now[*]}" ] || echo "  replaced during the runs (health check failed under the load): ${ips[*]} -> ${now[*]}"
