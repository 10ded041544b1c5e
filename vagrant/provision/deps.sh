#!/usr/bin/env bash
# Install Shoal's build, test and lab dependencies from Debian's archive.
# Shared by `make deps`, CI and the Vagrant VMs' provisioning.
#   deps.sh           install whatever is missing (idempotent)
#   deps.sh --check   exit 1 when something is missing, install nothing
#   deps.sh --bench   also the peers the benchmarks compare against
#   deps.sh --build-only   only what building and running Shoal needs (the lab VMs:
#                          compiler, libraries, busybox-static for `make images`), no
#                          test tools
#   deps.sh --registry     only the image registry the scheduler host runs (docker-registry)
set -euo pipefail

build_pkgs=(gcc make pkg-config libc6-dev
	libevent-dev libprotobuf-c-dev protobuf-c-compiler libyaml-dev libsodium-dev
	libsqlite3-dev libarchive-dev libseccomp-dev libmnl-dev libjansson-dev libcurl4-openssl-dev libssl-dev)
run_pkgs=(iproute2 procps busybox-static)
# vagrant-libvirt lets `vagrant validate` load the Vagrantfile's libvirt settings.
test_pkgs=(libcmocka-dev bats shellcheck ruby vagrant vagrant-libvirt
	clang libclang-rt-14-dev clang-format sqlite3 jq iptables curl
	docker-registry skopeo umoci apache2-utils openssl libcap2-bin
	prometheus chromium etcd-server etcd-client)
bench_pkgs=(haproxy crun wrk hyperfine nginx-light)

mode=install
tests=1
bench=0
registry=0
for arg in "$@"; do
	case "$arg" in
	--check) mode=check ;;
	--bench) bench=1 ;;
	--build-only) tests=0 ;;
	--registry) registry=1 ;;
	*)
		echo "usage: deps.sh [--check] [--bench] [--build-only] [--registry]" >&2
		exit 2
		;;
	esac
done
pkgs=("${build_pkgs[@]}" "${run_pkgs[@]}")
[ "$registry" = 0 ] || pkgs=(docker-registry)
[ "$tests" = 0 ] || pkgs+=("${test_pkgs[@]}")
[ "$bench" = 0 ] || pkgs+=("${bench_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
if [ "$mode" = check ]; then
	echo "missing: ${missing[*]}"
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: need root to install: ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
apt-get -o DPkg::Lock::Timeout=600 -q update >/dev/null
apt-get "${apt_opts[@]}" install "${missing[@]}" >/dev/null
echo "deps: done"
