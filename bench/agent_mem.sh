#!/usr/bin/env bash
# The agent's memory, idle, with one replica: RSS of shoal-agent, of its ingress process and of
# its shims (the shim server, its spare, the container's shim; /proc/PID/smaps_rollup), with the
# node's total as PSS, on the namespace lab (1 scheduler, 1 node), and where it goes
# (per kind of mapping, from /proc/PID/smaps). No peer runs here: the k3s agent's figure is
# quoted as a constant reference (~275 MB RSS for k3s agent with containerd, idle, from
# the k3s documentation's resource profiling; Docker/containerd are not installed here).
#   bench/agent_mem.sh            (root; LAB_ID defaults to "bmem", its own lab)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ "$(id -u)" -eq 0 ] || { echo "bench/agent_mem.sh: needs root" >&2; exit 1; }
bin=$(cd "$BUILD" && pwd)
for b in shoal shoal-scheduler shoal-agent shoal-shim; do
	[ -x "$bin/$b" ] || { echo "bench/agent_mem.sh: run make first" >&2; exit 1; }
done
export LAB_ID=${LAB_ID:-bmem}
lab() { bash tests/lab/lab "$@"; }
work=$(mktemp -d /tmp/shoal-agentmem.XXXXXX)
cleanup() {
	lab down >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
make -s BUILD="$BUILD" images >/dev/null
lab down >/dev/null 2>&1 || true
lab up 1 >/dev/null
sched=$(lab addr sched):7100
"$bin/shoal-scheduler" init --data-dir "$work/sched" >/dev/null
lab spawn sched sched "$bin/shoal-scheduler" run --data-dir "$work/sched" --listen "$sched" \
	--heartbeat-interval 1s >/dev/null
lab spawn agent1 node1 "$bin/shoal-agent" --scheduler "$sched" \
	--token-file "$work/sched/worker.token" --name node1 --address "$(lab addr node1)" \
	--data-dir "$work/node1" --image-dir "$bin/images" >/dev/null
cat >"$work/web.yaml" <<'Y'
service: web
image: shoal/web:1
replicas: 1
ports:
  - published: 8080
    target: 80
Y
shoal() { lab exec sched "$bin/shoal" --scheduler "$sched" --token-file "$work/sched/admin.token" "$@"; }
for _ in $(seq 100); do shoal nodes 2>/dev/null | grep -q ' ready ' && break; sleep 0.1; done
shoal apply -f "$work/web.yaml" --detach >/dev/null
running() { shoal ps web | awk 'NR > 1 && $5 == "running"' | grep -q .; }
for _ in $(seq 600); do running && break; sleep 0.1; done
running || { echo "bench/agent_mem.sh: the replica never ran" >&2; lab log agent1 >&2 || true; exit 1; }
# Idle: the replica runs, the heartbeats go on, nothing else happens.
sleep "${AGENT_MEM_IDLE_S:-5}"
agent=$(lab pid agent1)
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/smaps_rollup"; }
mib() { awk -v v="$1" 'BEGIN { printf "%.2f", v / 1024 }'; }
echo "agent memory: shoal-agent idle with 1 replica (web, one port), after ${AGENT_MEM_IDLE_S:-5} s"
printf '  %-40s %9s %9s %9s\n' "" "RSS MiB" "PSS MiB" "anon MiB"
row() { printf '  %-40s %9s %9s %9s\n' "$1" "$(mib "$(kb "$2" Rss)")" "$(mib "$(kb "$2" Pss)")" \
	"$(mib "$(kb "$2" Anonymous)")"; }
row "agent RSS, 1 replica, idle" "$agent"
# The node's proxy runs in a process of its own (shoal-agent ingress), a daemon of its own.
for p in $(pgrep -f -- "shoal-agent ingress --data-dir $work/node1" || true); do
	row "  the node's ingress process (proxy)" "$p"
done
# The agent's start path (container_start) keeps a shim server, its child, with one spare shim
# forked ahead; each container has its shim. They are the node's memory too: PSS is the fair
# sum of processes that share pages (the spare shares nearly all of the server's).
total=$(( $(kb "$agent" Pss) ))
for p in $(pgrep -f -- "shoal-agent ingress --data-dir $work/node1" || true); do
	total=$((total + $(kb "$p" Pss)))
done
children() { pgrep -P "$1" || true; }
for srv in $(children "$agent"); do
	[ "$(cat "/proc/$srv/comm")" = shoal-shim ] || continue
	row "  the shim server (agent's child)" "$srv"
	total=$((total + $(kb "$srv" Pss)))
	for c in $(children "$srv"); do
		case $(tr '\0' ' ' <"/proc/$c/cmdline") in
		*--id*) row "  a container's shim" "$c" ;;
		*) row "  the spare shim (forked ahead)" "$c" ;;
		esac
		total=$((total + $(kb "$c" Pss)))
	done
done
printf '  %-40s %9s %9s\n' "node total (agent, ingress, shims)" "" "$(mib "$total")"
printf '  %-40s %9s\n' "k3s agent (reference, not run here)" "~275"
echo "agent memory by mapping (RSS KiB): the binary, shared libraries, heap, thread stacks and other anonymous"
awk '
	/^[0-9a-f]+-[0-9a-f]+ / { name = NF >= 6 ? $6 : "[anon]"; next }
	$1 == "Rss:" { rss[name] += $2 }
	END { for (n in rss) if (rss[n] > 0) printf "  %8d  %s\n", rss[n], n }
' "/proc/$agent/smaps" | sort -rn | head -"${AGENT_MEM_TOP:-25}"
echo "  threads: $(find "/proc/$agent/task" -mindepth 1 -maxdepth 1 | wc -l)"
