# shellcheck shell=bash
# Shared by the provision scripts (scheduler.sh, node.sh, apply.sh): one set of steps for
# both labs. The Vagrant VMs run them with SHOAL_PROVISION_MODE=systemd; the namespace lab
# (`tests/lab/lab provision`) runs the very same steps with SHOAL_PROVISION_MODE=lab, which
# switches only what a namespace cannot do:
#
#   step                      systemd (a VM)                 lab (a namespace)
#   host root (ROOT)          /                              $LAB_RUN/hosts/HOST
#   binaries                  /usr/local/bin                 ROOT/usr/local/bin
#   units                     /etc/systemd/system, systemctl ROOT/etc/systemd/system; the
#                                                            unit's ExecStart= is started
#                                                            with `lab spawn`
#   state                     /var/lib/shoal                 ROOT/var/lib/shoal
#
# Environment, set by the driver (vagrant/Vagrantfile or tests/lab/lab provision):
#   SHOAL_PROVISION_MODE  systemd (default) or lab
#   SHOAL_SRC             the source tree (default: the tree these scripts are in)
#   SHOAL_SCHEDULER_ADDR  the scheduler host's address (topology.conf: sched); port 7100.
#                         On a scheduler host of several: that host's own address
#   SHOAL_SCHEDULER_ADDRS every scheduler host's address, comma-separated (SCHEDULERS=3:
#                         sched1..3 of topology.conf; default SHOAL_SCHEDULER_ADDR alone).
#                         Several: each runs an etcd member beside its scheduler, the
#                         schedulers keep the cluster in etcd, the first holds the registry
#                         and hands the cluster's identity to the others
#   SHOAL_SHARE           a directory every host sees (the synced folder): the worker
#                         token is handed over there, mode 0600 (default
#                         $SHOAL_SRC/vagrant/.share)
#   SHOAL_BUILD           where make builds (default /var/lib/shoal/build)
#   SHOAL_NODES           how many nodes the lab has (apply.sh waits for them)
#   lab mode: SHOAL_LAB (the lab script), SHOAL_HOST (sched, schedI or nodeI), SHOAL_HOST_ROOT,
#             LAB_ID / LAB_RUN (passed on to the lab script)
# Secrets (tokens) are never printed: they only travel in files of mode 0600.

SHOAL_PROVISION_MODE=${SHOAL_PROVISION_MODE:-systemd}
SHOAL_SRC=${SHOAL_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SHOAL_SHARE=${SHOAL_SHARE:-$SHOAL_SRC/vagrant/.share}
SHOAL_BUILD=${SHOAL_BUILD:-/var/lib/shoal/build}
SHOAL_PORT=7100

p_host=${SHOAL_HOST:-$(hostname -s)}

say() { echo "provision[$p_host]: $*"; }
die() {
	echo "provision[$p_host]: ERROR: $*" >&2
	exit 1
}

case "$SHOAL_PROVISION_MODE" in
systemd)
	ROOT=
	;;
lab)
	if [ -z "${SHOAL_LAB:-}" ] || [ -z "${SHOAL_HOST:-}" ] || [ -z "${SHOAL_HOST_ROOT:-}" ]; then
		die "lab mode needs SHOAL_LAB, SHOAL_HOST and SHOAL_HOST_ROOT (run it with: tests/lab/lab provision)"
	fi
	ROOT=${SHOAL_HOST_ROOT%/}
	;;
*) die "SHOAL_PROVISION_MODE must be systemd or lab, got '$SHOAL_PROVISION_MODE'" ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs root"
[ -n "${SHOAL_SCHEDULER_ADDR:-}" ] || die "SHOAL_SCHEDULER_ADDR is not set (the sched address of vagrant/topology.conf)"

# Paths and the scheduler's address, for the scripts that source this file.
# shellcheck disable=SC2034
{
	BIN_DIR=$ROOT/usr/local/bin
	UNIT_DIR=$ROOT/etc/systemd/system
	ETC_DIR=$ROOT/etc/shoal
	VAR_DIR=$ROOT/var/lib/shoal
	IMAGE_DIR=$VAR_DIR/images
	PROFILE=$ROOT/etc/profile.d/shoal.sh
	SCHEDULER=$SHOAL_SCHEDULER_ADDR:$SHOAL_PORT
	SCHED_ADDRS=${SHOAL_SCHEDULER_ADDRS:-$SHOAL_SCHEDULER_ADDR}
	FIRST_SCHED=${SCHED_ADDRS%%,*}
	# What agents and the CLI get: every scheduler ("A:7100,B:7100,C:7100"), or the one.
	SCHEDULERS=$(echo "$SCHED_ADDRS" | sed "s/,/:$SHOAL_PORT,/g; s/\$/:$SHOAL_PORT/")
	# Several schedulers: their etcd members' client endpoints, the --store of each.
	ETCD_STORE="etcd://$(echo "$SCHED_ADDRS" | sed 's/,/:2379,/g; s/$/:2379/')"
	HA=0
	[[ $SCHED_ADDRS != *,* ]] || HA=1
	REGISTRY=$FIRST_SCHED:5000 # the lab's image registry (plain HTTP), on the first sched
}

# lab ARGS...: the namespace lab's script (lab mode only).
lab() { bash "$SHOAL_LAB" "$@"; }

# step_build: dependencies (Debian's archive), then the programs and the demo images.
# make only rebuilds what changed. The log stays in VAR_DIR/build.log.
step_build() {
	mkdir -p "$VAR_DIR"
	# The namespace lab's hosts share one source tree and one build directory: the first
	# host's build serves them all (a VM builds on its own).
	if [ "${SHOAL_BUILT:-}" = 1 ]; then
		say "dependencies and build: done by this lab's first host ($SHOAL_BUILD)"
		return 0
	fi
	say "dependencies (deps.sh --build-only)"
	bash "$SHOAL_SRC/vagrant/provision/deps.sh" --build-only
	say "building into $SHOAL_BUILD (make bins images; log $VAR_DIR/build.log)"
	if ! make -C "$SHOAL_SRC" -j"$(nproc)" BUILD="$SHOAL_BUILD" DEPS_ARGS=--build-only \
		bins images >"$VAR_DIR/build.log" 2>&1; then
		tail -30 "$VAR_DIR/build.log" >&2
		die "build failed (log: $VAR_DIR/build.log)"
	fi
}

# step_install: the programs into BIN_DIR, the demo images into IMAGE_DIR (host-local
# copies, so the daemons never depend on the synced folder being mounted).
step_install() {
	local f n=0
	mkdir -p "$BIN_DIR"
	for f in "$SHOAL_BUILD"/shoal*; do
		if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
		install -C -m 0755 "$f" "$BIN_DIR/"
		n=$((n + 1))
	done
	for f in shoal-scheduler shoal-agent shoal; do
		[ -x "$BIN_DIR/$f" ] || die "no $f in $SHOAL_BUILD"
	done
	if ! diff -rq "$SHOAL_BUILD/images" "$IMAGE_DIR" >/dev/null 2>&1; then
		rm -rf "$IMAGE_DIR.new"
		mkdir -p "$VAR_DIR"
		cp -a "$SHOAL_BUILD/images" "$IMAGE_DIR.new"
		rm -rf "$IMAGE_DIR"
		mv "$IMAGE_DIR.new" "$IMAGE_DIR"
	fi
	say "installed $n programs into $BIN_DIR, demo images into $IMAGE_DIR"
}

# write_if_changed FILE MODE: stdin into FILE (mode MODE) unless FILE already holds exactly
# that; returns 0 when it wrote, 1 when FILE was up to date.
write_if_changed() {
	local file=$1 mode=$2 tmp
	mkdir -p "$(dirname "$file")"
	tmp=$(mktemp "$file.XXXXXX")
	cat >"$tmp"
	chmod "$mode" "$tmp"
	if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
		rm -f "$tmp"
		return 1
	fi
	mv -f "$tmp" "$file"
}

# write_unit NAME DESCRIPTION EXTRA ARGV...: the systemd unit NAME.service starting ARGV
# (no argument may contain white space: the lab splits ExecStart= on it).
# EXTRA: further [Service] lines ("" for none).
write_unit() {
	local name=$1 desc=$2 extra=$3 a
	shift 3
	for a in "$@"; do
		[[ $a != *[[:space:]]* ]] || die "unit $name: argument with white space: '$a'"
	done
	write_if_changed "$UNIT_DIR/$name.service" 0644 <<EOF || true
# Written by vagrant/provision (Shoal's lab provisioning); re-provisioning rewrites it.
[Unit]
Description=$desc
Documentation=file:$SHOAL_SRC/vagrant/README.md
Wants=network-online.target
After=network-online.target
# Retry for ever: at boot the lab address may come up after the unit starts.
StartLimitIntervalSec=0

[Service]
ExecStart=$*
Restart=on-failure
RestartSec=2
# The daemons raise their soft fd limit to this hard one at start: the default 1024 ran out
# at ~1,000 idle connections to the scheduler, ~510 to a proxy.
LimitNOFILE=1048576
${extra:+$extra
}
[Install]
WantedBy=multi-user.target
EOF
}

# fingerprint FILE...: one hash over the files' contents (what a running daemon was
# started from: program, unit, token).
fingerprint() {
	cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1
}

# run_service NAME LABNAME FILE...: make the unit NAME run. Restarts it when the files
# that define it (FILE...: its program, unit, token) changed since it was last started,
# starts it when it does not run, and otherwise leaves it alone (re-provisioning restarts
# nothing that did not change). LABNAME: the daemon's name in the namespace lab.
run_service() {
	local name=$1 labname=$2 fp stamp old running=0 argv
	shift 2
	fp=$(fingerprint "$UNIT_DIR/$name.service" "$@")
	stamp=$VAR_DIR/.$name.started-from
	old=$(cat "$stamp" 2>/dev/null || true)
	case "$SHOAL_PROVISION_MODE" in
	systemd)
		systemctl daemon-reload
		systemctl enable -q "$name.service"
		if systemctl is-active -q "$name.service"; then running=1; fi
		if [ "$running" = 1 ] && [ "$fp" = "$old" ]; then
			say "$name runs, unchanged"
		elif [ "$running" = 1 ]; then
			say "$name changed: restarting"
			systemctl restart "$name.service"
		else
			say "starting $name"
			systemctl start "$name.service"
		fi
		;;
	lab)
		if lab pid "$labname" >/dev/null 2>&1; then running=1; fi
		if [ "$running" = 1 ] && [ "$fp" = "$old" ]; then
			say "$name runs, unchanged (lab: $labname)"
		else
			if [ "$running" = 1 ]; then
				say "$name changed: restarting (lab: $labname)"
				lab kill "$labname"
			else
				say "starting $name (lab: lab spawn $labname $SHOAL_HOST)"
			fi
			read -ra argv <<<"$(sed -n 's/^ExecStart=//p' "$UNIT_DIR/$name.service")"
			lab spawn "$labname" "$SHOAL_HOST" "${argv[@]}" >/dev/null
		fi
		;;
	esac
	echo "$fp" >"$stamp"
	# It must still run a moment later (a bad flag or token exits at once).
	sleep 1
	service_running "$name" "$labname" || {
		service_log "$name" "$labname" >&2 || true
		die "$name does not stay up"
	}
}

service_running() {
	if [ "$SHOAL_PROVISION_MODE" = systemd ]; then
		systemctl is-active -q "$1.service"
	else
		lab pid "$2" >/dev/null 2>&1
	fi
}

service_log() {
	if [ "$SHOAL_PROVISION_MODE" = systemd ]; then
		journalctl -u "$1.service" -n 30 --no-pager
	else
		lab log "$2" | tail -30
	fi
}
