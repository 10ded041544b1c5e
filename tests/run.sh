#!/usr/bin/env bash
# Run Shoal's tests and print one closing line: "N passed, N failed".
#   tests/run.sh                 unit tests, then integration tests
#   tests/run.sh --unit          unit tests only
#   tests/run.sh --integration   integration tests only (root, network namespaces)
# Every test binary speaks TAP (cmocka via CMOCKA_MESSAGE_OUTPUT, bats via --tap);
# the counts come from its "ok" / "not ok" lines.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
export BUILD
export SHOAL_BIN
SHOAL_BIN=$(cd "$BUILD" && pwd)

run_unit=1
run_integ=1
case "${1:-}" in
--unit) run_integ=0 ;;
--integration) run_unit=0 ;;
"") ;;
*)
	echo "usage: tests/run.sh [--unit|--integration]" >&2
	exit 2
	;;
esac

passed=0
failed=0
log=$(mktemp)
fails=$(mktemp)
trap 'rm -f "$log" "$fails"' EXIT

# Count TAP results from a file; a runner that died without a plan's worth of results
# counts one failure so a crash never reads as green.
count() {
	local file=$1 status=$2 name=$3 p f
	p=$(grep -cE '^ok ' "$file")
	# cmocka reports a skipped test as "not ok ... # SKIP": a skip, not a failure.
	f=$(grep -E '^not ok ' "$file" | grep -cv '# SKIP')
	if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name exited $status without a failing test (crash?)" | tee -a "$fails"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	# Keep each failure with its diagnostics (the "#" lines after it) for the summary, so
	# the tail of a long CI log says what failed.
	awk -v n="$name" '/^not ok .*# SKIP/{keep=0; next} /^not ok /{keep=1; c=0; print "[" n "] " $0; next}
		/^(ok |[0-9]+\.\.[0-9]+)/{keep=0} keep && c < 40 {print; c++}' "$file" >>"$fails"
}

if [ "$run_unit" = 1 ]; then
	echo "== unit tests"
	for t in "$BUILD"/tests/unit/*_test; do
		[ -x "$t" ] || continue
		name=$(basename "$t")
		CMOCKA_MESSAGE_OUTPUT=TAP timeout 300 "$t" >"$log" 2>&1
		st=$?
		sed "s/^/[$name] /" "$log"
		count "$log" "$st" "$name"
	done
	# No include cycle among the headers of each program and of the library they share
	# (tests/tools/include-cycles.sh).
	bash tests/tools/include-cycles.sh common scheduler agent runtime cli >"$log" 2>&1
	st=$?
	sed "s/^/[include-cycles] /" "$log"
	count "$log" "$st" include-cycles
fi

if [ "$run_integ" = 1 ]; then
	echo "== integration tests"
	if [ "$(id -u)" -ne 0 ]; then
		echo "not ok - integration tests need root (network namespaces)"
		failed=$((failed + 1))
	else
		files=(tests/integration/*.bats)
		if [ -e "${files[0]}" ]; then
			timeout 1500 bats --tap "${files[@]}" >"$log" 2>&1
			st=$?
			cat "$log"
			count "$log" "$st" bats
		fi
	fi
fi

if [ -s "$fails" ]; then
	echo "== failures"
	cat "$fails"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
