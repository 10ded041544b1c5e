#!/usr/bin/env bats
# The Vagrant lab, as far as a machine that cannot boot VMs can check it:
#   - vagrant/Vagrantfile: `ruby -c`, and `vagrant validate -p` (offline, no box) for NODES=3
#     and 5 with each provider (virtualbox, libvirt)
#   - the Vagrantfile's topology parser gives every host the address and labels the
#     namespace lab gives it, also for nodes beyond those topology.conf lists
#   - shellcheck on every shell script of the repository
#   - the VMs' provision scripts, end to end in lab mode on the namespace lab (`lab
#     provision`): nodes ready, manifests/web.yaml applied, 3 replicas running; tokens
#     0600 and never printed; a second run restarts nothing. teardown_file: lab down.

load helpers

BATS_TEST_TIMEOUT=300
VAGRANT_DIR="$SHOAL_ROOT/vagrant"

setup_file() {
	export PROV_LOG="$BATS_FILE_TMPDIR/provision.log"
	export HOSTS="$LAB_RUN/hosts"
	export PROFILE="$HOSTS/sched/etc/profile.d/shoal.sh"
	timeout 60 bash "$LAB_BIN" down >/dev/null
}

teardown() {
	dump_logs_on_failure
}

teardown_file() {
	timeout 60 bash "$LAB_BIN" down >/dev/null
}

# vagrant_validate PROVIDER NODES: `vagrant validate -p` of vagrant/Vagrantfile, offline:
# no update check, a private VAGRANT_HOME and machine dir. Vagrant asks whether the host
# has an NFS server (the default synced folder); this machine has none, so a `modinfo`
# stand-in answers yes: the check is about the Vagrantfile, not this host.
vagrant_validate() {
	local stub="$BATS_FILE_TMPDIR/stub"
	mkdir -p "$stub"
	printf '#!/bin/sh\n[ "$1" = nfsd ]\n' >"$stub/modinfo"
	chmod +x "$stub/modinfo"
	PATH="$stub:$PATH" VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1 \
		VAGRANT_HOME="$BATS_FILE_TMPDIR/vagrant.d" VAGRANT_DOTFILE_PATH="$BATS_FILE_TMPDIR/dot" \
		VAGRANT_CWD="$VAGRANT_DIR" VAGRANT_DEFAULT_PROVIDER="$1" NODES="$2" \
		timeout 120 vagrant validate -p
}

# vshoal ARGS...: `shoal` on the lab's sched as a login on the sched VM runs it: no
# flags, the settings come from /etc/profile.d/shoal.sh.
vshoal() {
	lab exec sched sh -c '. "$1"; shift; shoal "$@"' sh "$PROFILE" "$@"
}

running_web() {
	vshoal ps web | awk 'NR > 1 && $4 == "running" && $5 == "running"' | wc -l
}

web_runs() {
	[ "$(running_web)" -eq "$1" ]
}

daemon_pids() {
	local n
	for n in sched registry agent1 agent2 agent3; do lab pid "$n"; done
}

@test "deps.sh installs vagrant, ruby and shellcheck, without recommends" {
	run grep -E '^test_pkgs=|^	' "$VAGRANT_DIR/provision/deps.sh"
	[[ $output == *" vagrant "* ]]
	[[ $output == *" ruby "* ]]
	[[ $output == *" shellcheck "* ]]
	grep -q -- '--no-install-recommends' "$VAGRANT_DIR/provision/deps.sh"
	bash "$VAGRANT_DIR/provision/deps.sh" --check
}

@test "ruby -c: the Vagrantfile and its topology parser" {
	run ruby -c "$VAGRANT_DIR/Vagrantfile"
	[ "$status" -eq 0 ]
	[[ $output == *"Syntax OK"* ]]
	run ruby -c "$VAGRANT_DIR/topology.rb"
	[ "$status" -eq 0 ]
}

@test "vagrant validate -p: NODES=3 and 5, providers virtualbox and libvirt" {
	vagrant plugin list | grep -q vagrant-libvirt
	for provider in virtualbox libvirt; do
		for n in 3 5; do
			run vagrant_validate "$provider" "$n"
			echo "$provider NODES=$n: $output"
			[ "$status" -eq 0 ]
			[[ $output == *"validated successfully"* ]]
			[ "$(grep -c 'Ignoring provider config' <<<"$output")" -eq $((n + 1)) ]
		done
	done
}

@test "the Vagrantfile refuses a bad NODES and an rsync synced folder" {
	run vagrant_validate virtualbox 0
	[ "$status" -ne 0 ]
	[[ $output == *"NODES must be a number"* ]]
	export SHOAL_SYNC_TYPE=rsync
	run vagrant_validate virtualbox 3
	[ "$status" -ne 0 ]
	[[ $output == *"SHOAL_SYNC_TYPE must be"* ]]
}

@test "both labs read topology.conf alike: addresses and labels of sched and node1..12" {
	run ruby -r "$VAGRANT_DIR/topology.rb" -e '
		ShoalTopology.load(ARGV[0]).hosts(12).each do |h|
			puts [h[:name], h[:ip], h[:labels].map { |k, v| "#{k}=#{v}" }.join(" ")].join(" ").strip
		end' "$VAGRANT_DIR/topology.conf"
	[ "$status" -eq 0 ]
	expected="sched $(lab addr sched)"
	for i in $(seq 1 12); do
		expected+=$'\n'"node$i $(lab addr "node$i") $(lab labels "node$i")"
	done
	diff <(echo "$output") <(echo "$expected")
	[[ $output == *"node12 192.168.56.22 zone=b"* ]]
}

@test "SCHEDULERS=3: vagrant validate -p with sched1..3 and 3 nodes, both providers; a bad SCHEDULERS refused" {
	vagrant plugin list | grep -q vagrant-libvirt
	for provider in virtualbox libvirt; do
		SCHEDULERS=3 run vagrant_validate "$provider" 3
		echo "$provider SCHEDULERS=3: $output"
		[ "$status" -eq 0 ]
		[[ $output == *"validated successfully"* ]]
		[ "$(grep -c 'Ignoring provider config' <<<"$output")" -eq 6 ]
	done
	SCHEDULERS=0 run vagrant_validate virtualbox 3
	[ "$status" -ne 0 ]
	[[ $output == *"SCHEDULERS must be a number"* ]]
}

@test "both labs read topology.conf alike with SCHEDULERS=3: sched1..3 and the nodes" {
	run ruby -r "$VAGRANT_DIR/topology.rb" -e '
		ShoalTopology.load(ARGV[0]).hosts(2, 3).each { |h| puts [h[:name], h[:ip]].join(" ") }' \
		"$VAGRANT_DIR/topology.conf"
	[ "$status" -eq 0 ]
	expected=""
	for h in sched1 sched2 sched3 node1 node2; do
		expected+="${expected:+$'\n'}$h $(lab addr "$h")"
	done
	diff <(echo "$output") <(echo "$expected")
}

@test "shellcheck: every shell script of the repository" {
	cd "$SHOAL_ROOT"
	local f scripts=()
	while IFS= read -r f; do
		[ -f "$f" ] || continue
		case "$f" in
		*.bats) continue ;; # bats syntax (@test), not shell
		*.sh | *.bash) scripts+=("$f") ;;
		*) if head -1 "$f" | grep -qE '^#!.*[/ ](ba)?sh( |$)'; then scripts+=("$f"); fi ;;
		esac
	done < <(git ls-files -co --exclude-standard)
	printf '%s\n' "${scripts[@]}"
	for f in tests/lab/lab tests/lab/demo vagrant/provision/deps.sh vagrant/provision/lib.sh \
		vagrant/provision/scheduler.sh vagrant/provision/node.sh vagrant/provision/apply.sh \
		images/build.sh bench/run tests/run.sh .ci/run tests/integration/helpers.bash; do
		printf '%s\n' "${scripts[@]}" | grep -qx "$f"
	done
	shellcheck -x "${scripts[@]}"
}

@test "lab provision 3: the VMs' provision scripts on the lab; web.yaml runs 3 replicas" {
	run timeout 300 bash "$LAB_BIN" provision 3
	echo "$output" >"$PROV_LOG"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"provision[sched]: creating the cluster"* ]]
	[[ $output == *"service web created"* ]]
	[ "$(vshoal nodes | awk 'NR > 1 && $3 == "ready"' | wc -l)" -eq 3 ]
	run vshoal services
	[[ $output == *"web"*"shoal/web:1"*"3/3"* ]]
	wait_until 30 web_runs 3
	# The agents run with the topology's labels and pull from the registry on sched (plain
	# HTTP), which holds shoal/web:1 and :2; each node pulled what it runs.
	grep -qF "provision[sched]: pushed $(lab addr sched):5000/shoal/web:1 " "$PROV_LOG"
	grep -qF "provision[sched]: pushed $(lab addr sched):5000/shoal/web:2 " "$PROV_LOG"
	for i in 1 2 3; do
		unit="$HOSTS/node$i/etc/systemd/system/shoal-agent.service"
		grep -q -- "--label zone=$(lab zone "node$i") " "$unit"
		grep -q -- "--insecure-registry $(lab addr sched):5000" "$unit"
		[ "$(grep -c -- "--image-dir" "$unit")" -eq 0 ]
		grep -q "pulled $(lab addr sched):5000/shoal/web:1 " "$LAB_RUN/agent$i.log"
	done
}

@test "tokens: mode 0600 everywhere, never printed by provisioning" {
	[ -s "$PROV_LOG" ]
	for f in "$LAB_RUN/share/worker.token" "$HOSTS/sched/var/lib/shoal/scheduler/worker.token" \
		"$HOSTS/sched/var/lib/shoal/scheduler/admin.token" "$HOSTS"/node{1,2,3}/etc/shoal/worker.token; do
		[ "$(stat -c %a "$f")" = 600 ]
	done
	for f in worker admin; do
		tok=$(cat "$HOSTS/sched/var/lib/shoal/scheduler/$f.token")
		[ -n "$tok" ]
		run grep -cF -- "${tok##*-}" "$PROV_LOG" "$LAB_RUN"/*.log
		[ "$status" -eq 1 ]
	done
}

@test "generated units verify (Restart=on-failure) and profile.d is shellcheck-clean" {
	sched_unit="$HOSTS/sched/etc/systemd/system/shoal-scheduler.service"
	reg_unit="$HOSTS/sched/etc/systemd/system/shoal-registry.service"
	agent_unit="$HOSTS/node1/etc/systemd/system/shoal-agent.service"
	grep -qx 'Restart=on-failure' "$sched_unit"
	grep -qx 'Restart=on-failure' "$agent_unit"
	grep -qx 'KillMode=process' "$agent_unit"
	grep -q -- "--listen $(lab addr sched):7100" "$sched_unit"
	grep -qx "Restart=on-failure" "$reg_unit"
	if command -v systemd-analyze >/dev/null; then
		run systemd-analyze verify "$sched_unit" "$reg_unit" "$agent_unit"
		echo "$output"
		[ "$status" -eq 0 ]
	fi
	shellcheck -s sh "$PROFILE"
}

@test "a second lab provision changes nothing and restarts nothing" {
	# A change made by hand since stays: the demo service is created only if absent.
	vshoal scale web=4 --detach
	wait_until 30 web_runs 4
	before=$(daemon_pids)
	run timeout 300 bash "$LAB_BIN" provision 3
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c 'runs, unchanged' <<<"$output")" -eq 5 ] # scheduler, registry, 3 agents
	# The registry has every blob already: nothing uploaded again.
	[[ $output == *"shoal/web:2 "*"0 uploaded, 0 bytes"* ]]
	[[ $output == *"cluster exists"* ]]
	[[ $output == *"service web exists, left as it is"* ]]
	[ "$(daemon_pids)" = "$before" ]
	[ "$(running_web)" -eq 4 ]
	run vshoal services
	[[ $output == *"web"*"4/4"* ]]
}

@test "lab down removes the provisioned lab: processes, hosts' files, namespaces" {
	pids=$(daemon_pids)
	timeout 60 bash "$LAB_BIN" down
	[ ! -e "$LAB_RUN" ]
	[ -z "$(ip netns list | grep -E "^shoal-${LAB_ID:+$LAB_ID-}(sched|node[0-9]+|lab-br)( |$)" || true)" ]
	for p in $pids; do # gone, or a zombie its new parent has not reaped yet
		[ ! -e "/proc/$p" ] || [ "$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f1)" = Z ]
	done
}

@test "SCHEDULERS=3 lab provision 2: etcd and a scheduler on sched1..3 with one identity, one leads, web runs; down removes it all" {
	local i n pids=""
	SCHEDULERS=3 run timeout 600 bash "$LAB_BIN" provision 2
	echo "$output" | tail -30
	[ "$status" -eq 0 ]
	[[ $output == *"Leader: 192.168.56."* ]]
	[[ $output == *"3 replicas of web run"* ]]
	for i in 1 2 3; do
		[ -d "$LAB_RUN/hosts/sched$i/var/lib/shoal/etcd/member" ]
		cmp "$LAB_RUN/hosts/sched1/var/lib/shoal/scheduler/scheduler.key" \
			"$LAB_RUN/hosts/sched$i/var/lib/shoal/scheduler/scheduler.key"
		[ "$(stat -c %a "$LAB_RUN/hosts/sched$i/var/lib/shoal/scheduler/admin.token")" = 600 ]
	done
	grep -q -- "--scheduler 192.168.56.5:7100,192.168.56.6:7100,192.168.56.7:7100 " \
		"$LAB_RUN/hosts/node1/etc/systemd/system/shoal-agent.service"
	for n in etcd1 etcd2 etcd3 sched1 sched2 sched3 registry agent1 agent2; do
		pids+=" $(lab pid "$n")"
	done
	timeout 60 bash "$LAB_BIN" down
	[ ! -e "$LAB_RUN" ]
	for p in $pids; do
		[ ! -e "/proc/$p" ] || [ "$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f1)" = Z ]
	done
}
