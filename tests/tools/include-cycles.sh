#!/usr/bin/env bash
# Fail when a program's own headers include each other in a cycle.
#   tests/tools/include-cycles.sh [DIR...]   (default: scheduler)
# A module is foo.c plus foo.h; a types header foo-t.h is a node of its own (it holds the
# structs others embed, foo.h the functions), so "server.c includes api.h, api.c includes
# server-t.h" is no cycle while "api.c includes logs.h, logs.c includes api.h" is. Only
# headers of the same directory count: common/ is below every program. A types header may
# include only types headers and leaf headers (ones that include none of the directory's
# own), so the types never pull the functions in. Prints TAP, one line per directory; tsort
# finds the loops.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(scheduler)
echo "1..${#dirs[@]}"
n=0
bad=0

# Does header h include no header of its own directory?
leaf() {
	local h=$1 i
	while read -r i; do
		i=${i#"$(dirname "$h")"/}
		[ -e "$(dirname "$h")/$i" ] && return 1
	done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$h")
	return 0
}
for d in "${dirs[@]}"; do
	n=$((n + 1))
	edges=$(mktemp)
	problems=""
	for f in "$d"/*.c "$d"/*.h; do
		[ -e "$f" ] || continue
		base=$(basename "$f")
		case "$base" in
		*-t.h) from=${base%.h} ;;
		*) from=${base%.*} ;;
		esac
		echo "$from $from" >>"$edges"
		while read -r inc; do
			inc=${inc#"$d"/}
			[ -e "$d/$inc" ] || continue
			to=${inc%.h}
			[ "$to" = "$from" ] && continue
			case "$base" in
			*-t.h)
				case "$inc" in
				*-t.h) ;;
				*) leaf "$d/$inc" || problems+="$f: a types header includes $inc (not a types header)"$'\n' ;;
				esac
				;;
			esac
			echo "$from $to" >>"$edges"
		done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
	done
	loops=$(tsort "$edges" 2>&1 >/dev/null)
	rm -f "$edges"
	if [ -n "$loops" ] || [ -n "$problems" ]; then
		echo "not ok $n - $d: include cycle"
		printf '%s\n%s' "$loops" "$problems" | sed '/^$/d; s/^/# /'
		bad=1
	else
		echo "ok $n - $d: no include cycle"
	fi
done
exit $bad
