# README.md and `shoal --help` in step: every command `shoal --help` lists, and every flag its
# own `--help` prints, is in the README's CLI reference, and the reference names no command
# that does not exist. A reader who knows Docker learns the CLI from the README, so a new
# command or flag that is not documented there, or a removed one still documented, fails here.
# Needs only the built binaries: no lab, no root.

load helpers

README="$SHOAL_ROOT/README.md"

# The README's "## CLI reference" section, up to the next level-2 heading.
cli_reference() {
	awk '/^## CLI reference/ { on = 1; next } on && /^## / { exit } on' "$README"
}

# The commands of `shoal --help`: the first word of each line of its "Commands:" section.
help_commands() {
	"$SHOAL_BIN/shoal" --help | awk '/^Commands:/ { on = 1; next } on && /^$/ { exit }
		on && /^  [a-z]/ { print $1 }'
}

# The flags in a help text on stdin: words that start with - or -- and a letter, wherever they
# stand ("[-a]", "-f, --follow", "(--help)"), once each.
flags_of() {
	grep -oE '(^|[][ (`,|])--?[a-z][a-z0-9-]*' | sed -E 's/^[][ (`,|]//' | sort -u
}

# Does text on stdin hold FLAG as a whole word (so -f is not found inside --follow)?
has_flag() {
	grep -qE -- "(^|[^a-zA-Z0-9-])$1([^a-zA-Z0-9-]|\$)"
}

@test "README starts with the two commands: make demo and make test" {
	head -15 "$README" | grep -q 'make demo'
	head -15 "$README" | grep -q 'make test'
}

@test "shoal --help lists commands (the parser below sees them)" {
	run help_commands
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -ge 5 ]
	[[ " ${lines[*]} " == *" apply "* ]]
}

@test "every command of shoal --help is in the README's CLI reference" {
	local ref missing=() c
	ref=$(cli_reference)
	[ -n "$ref" ]
	for c in $(help_commands); do
		grep -qE "\`shoal $c( |\`)" <<<"$ref" || missing+=("$c")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "README.md's CLI reference lacks: ${missing[*]}"
		return 1
	fi
}

@test "every flag of shoal COMMAND --help is on that command's README line" {
	local ref lines missing=() c f
	ref=$(cli_reference)
	for c in $(help_commands); do
		lines=$(grep -E "\`shoal $c( |\`)" <<<"$ref" || true)
		for f in $("$SHOAL_BIN/shoal" "$c" --help | flags_of); do
			has_flag "$f" <<<"$lines" || missing+=("$c $f")
		done
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		printf 'README.md lacks the flag on its shoal COMMAND line: %s\n' "${missing[@]}"
		return 1
	fi
}

@test "every global option of shoal --help is in the README's CLI reference" {
	local ref missing=() f
	ref=$(cli_reference)
	for f in $("$SHOAL_BIN/shoal" --help | sed -n '/^Options/,$p' | flags_of); do
		has_flag "$f" <<<"$ref" || missing+=("$f")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "README.md's CLI reference lacks: ${missing[*]}"
		return 1
	fi
}

@test "every shoal command in the README's CLI reference exists (no stale docs)" {
	local known stale=() c
	known=" $(help_commands | tr '\n' ' ') "
	for c in $(cli_reference | grep -oE '`shoal [a-z]+' | awk '{ print $2 }' | sort -u); do
		[[ $known == *" $c "* ]] || stale+=("$c")
	done
	if [ "${#stale[@]}" -gt 0 ]; then
		echo "README.md documents commands shoal --help does not list: ${stale[*]}"
		return 1
	fi
}

@test "every flag of shoal-scheduler, shoal-agent (cleanup, proxy) is in the README's CLI reference" {
	local ref missing=() f
	ref=$(cli_reference)
	for f in $({
		"$SHOAL_BIN/shoal-scheduler" --help
		"$SHOAL_BIN/shoal-agent" --help
		"$SHOAL_BIN/shoal-agent" cleanup --help
		"$SHOAL_BIN/shoal-agent" proxy --help
	} | flags_of); do
		has_flag "$f" <<<"$ref" || missing+=("$f")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "README.md's CLI reference lacks: ${missing[*]}"
		return 1
	fi
}

@test "every shoalrt verb is in the README's CLI reference" {
	local ref missing=() v
	ref=$(cli_reference)
	for v in $("$SHOAL_BIN/shoalrt" --help | awk '/^Verbs:/ { on = 1; next } on && /^  [a-z]/ { print $1 }'); do
		grep -qE "\`$v( |\`)" <<<"$ref" || missing+=("$v")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "README.md's shoalrt reference lacks: ${missing[*]}"
		return 1
	fi
}
