#!/usr/bin/env bash
# The node proxy vs HAProxy: wrk through each to the same 3 HTTP backends, on loopback.
#   bench/proxy.sh [ROUNDS]      (ROUNDS interleaved A/B pairs per cell, default $ROUNDS or 3;
#                                root not needed)
#   BENCH_SECONDS=N              seconds per wrk run (default 5)
#   BENCH_AB=DIR                 adds rows for the shoal-agent built in DIR (an A/B of a change)
#   BENCH_ONLY=overload          only the overload row (below)
#   BENCH_ONLY=http              only the HTTP-mode rows (below)
#   BENCH_ONLY=tcp               only the TCP cells; BENCH_MODES="keepalive" and
#                                BENCH_CONNS="50" narrow them (an A/B of the keep-alive path)
#   OVERLOAD_MAXCONN=N           per-backend limit of the overload row (default 4; 0 = none)
#   OVERLOAD_SECONDS=N           seconds per wrk run of the overload row (default 8)
#                                (BENCH_AB adds an A/B row there too, its runs rotating with the others)
#   OVERLOAD_PAIRED=0            skips the overload row's side-by-side form (both proxies at
#                                once, each on its own throttled backends: see overload_paired)
#
# Backends: nginx (3 servers on 127.0.0.1-3, one small file) when installed, else busybox httpd
# (no keep-alive: the keep-alive cells then measure reconnects). wrk goes direct to one
# backend (the ceiling), through HAProxy 2.6 (mode tcp, balance roundrobin) and through
# `shoal-agent proxy`, both with THREADS worker threads (default: CPUs). Four cells:
# keep-alive and `Connection: close`, 50 and 200 connections. HAProxy and ours alternate
# within each cell (the machine is noisy: compare within one run). Printed per target:
# req/s, p50, p99, the proxy's CPU time per request (utime+stime from /proc/PID/stat over the
# run), each as a ratio to HAProxy, and connections per backend (counted by the backends).
#
# Overload row (root: cgroup v1 cpu): 3 busybox httpd on 127.0.0.4-6, each in a cpu cgroup of
# 0.1 CPU (cfs_quota 10ms per 100ms, as `resources.cpus: 0.1`), saturated by wrk -t2 -c50
# (Connection: close) through HAProxy (mode tcp, balance roundrobin, timeout connect 1s,
# timeout queue 30s, retries 3, maxconn OVERLOAD_MAXCONN per server) and through
# `shoal-agent proxy --max-conns-per-backend OVERLOAD_MAXCONN --queue-timeout 30s
# --connect-timeout 1s`, alternating. Counted: responses, connections closed with no response
# (wrk's connect, read and write errors) and wrk's own 2 s timeouts (a client that gave up
# waiting: not a close). The backends' side (cpuacct): their CPU per response, the share of
# CFS periods they were throttled in (~100%: they used their whole quota, so a proxy moves
# the responses only through the backend CPU each one costs, and a difference of a few % is
# the machine's noise: see the per-round pairs), and the CPU they still spent on the run's
# clients after wrk left, waited out before the next run so it is not billed to that one.
# The proxy's own CPU per response is from /proc/PID/stat.
#
# HTTP-mode rows: the same four cells through HAProxy `mode http` (option forwardfor, its
# default keep-alive on both sides and http-reuse safe) and through `shoal-agent proxy --mode
# http` (a backend per request, X-Forwarded-For/-Proto and Forwarded added), alternating,
# THREADS threads each. The backends count connections as above: with keep-alive both proxies
# reuse their backend connections, so the counts show how many each opened.
set -euo pipefail
ROUNDS=${1:-${ROUNDS:-3}}
SECS=${BENCH_SECONDS:-5}
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-$(nproc)}
for t in wrk haproxy python3; do
	command -v $t >/dev/null || { echo "bench/proxy.sh: needs $t (bash vagrant/provision/deps.sh --bench)" >&2; exit 1; }
done
agent=$(cd "$BUILD" && pwd)/shoal-agent
[ -x "$agent" ] || { echo "bench/proxy.sh: run make first" >&2; exit 1; }
ab=${BENCH_AB:+$(cd "$BENCH_AB" && pwd)/shoal-agent}

work=$(mktemp -d /tmp/shoal-proxy-bench.XXXXXX)
chmod 755 "$work"
pids=()
throttled=() # the overload rows' backends (127.0.0.N): their cgroups go on exit too
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ ${#throttled[@]} -eq 0 ] || throttled_stop "${throttled[@]}"
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap (cleanup) runs.
trap 'exit 130' INT
trap 'exit 143' TERM
# BENCH_KEEP=1 keeps the work dir (configs, logs) for a look by hand.
[ -z "${BENCH_KEEP:-}" ] || trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ ${#throttled[@]} -eq 0 ] || throttled_stop "${throttled[@]}"' EXIT

# Free loopback ports: bound to port 0 by the kernel, so nothing else holds them now.
read -r P1 P2 P3 PH PS PA PO PHO PSO PHH PSH PAO PPB PPHA PPHB PPSA PPSB < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(17)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')

mkdir -p "$work/www"
head -c 612 /dev/zero | tr '\0' 'x' >"$work/www/index.html" # nginx's default page size
chmod -R a+rX "$work/www"
if command -v nginx >/dev/null; then
	backend=nginx
	# One log line per connection (its first request): the per-backend connection count.
	cat >"$work/nginx.conf" <<EOF
worker_processes $THREADS;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $work/t1; proxy_temp_path $work/t2; fastcgi_temp_path $work/t3;
	uwsgi_temp_path $work/t4; scgi_temp_path $work/t5;
	map \$connection_requests \$first { 1 1; default 0; }
	log_format c "c";
	server { listen 127.0.0.1:$P1 reuseport; root $work/www; access_log $work/b1.log c if=\$first; }
	server { listen 127.0.0.2:$P2 reuseport; root $work/www; access_log $work/b2.log c if=\$first; }
	server { listen 127.0.0.3:$P3 reuseport; root $work/www; access_log $work/b3.log c if=\$first; }
}
EOF
	nginx -c "$work/nginx.conf" -g 'daemon off;' 2>"$work/nginx.out" &
	pids+=("$!")
else
	backend="busybox httpd"
	for i in 1 2 3; do
		p=P$i
		busybox httpd -f -p "127.0.0.$i:${!p}" -h "$work/www" &
		pids+=("$!")
	done
fi

cat >"$work/haproxy.cfg" <<EOF
global
	nbthread $THREADS
	maxconn 8000
defaults
	mode tcp
	balance roundrobin
	timeout connect 1s
	timeout client 10m
	timeout server 10m
frontend fe
	bind 127.0.0.1:$PH
	default_backend be
backend be
	server s1 127.0.0.1:$P1
	server s2 127.0.0.2:$P2
	server s3 127.0.0.3:$P3
EOF
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
hpid=$!
pids+=("$hpid")
"$agent" proxy --listen "127.0.0.1:$PS" --backend "127.0.0.1:$P1" --backend "127.0.0.2:$P2" \
	--backend "127.0.0.3:$P3" --threads "$THREADS" --log-level warn 2>"$work/shoal.log" &
spid=$!
pids+=("$spid")
if [ -n "$ab" ]; then
	"$ab" proxy --listen "127.0.0.1:$PA" --backend "127.0.0.1:$P1" --backend "127.0.0.2:$P2" \
		--backend "127.0.0.3:$P3" --threads "$THREADS" --log-level warn 2>"$work/ab.log" &
	apid=$!
	pids+=("$apid")
fi

wait_port() { # ADDR PORT: until it accepts (5 s at most)
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench/proxy.sh: nothing listens on $1:$2" >&2
	return 1
}
wait_port 127.0.0.1 "$P1"
wait_port 127.0.0.2 "$P2"
wait_port 127.0.0.3 "$P3"
wait_port 127.0.0.1 "$PH"
wait_port 127.0.0.1 "$PS"
[ -z "$ab" ] || wait_port 127.0.0.1 "$PA"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
conn_counts() { # connections each backend has seen so far
	if [ "$backend" = nginx ]; then
		echo "$(wc -l <"$work/b1.log" 2>/dev/null || echo 0) $(wc -l <"$work/b2.log" 2>/dev/null || echo 0) $(wc -l <"$work/b3.log" 2>/dev/null || echo 0)"
	else
		echo "- - -"
	fi
}
# to_us "1.23ms" -> 1230
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1e6; else m = 1; printf "%.1f", n * m }'; }

# run_one LABEL PORT PID CONNS HDR -> appends "reqs secs p50us p99us ticks errors c1 c2 c3" to $work/LABEL
run_one() {
	local label=$1 port=$2 pid=$3 conns=$4 hdr=$5 c0 c1 t0 t1 out args=()
	[ -n "$hdr" ] && args=(-H "$hdr")
	c0=$(conn_counts)
	t0=0
	[ "$pid" = - ] || t0=$(cpu_ticks "$pid")
	out=$(wrk -t2 -c"$conns" -d"${SECS}s" --latency "${args[@]}" "http://127.0.0.1:$port/index.html")
	t1=0
	[ "$pid" = - ] || t1=$(cpu_ticks "$pid")
	c1=$(conn_counts)
	local reqs p50 p99 err
	reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
	p50=$(to_us "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
	p99=$(to_us "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
	err=$(echo "$out" | awk '/Socket errors/ { gsub(",", ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }')
	read -r a0 b0 d0 <<<"$c0"
	read -r a1 b1 d1 <<<"$c1"
	if [ "$a0" = - ]; then
		echo "$reqs $SECS $p50 $p99 $((t1 - t0)) $err - - -" >>"$work/$label"
	else
		echo "$reqs $SECS $p50 $p99 $((t1 - t0)) $err $((a1 - a0)) $((b1 - b0)) $((d1 - d0))" >>"$work/$label"
	fi
}

hz=$(getconf CLK_TCK)
# summary LABEL -> "req/s p50us p99us cpu_us_per_req errors c1 c2 c3": req/s and CPU over all
# rounds, p50 and p99 the median round's (one round in which a proxy or wrk was pushed off
# the CPU moves a mean of three p99s by a third), sums of counts.
summary() {
	awk -v hz="$hz" 'function median(a, n,   i, j, t) {
			for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
		{ r += $1; s += $2; n++; p50[n] = $3; p99[n] = $4; t += $5; e += $6
		if ($7 != "-") { c1 += $7; c2 += $8; c3 += $9 } else nc = 1 }
		END { printf "%.0f %.1f %.1f %.2f %d %s %s %s\n", r / s, median(p50, n), median(p99, n),
			r ? t / hz * 1e6 / r : 0, e, nc ? "-" : c1, nc ? "-" : c2, nc ? "-" : c3 }' "$work/$1"
}

modes=${BENCH_MODES:-keepalive close}
case ${BENCH_ONLY:-} in "" | tcp) ;; *) modes="" ;; esac
[ -z "$modes" ] || echo "proxy: wrk -t2 to 3 $backend backends on 127.0.0.1-3, $THREADS proxy threads, ${SECS}s x $ROUNDS interleaved rounds per cell"
[ -z "$modes" ] || printf '  %-16s %-10s %9s %8s %8s %9s %6s | %7s %6s %6s %6s | %s\n' "cell" "target" "req/s" "p50 us" \
	"p99 us" "cpu us/rq" "errors" "x req/s" "x p50" "x p99" "x cpu" "conns per backend (spread)"
for mode in $modes; do
	for conns in ${BENCH_CONNS:-50 200}; do
		hdr=""
		[ "$mode" = close ] && hdr="Connection: close"
		cell="$mode-c$conns"
		rm -f "$work"/r-*
		# Warm-up: fills caches and the backends' worker pools.
		wrk -t2 -c"$conns" -d1s ${hdr:+-H "$hdr"} "http://127.0.0.1:$PS/index.html" >/dev/null
		run_one r-direct "$P1" - "$conns" "$hdr"
		for ((i = 0; i < ROUNDS; i++)); do
			run_one r-haproxy "$PH" "$hpid" "$conns" "$hdr"
			run_one r-shoal "$PS" "$spid" "$conns" "$hdr"
			[ -z "$ab" ] || run_one r-ab "$PA" "$apid" "$conns" "$hdr"
		done
		read -r hr hp50 hp99 hcpu _ <<<"$(summary r-haproxy)"
		targets=(direct haproxy shoal)
		[ -z "$ab" ] || targets+=(ab)
		for t in "${targets[@]}"; do
			read -r r p50 p99 cpu err c1 c2 c3 <<<"$(summary "r-$t")"
			name=$t
			[ "$t" = ab ] && name="shoal(A/B)"
			if [ "$t" = direct ]; then
				cpu="-"
				ratios=$(printf '%7.2f %6.2f %6.2f %6s' "$(echo "$r / $hr" | bc -l)" \
					"$(echo "$p50 / $hp50" | bc -l)" "$(echo "$p99 / $hp99" | bc -l)" "-")
			else
				ratios=$(printf '%7.2f %6.2f %6.2f %6.2f' "$(echo "$r / $hr" | bc -l)" \
					"$(echo "$p50 / $hp50" | bc -l)" "$(echo "$p99 / $hp99" | bc -l)" \
					"$(echo "$cpu / $hcpu" | bc -l)")
			fi
			if [ "$c1" = - ] || [ "$t" = direct ]; then
				spread="-"
			else
				spread=$(awk -v a="$c1" -v b="$c2" -v c="$c3" 'BEGIN {
					mx = a; if (b > mx) mx = b; if (c > mx) mx = c
					mn = a; if (b < mn) mn = b; if (c < mn) mn = c
					m = (a + b + c) / 3; printf "%d/%d/%d (%.1f%%)", a, b, c, m ? (mx - mn) / m * 100 : 0 }')
			fi
			printf '  %-16s %-10s %9s %8s %8s %9s %6s | %s | %s\n' "$cell" "$name" "$r" "$p50" "$p99" \
				"$cpu" "$err" "$ratios" "$spread"
			cell=""
		done
	done
done
[ -z "$modes" ] || echo "  (x = ratio to HAProxy in the same cell; want req/s >= 1, p99 <= 1.1, cpu <= 1;"
[ -z "$modes" ] || echo "   keep-alive cells open only one backend connection per wrk connection: 50 -> 17/17/16)"

# ---- throttled backends, for both overload rows -------------------------------------------
# busybox httpd on 127.0.0.N, each in its own cgroup v1 cpu group of 0.1 CPU (cfs_quota 10ms
# per 100ms, as `resources.cpus: 0.1`) and cpuacct group (its CPU per response): OCG-N, OCA-N.
OCG=/sys/fs/cgroup/cpu/shoal-bench-$$
OCA=$OCG
# cpuacct mounted apart from cpu (as cgroup v1 may be) has its own tree.
[ -f /sys/fs/cgroup/cpu/cpuacct.usage ] || [ ! -d /sys/fs/cgroup/cpuacct ] || OCA=/sys/fs/cgroup/cpuacct/shoal-bench-$$
throttled_ok() { [ "$(id -u)" = 0 ] && [ -w /sys/fs/cgroup/cpu ]; }
throttled_start() { # PORT N...: an httpd on 127.0.0.N:PORT for each N
	local port=$1 i
	shift
	mkdir -p "$work/owww"
	cp "$work/www/index.html" "$work/owww/"
	for i in "$@"; do
		mkdir -p "$OCG-$i" "$OCA-$i"
		throttled+=("$i")
		echo 100000 >"$OCG-$i/cpu.cfs_period_us"
		echo 10000 >"$OCG-$i/cpu.cfs_quota_us"
		# The shell joins the groups, then execs httpd: its forks stay in them.
		bash -c "echo \$\$ >$OCG-$i/cgroup.procs; echo \$\$ >$OCA-$i/cgroup.procs; exec busybox httpd -f -p 127.0.0.$i:$port -h $work/owww" &
		pids+=("$!")
	done
	for i in "$@"; do wait_port "127.0.0.$i" "$port"; done
}
throttled_stop() { # N...: the httpds and their forks leave, then their groups
	local i p
	for i in "$@"; do
		[ -f "$OCG-$i/cgroup.procs" ] || continue
		while read -r p; do kill "$p" 2>/dev/null || true; done <"$OCG-$i/cgroup.procs"
	done
	sleep 0.3
	for i in "$@"; do rmdir "$OCG-$i" "$OCA-$i" 2>/dev/null || true; done
	throttled=()
}
be_usage() { # N...: their CPU so far (ns)
	local i
	for i in "$@"; do cat "$OCA-$i/cpuacct.usage"; done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
be_thr() { # N...: CFS periods they ran in and were throttled in, so far
	local i
	for i in "$@"; do cat "$OCG-$i/cpu.stat"; done | awk '/^nr_periods/ { p += $2 } /^nr_throttled/ { t += $2 } END { print p + 0, t + 0 }'
}
# N...: until they are idle (under 3 ms of CPU in 0.2 s; 30 s at most): prints the CPU (ms)
# they spent meanwhile.
be_drain() {
	local s a b n
	s=$(be_usage "$@")
	b=$s
	for ((n = 0; n < 150; n++)); do
		a=$b
		sleep 0.2
		b=$(be_usage "$@")
		[ $((b - a)) -ge 3000000 ] || break
	done
	echo $(((b - s) / 1000000))
}
# HAProxy in mode tcp with the overload rows' settings: then haproxy_tcp_backend per frontend.
haproxy_tcp_head() {
	printf 'global\n\tnbthread %s\n\tmaxconn 8000\n' "$THREADS"
	printf 'defaults\n\tmode tcp\n\tbalance roundrobin\n\tretries 3\n\ttimeout connect 1s\n'
	printf '\ttimeout queue 30s\n\ttimeout client 10m\n\ttimeout server 10m\n'
}
haproxy_tcp_backend() { # NAME LISTEN_PORT MAXCONN ADDR...
	local name=$1 port=$2 maxconn=$3 a k=0
	shift 3
	printf 'frontend f%s\n\tbind 127.0.0.1:%s\n\tdefault_backend b%s\nbackend b%s\n' "$name" "$port" "$name" "$name"
	for a in "$@"; do
		# maxconn 0 means none, as Shoal's 0 (the issue's first measurement)
		if [ "$maxconn" -gt 0 ]; then
			printf '\tserver s%d %s maxconn %s\n' $((k++)) "$a" "$maxconn"
		else
			printf '\tserver s%d %s\n' $((k++)) "$a"
		fi
	done
}
shoal_overload_proxy() { # BINARY LISTEN_PORT MAXCONN LOG ADDR...: started, its pid in $!
	local bin=$1 port=$2 maxconn=$3 log=$4 a args=()
	shift 4
	for a in "$@"; do args+=(--backend "$a"); done
	"$bin" proxy --listen "127.0.0.1:$port" "${args[@]}" --threads "$THREADS" \
		--max-conns-per-backend "$maxconn" --queue-timeout 30s --connect-timeout 1s \
		--log-level warn 2>"$log" &
	pids+=("$!")
}

# ---- overload: throttled backends, HAProxy and Shoal with the same queue settings ----------
overload() {
	local maxconn=${OVERLOAD_MAXCONN:-4} osecs=${OVERLOAD_SECONDS:-8} i t port out order
	local addrs=() ohp osp oap="" targets u0 u1 th0 th1 pt0 pt1 pid lo
	if ! throttled_ok; then
		echo "overload: skipped (needs root and the cgroup v1 cpu controller)"
		return 0
	fi
	throttled_start "$PO" 4 5 6
	addrs=("127.0.0.4:$PO" "127.0.0.5:$PO" "127.0.0.6:$PO")
	{ haproxy_tcp_head; haproxy_tcp_backend e "$PHO" "$maxconn" "${addrs[@]}"; } >"$work/haproxy-overload.cfg"
	haproxy -f "$work/haproxy-overload.cfg" -db 2>"$work/haproxy-overload.log" &
	ohp=$!
	pids+=("$ohp")
	shoal_overload_proxy "$agent" "$PSO" "$maxconn" "$work/shoal-overload.log" "${addrs[@]}"
	osp=$!
	if [ -n "$ab" ]; then
		shoal_overload_proxy "$ab" "$PAO" "$maxconn" "$work/ab-overload.log" "${addrs[@]}"
		oap=$!
		wait_port 127.0.0.1 "$PAO"
	fi
	wait_port 127.0.0.1 "$PHO"
	wait_port 127.0.0.1 "$PSO"
	echo
	echo "overload: 3 busybox httpd at 0.1 CPU each (127.0.0.4-6), wrk -t2 -c50 Connection: close, ${osecs}s x $ROUNDS rounds, maxconn $maxconn per backend, timeout queue 30s, connect 1s"
	be_drain 4 5 6 >/dev/null
	printf '  %-10s %10s %22s %14s %14s %10s %16s %16s\n' "through" "responses" "closed, no response" \
		"wrk timeouts" "be cpu us/rsp" "throttled" "left over be ms" "proxy cpu us/rsp"
	rm -f "$work"/o-*
	targets=(haproxy shoal)
	[ -z "$ab" ] || targets+=(ab)
	for ((i = 0; i < ROUNDS; i++)); do
		# Who goes first rotates: a throttled backend is still busy with the last
		# run's leftovers when the next one starts.
		order=("${targets[@]:i % ${#targets[@]}}" "${targets[@]:0:i % ${#targets[@]}}")
		for t in "${order[@]}"; do
			port=$PHO
			[ "$t" = shoal ] && port=$PSO
			[ "$t" = ab ] && port=$PAO
			# the backends' CPU (cpuacct, ns) and CFS periods throttled / run, over the run
			u0=$(be_usage 4 5 6)
			pid=$ohp
			[ "$t" = shoal ] && pid=$osp
			[ "$t" = ab ] && pid=$oap
			pt0=$(cpu_ticks "$pid")
			th0=$(be_thr 4 5 6)
			out=$(wrk -t2 -c50 -d"${osecs}s" -H "Connection: close" "http://127.0.0.1:$port/index.html")
			u1=$(be_usage 4 5 6)
			pt1=$(cpu_ticks "$pid")
			th1=$(be_thr 4 5 6)
			# What the backends still do for this run's clients once wrk has gone (a
			# proxy that sends a client which left on to a backend): waited out here, so
			# it is not billed to the next run, and shown as "left over".
			lo=$(be_drain 4 5 6)
			echo "$out" | awk -v u=$((u1 - u0)) -v th0="$th0" -v th1="$th1" -v lo="$lo" -v pt=$((pt1 - pt0)) '/requests in/ { r = $1 }
				/Socket errors/ { gsub(",", ""); c = $4 + $6 + $8; to = $10 }
				END { split(th0, a, " "); split(th1, b, " ")
					print r + 0, c + 0, to + 0, u, b[1] - a[1], b[2] - a[2], lo, pt }' >>"$work/o-$t"
			[ -z "${BENCH_KEEP:-}" ] || echo "$out" >>"$work/o-$t.wrk"
		done
	done
	for t in "${targets[@]}"; do
		awk -v t="$t" -v hz="$hz" '{ r += $1; c += $2; to += $3; u += $4; p += $5; th += $6; lo += $7; pt += $8 } END {
			if (t == "ab") t = "shoal(A/B)"
			printf "  %-10s %10d %22d %14d %14.0f %9.0f%% %16d %16.0f\n", t, r, c, to, r ? u / 1000 / r : 0,
				p ? th / p * 100 : 0, lo, r ? pt / hz * 1e6 / r : 0 }' "$work/o-$t"
	done
	# Each round on its own (the machine's load moves between rounds): shoal/haproxy responses.
	printf '  %-10s %s\n' "pairs" "$(paste -d' ' "$work/o-haproxy" "$work/o-shoal" |
		awk '{ printf "%d/%d=%.2f  ", $9, $1, $1 ? $9 / $1 : 0 }')"
	[ -z "$ab" ] || printf '  %-10s %s\n' "A/B pairs" "$(paste -d' ' "$work/o-haproxy" "$work/o-ab" |
		awk '{ printf "%d/%d=%.2f  ", $9, $1, $1 ? $9 / $1 : 0 }')"
	echo "  (sums over the rounds; want Shoal's responses >= HAProxy's, closed with no response <= HAProxy's)"
	kill "$ohp" "$osp" ${oap:+"$oap"} 2>/dev/null || true
	throttled_stop 4 5 6
}
case ${BENCH_ONLY:-} in "" | overload) overload ;; esac

# ---- overload, side by side: both proxies at once, each on its own 3 throttled backends ------
# The alternating row above compares runs seconds apart, and on a shared machine the backends'
# CPU per response (fork, page faults, exit) moves by +-15% between such runs with the same
# proxy: that drift, not the proxy, made most of its pairs. Here HAProxy and Shoal run at the
# same moment, each against its own 3 busybox httpd at 0.1 CPU (sets A: 127.0.0.4-6, B:
# 127.0.0.7-9), and swap sets every round, so the load of the moment and a set's placement
# weigh on both alike. OVERLOAD_PAIRED=0 skips it.
overload_paired() {
	local maxconn=${OVERLOAD_MAXCONN:-4} osecs=${OVERLOAD_SECONDS:-8} k s u ohp osa osb
	local hset sset hp sp u0h u0s u1h u1s th0 th1 wh ws port
	if ! throttled_ok; then
		echo "overload side by side: skipped (needs root and the cgroup v1 cpu controller)"
		return 0
	fi
	throttled_start "$PPB" 4 5 6 7 8 9
	{
		haproxy_tcp_head
		haproxy_tcp_backend a "$PPHA" "$maxconn" 127.0.0.{4,5,6}:"$PPB"
		haproxy_tcp_backend b "$PPHB" "$maxconn" 127.0.0.{7,8,9}:"$PPB"
	} >"$work/haproxy-paired.cfg"
	haproxy -f "$work/haproxy-paired.cfg" -db 2>"$work/haproxy-paired.log" &
	ohp=$!
	pids+=("$ohp")
	shoal_overload_proxy "$agent" "$PPSA" "$maxconn" "$work/shoal-paired-a.log" 127.0.0.{4,5,6}:"$PPB"
	osa=$!
	shoal_overload_proxy "$agent" "$PPSB" "$maxconn" "$work/shoal-paired-b.log" 127.0.0.{7,8,9}:"$PPB"
	osb=$!
	for port in $PPHA $PPHB $PPSA $PPSB; do wait_port 127.0.0.1 "$port"; done
	echo
	echo "overload side by side: HAProxy and Shoal at once, each on its own 3 busybox httpd at 0.1 CPU (sets 127.0.0.4-6 and 127.0.0.7-9, swapped each round), wrk -t2 -c50 Connection: close each, ${osecs}s x $ROUNDS rounds, maxconn $maxconn"
	rm -f "$work"/p-*
	be_drain 4 5 6 7 8 9 >/dev/null
	for ((k = 0; k < ROUNDS; k++)); do
		hset="4 5 6" sset="7 8 9" hp=$PPHA sp=$PPSB
		if ((k % 2)); then hset="7 8 9" sset="4 5 6" hp=$PPHB sp=$PPSA; fi
		# shellcheck disable=SC2086 # the sets are lists of backends
		{ u0h=$(be_usage $hset); u0s=$(be_usage $sset); th0="$(be_thr $hset) $(be_thr $sset)"; }
		wrk -t2 -c50 -d"${osecs}s" -H "Connection: close" "http://127.0.0.1:$hp/index.html" >"$work/p-wh" &
		wh=$!
		wrk -t2 -c50 -d"${osecs}s" -H "Connection: close" "http://127.0.0.1:$sp/index.html" >"$work/p-ws" &
		ws=$!
		wait $wh $ws
		# shellcheck disable=SC2086
		{ u1h=$(be_usage $hset); u1s=$(be_usage $sset); th1="$(be_thr $hset) $(be_thr $sset)"; }
		for s in h s; do
			u=$((u1s - u0s))
			[ $s = s ] || u=$((u1h - u0h))
			awk -v u="$u" -v th0="$th0" -v th1="$th1" -v s=$s '/requests in/ { r = $1 }
				/Socket errors/ { gsub(",", ""); c = $4 + $6 + $8; to = $10 }
				END { split(th0, a, " "); split(th1, b, " "); o = s == "h" ? 0 : 2
					print r + 0, c + 0, to + 0, u, b[1 + o] - a[1 + o], b[2 + o] - a[2 + o] }' "$work/p-w$s" >>"$work/p-$s"
		done
		be_drain 4 5 6 7 8 9 >/dev/null
	done
	printf '  %-10s %10s %22s %14s %14s %10s\n' "through" "responses" "closed, no response" \
		"wrk timeouts" "be cpu us/rsp" "throttled"
	for s in h s; do
		awk -v t="$([ $s = h ] && echo haproxy || echo shoal)" '{ r += $1; c += $2; to += $3; u += $4; p += $5; th += $6 } END {
			printf "  %-10s %10d %22d %14d %14.0f %9.0f%%\n", t, r, c, to, r ? u / 1000 / r : 0, p ? th / p * 100 : 0 }' "$work/p-$s"
	done
	printf '  %-10s %s\n' "pairs" "$(paste -d' ' "$work/p-h" "$work/p-s" |
		awk '{ printf "%d/%d=%.2f  ", $7, $1, $1 ? $7 / $1 : 0 }')"
	echo "  (same moment, sets swapped each round; want Shoal's responses >= HAProxy's, closed with no response <= HAProxy's)"
	kill "$ohp" "$osa" "$osb" 2>/dev/null || true
	throttled_stop 4 5 6 7 8 9
}
case ${BENCH_ONLY:-} in "" | overload) [ "${OVERLOAD_PAIRED:-1}" = 0 ] || overload_paired ;; esac

# ---- HTTP mode: HAProxy mode http and shoal-agent proxy --mode http -------------------------
http_rows() {
	local hhp shp mode conns hdr cell t r p50 p99 cpu err c1 c2 c3 name hr hp50 hp99 hcpu
	sed -e 's/^\tmode tcp$/\tmode http\n\toption forwardfor/' -e "s/:$PH\$/:$PHH/" \
		"$work/haproxy.cfg" >"$work/haproxy-http.cfg"
	haproxy -f "$work/haproxy-http.cfg" -db 2>"$work/haproxy-http.log" &
	hhp=$!
	pids+=("$hhp")
	"$agent" proxy --mode http --listen "127.0.0.1:$PSH" --backend "127.0.0.1:$P1" \
		--backend "127.0.0.2:$P2" --backend "127.0.0.3:$P3" --threads "$THREADS" \
		--log-level warn 2>"$work/shoal-http.log" &
	shp=$!
	pids+=("$shp")
	wait_port 127.0.0.1 "$PHH"
	wait_port 127.0.0.1 "$PSH"
	echo
	echo "http mode: HAProxy mode http (option forwardfor) vs shoal-agent proxy --mode http, same backends, $THREADS threads, ${SECS}s x $ROUNDS interleaved rounds per cell"
	printf '  %-16s %-10s %9s %8s %8s %9s %6s | %7s %6s %6s %6s | %s\n' "cell" "target" "req/s" \
		"p50 us" "p99 us" "cpu us/rq" "errors" "x req/s" "x p50" "x p99" "x cpu" "backend conns"
	for mode in keepalive close; do
		for conns in ${BENCH_CONNS:-50 200}; do
			hdr=""
			[ "$mode" = close ] && hdr="Connection: close"
			cell="http-$mode-c$conns"
			rm -f "$work"/h-*
			wrk -t2 -c"$conns" -d1s ${hdr:+-H "$hdr"} "http://127.0.0.1:$PSH/index.html" >/dev/null
			for ((i = 0; i < ROUNDS; i++)); do
				# who goes first alternates (a noisy machine drifts within a cell)
				if [ $((i % 2)) = 0 ]; then
					run_one h-haproxy "$PHH" "$hhp" "$conns" "$hdr"
					run_one h-shoal "$PSH" "$shp" "$conns" "$hdr"
				else
					run_one h-shoal "$PSH" "$shp" "$conns" "$hdr"
					run_one h-haproxy "$PHH" "$hhp" "$conns" "$hdr"
				fi
			done
			read -r hr hp50 hp99 hcpu _ <<<"$(summary h-haproxy)"
			for t in haproxy shoal; do
				read -r r p50 p99 cpu err c1 c2 c3 <<<"$(summary "h-$t")"
				name=$t
				printf '  %-16s %-10s %9s %8s %8s %9s %6s | %7.2f %6.2f %6.2f %6.2f | %s\n' \
					"$cell" "$name" "$r" "$p50" "$p99" "$cpu" "$err" \
					"$(echo "$r / $hr" | bc -l)" "$(echo "$p50 / $hp50" | bc -l)" \
					"$(echo "$p99 / $hp99" | bc -l)" "$(echo "$cpu / $hcpu" | bc -l)" \
					"$c1/$c2/$c3"
				[ -z "${BENCH_KEEP:-}" ] || cat "$work/h-$t" >>"$work/h-$t.all"
				cell=""
			done
			# Each round's pair on its own (the machine's load moves between rounds).
			printf '  %-16s %-10s %s\n' "" "pairs" "$(paste -d' ' "$work/h-haproxy" "$work/h-shoal" |
				awk '{ printf "%d/%d=%.2f  ", $10 / $11, $1 / $2, ($10 / $11) / ($1 / $2) }')"
		done
	done
	echo "  (x = ratio to HAProxy mode http in the same cell; want req/s >= 1; pairs: shoal/haproxy"
	echo "   req/s of each interleaved round)"
}
case ${BENCH_ONLY:-} in "" | http) http_rows ;; esac
