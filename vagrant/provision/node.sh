#!/usr/bin/env bash
# Provision node NAME (node1, node2, ...): the VM NAME (SHOAL_PROVISION_MODE=systemd, run
# by vagrant/Vagrantfile) or the namespace lab's NAME (SHOAL_PROVISION_MODE=lab, run by
# `tests/lab/lab provision`). Safe to re-run.
#   node.sh NAME
# Environment: see lib.sh, and
#   SHOAL_ADDRESS     this node's address (topology.conf)
#   SHOAL_LABELS      its labels, "zone=a" (topology.conf; several: space-separated)
#   SHOAL_TOKEN_WAIT  seconds to wait for the scheduler's worker token (default 900)
#
#   1. dependencies, build (make bins images), install programs and demo images
#   2. the worker token from SHOAL_SHARE (written by scheduler.sh; waits for it), copied
#      to /etc/shoal/worker.token, mode 0600 (never printed)
#   3. shoal-agent.service (Restart=on-failure, KillMode=process: containers and the
#      node's ingress proxy, `shoal-agent ingress`, outlive an agent restart and are
#      adopted) with the labels; its store starts empty and it pulls
#      what it runs from the registry on sched (--insecure-registry SCHED_ADDR:5000: plain
#      HTTP inside the lab's private network); --scheduler lists every scheduler
set -euo pipefail
# shellcheck source=lib.sh
. "${SHOAL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/vagrant/provision/lib.sh"

NAME=${1:-}
[[ $NAME =~ ^node[1-9][0-9]*$ ]] || die "usage: node.sh NAME (node1, node2, ...)"
[ -n "${SHOAL_ADDRESS:-}" ] || die "SHOAL_ADDRESS is not set (this node's address)"
TOKEN_WAIT=${SHOAL_TOKEN_WAIT:-900}
DATA=$VAR_DIR/agent
TOKEN=$ETC_DIR/worker.token

step_build
step_install

# 2. The worker token: the scheduler host may still be building (parallel providers).
waited=0
while [ ! -s "$SHOAL_SHARE/worker.token" ]; do
	[ "$waited" -lt "$TOKEN_WAIT" ] ||
		die "no worker token in $SHOAL_SHARE after ${TOKEN_WAIT}s: provision sched first; the synced folder must be shared both ways (nfs, virtualbox with guest additions, 9p, virtiofs; not rsync)"
	[ $((waited % 30)) -ne 0 ] || say "waiting for the scheduler's worker token in $SHOAL_SHARE"
	sleep 1
	waited=$((waited + 1))
done
install -d -m 0700 "$ETC_DIR"
if ! cmp -s "$SHOAL_SHARE/worker.token" "$TOKEN" 2>/dev/null; then
	install -m 0600 "$SHOAL_SHARE/worker.token" "$TOKEN.new"
	mv -f "$TOKEN.new" "$TOKEN"
	say "worker token installed in $TOKEN (mode 0600)"
fi

# 3. The agent.
labels=()
for l in ${SHOAL_LABELS:-}; do
	[[ $l == ?*=?* ]] || die "SHOAL_LABELS: expected key=value, got '$l'"
	labels+=(--label "$l")
done
mkdir -p "$DATA"
write_unit shoal-agent "Shoal agent ($NAME)" "KillMode=process" \
	"$BIN_DIR/shoal-agent" --scheduler "$SCHEDULERS" --token-file "$TOKEN" --name "$NAME" \
	--address "$SHOAL_ADDRESS" "${labels[@]}" --data-dir "$DATA" --insecure-registry "$REGISTRY"
run_service shoal-agent "agent${NAME#node}" "$BIN_DIR/shoal-agent" "$TOKEN"
say "agent $NAME ($SHOAL_ADDRESS${SHOAL_LABELS:+, $SHOAL_LABELS}) joins $SCHEDULERS"
