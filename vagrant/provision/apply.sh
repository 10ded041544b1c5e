#!/usr/bin/env bash
# Apply the demo manifest from the scheduler host once every node is ready, and show the
# cluster. Run on sched after scheduler.sh and every node.sh: by vagrant/Vagrantfile (a
# trigger after the last node is up or provisioned) and by `tests/lab/lab provision`.
# Environment: see lib.sh, and
#   SHOAL_NODES          how many nodes must be ready first (default 3)
#   SHOAL_MANIFEST       the manifest (default manifests/web.yaml of SHOAL_SRC)
#   SHOAL_READY_WAIT     seconds to wait for the nodes (default 600)
#   SHOAL_RUNNING_WAIT   seconds to wait for every replica to run (default 120)
# The demo service is created only if absent: a re-provision leaves a service that exists as
# it is (scaled, updated by hand), so it changes nothing ("web exists, left as it is").
set -euo pipefail
# shellcheck source=lib.sh
. "${SHOAL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/vagrant/provision/lib.sh"

NODES=${SHOAL_NODES:-3}
MANIFEST=${SHOAL_MANIFEST:-$SHOAL_SRC/manifests/web.yaml}
READY_WAIT=${SHOAL_READY_WAIT:-600}
RUNNING_WAIT=${SHOAL_RUNNING_WAIT:-120}
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "SHOAL_NODES must be a positive number, got '$NODES'"
[ -r "$MANIFEST" ] || die "cannot read $MANIFEST"
[ -r "$PROFILE" ] || die "$PROFILE is missing: run scheduler.sh first"
# The same settings a login on this host gets.
# shellcheck disable=SC1090
. "$PROFILE"

service=$(sed -n 's/^service:[[:space:]]*\([A-Za-z0-9._-]*\).*/\1/p' "$MANIFEST" | head -1)
replicas=$(sed -n 's/^replicas:[[:space:]]*\([0-9]*\).*/\1/p' "$MANIFEST" | head -1)
if [ -z "$service" ] || [ -z "$replicas" ]; then die "$MANIFEST: no service: or replicas: line"; fi

ready_nodes() { shoal nodes 2>/dev/null | awk 'NR > 1 && $3 == "ready"' | wc -l; }
running() { shoal ps "$service" 2>/dev/null | awk 'NR > 1 && $4 == "running" && $5 == "running"' | wc -l; }

say "waiting for $NODES nodes to be ready"
deadline=$((SECONDS + READY_WAIT))
until [ "$(ready_nodes)" -ge "$NODES" ]; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		shoal nodes >&2 || true
		die "only $(ready_nodes) of $NODES nodes ready after ${READY_WAIT}s"
	fi
	sleep 0.2
done

# A service being removed (UPDATED reads "(removing)") counts as absent: it is created anew.
exists() { shoal services 2>/dev/null | awk -v s="$service" 'NR > 1 && $1 == s && !/\(removing\)/ { f = 1 } END { exit !f }'; }
if exists; then
	say "service $service exists, left as it is (shoal apply -f $MANIFEST changes it)"
	# It runs as many replicas as it was given since, not as the manifest says.
	replicas=$(shoal services 2>/dev/null | awk -v s="$service" 'NR > 1 && $1 == s { split($3, r, "/"); print r[2] }')
	[[ $replicas =~ ^[0-9]+$ ]] || die "cannot read the replicas of $service from shoal services"
else
	say "shoal apply -f $MANIFEST"
	# Detached: the wait below names what is missing after RUNNING_WAIT.
	# The manifest names the registry on sched; with several schedulers it is on the first
	# one (REGISTRY, lib.sh): the image is pulled from there.
	applied=$(mktemp)
	sed -E "s#^(image:[[:space:]]*)[0-9.]+:5000/#\1$REGISTRY/#" "$MANIFEST" >"$applied"
	shoal apply --detach -f "$applied"
	rm -f "$applied"
fi
deadline=$((SECONDS + RUNNING_WAIT))
until [ "$(running)" -ge "$replicas" ]; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		shoal ps "$service" -a >&2 || true
		die "only $(running) of $replicas replicas of $service run after ${RUNNING_WAIT}s"
	fi
	sleep 0.2
done
say "$replicas replicas of $service run"
for cmd in nodes services ps; do
	printf '\n==> shoal %s\n' "$cmd"
	shoal "$cmd"
done
