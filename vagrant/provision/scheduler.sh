#!/usr/bin/env bash
# Provision the scheduler host: the VM `sched` (SHOAL_PROVISION_MODE=systemd, run by
# vagrant/Vagrantfile) or the namespace lab's sched (SHOAL_PROVISION_MODE=lab, run by
# `tests/lab/lab provision`). Environment: see lib.sh. Safe to re-run.
#
#   1. dependencies, build (make bins images), install programs and demo images
#   2. the cluster, once: `shoal-scheduler init` only when DATA holds none (re-running
#      keeps the cluster and its tokens)
#   3. the worker token to the nodes: SHOAL_SHARE/worker.token, mode 0600 (never printed)
#   4. `shoal` without flags for logins: /etc/profile.d/shoal.sh (SHOAL_SCHEDULER,
#      SHOAL_TOKEN_FILE) and a copy of the admin token for the login user (VMs: vagrant)
#   5. shoal-scheduler.service (Restart=on-failure), listening on SHOAL_SCHEDULER_ADDR:7100
#   SHOAL_SCHEDULER_ADDRS with several addresses (SCHEDULERS=3; lib.sh): the first host
#   makes the cluster and leaves its identity (key and both tokens, mode 0600) in
#   SHOAL_SHARE/identity for the others, which wait for it and copy it (every scheduler
#   has the same identity, so a join token stays good across a failover); each host runs
#   an etcd member (shoal-etcd.service, Debian's etcd-server, data in VAR_DIR/etcd,
#   client port 2379, peers on 2380) and its scheduler on the etcd store
#   (--store etcd://A:2379,B:2379,C:2379 --advertise ITS_ADDR:7100); the registry runs
#   on the first only. The schedulers answer once a quorum of members runs: apply.sh
#   waits for a leader, this script does not.
#   6. the image registry: Debian's docker-registry (the CNCF distribution registry) as
#      shoal-registry.service on SHOAL_SCHEDULER_ADDR:5000, plain HTTP, storage in
#      VAR_DIR/registry; the demo images shoal/web:1 and :2 pushed there with `shoalrt push`
#      (only blobs it lacks: re-provisioning uploads nothing new). Nodes pull from it.
set -euo pipefail
# shellcheck source=lib.sh
. "${SHOAL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/vagrant/provision/lib.sh"

DATA=$VAR_DIR/scheduler
ADMIN_USER=${SHOAL_ADMIN_USER:-vagrant}

step_build
bash "$SHOAL_SRC/vagrant/provision/deps.sh" --registry
step_install

# 2. The cluster: its key and both tokens, or nothing (then init makes them).
have=0
for f in scheduler.key worker.token admin.token; do
	[ ! -e "$DATA/$f" ] || have=$((have + 1))
done
IDENTITY=$SHOAL_SHARE/identity
if [ "$HA" = 1 ] && [ "$SHOAL_SCHEDULER_ADDR" != "$FIRST_SCHED" ] && [ "$have" = 0 ]; then
	# Another scheduler of this cluster: the first one's identity, not a new one.
	waited=0
	wait_for=${SHOAL_TOKEN_WAIT:-900}
	until [ -s "$IDENTITY/scheduler.key" ] && [ -s "$IDENTITY/worker.token" ] &&
		[ -s "$IDENTITY/admin.token" ]; do
		[ "$waited" -lt "$wait_for" ] ||
			die "no cluster identity in $IDENTITY after ${wait_for}s: provision the first scheduler ($FIRST_SCHED) first"
		sleep 1
		waited=$((waited + 1))
	done
	mkdir -p "$DATA"
	chmod 0700 "$DATA"
	for f in scheduler.key worker.token admin.token; do
		install -m 0600 "$IDENTITY/$f" "$DATA/$f"
	done
	say "joined the cluster of $FIRST_SCHED: its identity copied from $IDENTITY into $DATA"
	have=3
fi
case $have in
3) say "cluster exists in $DATA: keeping it and its tokens" ;;
0)
	say "creating the cluster (shoal-scheduler init; tokens stay in $DATA, mode 0600)"
	mkdir -p "$DATA"
	chmod 0700 "$DATA"
	"$BIN_DIR/shoal-scheduler" init --data-dir "$DATA" >/dev/null
	;;
*) die "$DATA holds part of a cluster ($have of scheduler.key, worker.token, admin.token); remove it or run shoal-scheduler init --force" ;;
esac

# 3. The worker token for the nodes, through the folder every host sees.
mkdir -p "$SHOAL_SHARE"
chmod 0700 "$SHOAL_SHARE"
if ! cmp -s "$DATA/worker.token" "$SHOAL_SHARE/worker.token" 2>/dev/null; then
	install -m 0600 "$DATA/worker.token" "$SHOAL_SHARE/worker.token.new"
	mv -f "$SHOAL_SHARE/worker.token.new" "$SHOAL_SHARE/worker.token"
	say "worker token handed over in $SHOAL_SHARE/worker.token (mode 0600)"
fi
chmod 0600 "$SHOAL_SHARE/worker.token"
if [ "$HA" = 1 ] && [ "$SHOAL_SCHEDULER_ADDR" = "$FIRST_SCHED" ]; then
	install -d -m 0700 "$IDENTITY"
	for f in scheduler.key worker.token admin.token; do
		cmp -s "$DATA/$f" "$IDENTITY/$f" 2>/dev/null || install -m 0600 "$DATA/$f" "$IDENTITY/$f"
	done
	say "cluster identity for the other schedulers in $IDENTITY (mode 0600)"
fi

# 4. `shoal` needs no flags: root reads the token in DATA, the login user its own copy.
profile_token="export SHOAL_TOKEN_FILE=$DATA/admin.token"
if [ "$SHOAL_PROVISION_MODE" = systemd ] && id "$ADMIN_USER" >/dev/null 2>&1; then
	home=$(getent passwd "$ADMIN_USER" | cut -d: -f6)
	install -d -m 0700 -o "$ADMIN_USER" -g "$(id -gn "$ADMIN_USER")" "$home/.shoal"
	install -C -m 0600 -o "$ADMIN_USER" -g "$(id -gn "$ADMIN_USER")" "$DATA/admin.token" \
		"$home/.shoal/admin.token"
	profile_token=$(
		cat <<PROFILE
if [ -r "\$HOME/.shoal/admin.token" ]; then
	export SHOAL_TOKEN_FILE="\$HOME/.shoal/admin.token"
else
	$profile_token
fi
PROFILE
	)
fi
profile_path=
[ "$SHOAL_PROVISION_MODE" = systemd ] || profile_path="export PATH=\"$BIN_DIR:\$PATH\""
write_if_changed "$PROFILE" 0644 <<PROFILE || true
# shellcheck shell=sh
# Written by vagrant/provision/scheduler.sh: \`shoal\` on this host needs no flags.
$profile_path
export SHOAL_SCHEDULER=$SCHEDULERS
$profile_token
PROFILE

# 5. The service (several schedulers: after this host's etcd member).
store=()
if [ "$HA" = 1 ]; then
	me='' cluster='' i=0
	for a in ${SCHED_ADDRS//,/ }; do
		i=$((i + 1))
		cluster+="${cluster:+,}sched$i=http://$a:2380"
		[ "$a" != "$SHOAL_SCHEDULER_ADDR" ] || me=sched$i
	done
	[ -n "$me" ] || die "this host's address $SHOAL_SCHEDULER_ADDR is not in SHOAL_SCHEDULER_ADDRS ($SCHED_ADDRS)"
	ETCD_BIN=$(command -v etcd) || die "etcd is missing (deps.sh installs etcd-server)"
	mkdir -p "$VAR_DIR/etcd"
	chmod 0700 "$VAR_DIR/etcd"
	write_unit shoal-etcd "etcd member $me of the Shoal schedulers" "" \
		"$ETCD_BIN" --name "$me" --data-dir "$VAR_DIR/etcd" \
		--listen-client-urls "http://$SHOAL_SCHEDULER_ADDR:2379" \
		--advertise-client-urls "http://$SHOAL_SCHEDULER_ADDR:2379" \
		--listen-peer-urls "http://$SHOAL_SCHEDULER_ADDR:2380" \
		--initial-advertise-peer-urls "http://$SHOAL_SCHEDULER_ADDR:2380" \
		--initial-cluster "$cluster" --initial-cluster-state new \
		--initial-cluster-token shoal-lab
	run_service shoal-etcd "etcd${me#sched}" "$ETCD_BIN"
	store=(--store "$ETCD_STORE" --advertise "$SCHEDULER")
fi
sched_name=${SHOAL_HOST:-sched}
write_unit shoal-scheduler "Shoal scheduler" "" \
	"$BIN_DIR/shoal-scheduler" run --data-dir "$DATA" --listen "$SCHEDULER" "${store[@]}"
run_service shoal-scheduler "$sched_name" "$BIN_DIR/shoal-scheduler" "$DATA/scheduler.key"

if [ "$HA" = 1 ]; then
	say "scheduler runs on $SCHEDULER (it serves once a quorum of etcd members runs; apply.sh waits for a leader)"
	if [ "$SHOAL_SCHEDULER_ADDR" != "$FIRST_SCHED" ]; then
		exit 0 # the registry is the first scheduler host's
	fi
fi
if [ "$HA" = 0 ]; then
	for _ in $(seq 1 100); do
		"$BIN_DIR/shoal" --scheduler "$SCHEDULER" --token-file "$DATA/admin.token" nodes \
			>/dev/null 2>&1 && break
		sleep 0.1
	done
	"$BIN_DIR/shoal" --scheduler "$SCHEDULER" --token-file "$DATA/admin.token" nodes >/dev/null ||
		die "the scheduler does not answer on $SCHEDULER"
	say "scheduler ready on $SCHEDULER"
fi

# 6. The registry the nodes pull from, and the demo images in it.
REGISTRY_BIN=$(command -v docker-registry) || die "docker-registry is missing (deps.sh --registry)"
if [ "$SHOAL_PROVISION_MODE" = systemd ] && systemctl is-enabled -q docker-registry.service 2>/dev/null; then
	# Debian's own unit listens on :5000 of every address with its config: ours replaces it.
	say "disabling Debian's docker-registry.service (shoal-registry.service serves $REGISTRY)"
	systemctl disable -q --now docker-registry.service
fi
mkdir -p "$VAR_DIR/registry"
write_if_changed "$ETC_DIR/registry.yml" 0644 <<REG || true
# Written by vagrant/provision/scheduler.sh: the lab's image registry (plain HTTP).
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $VAR_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
REG
write_unit shoal-registry "Shoal lab image registry (docker-registry)" "" \
	"$REGISTRY_BIN" serve "$ETC_DIR/registry.yml"
run_service shoal-registry registry "$REGISTRY_BIN" "$ETC_DIR/registry.yml"
pushstore=$VAR_DIR/registry-src
for tag in 1 2; do
	"$BIN_DIR/shoalrt" --root "$pushstore" import "$IMAGE_DIR/web_$tag" >/dev/null
	pushed=
	for _ in $(seq 1 50); do
		if pushed=$("$BIN_DIR/shoalrt" --root "$pushstore" push --insecure-registry "$REGISTRY" \
			"shoal/web:$tag" "$REGISTRY/shoal/web:$tag" 2>&1); then
			break
		fi
		pushed=
		sleep 0.2
	done
	[ -n "$pushed" ] || die "cannot push shoal/web:$tag to $REGISTRY"
	say "$pushed"
done
say "registry ready on $REGISTRY (plain HTTP)"
