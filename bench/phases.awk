# Per-phase medians of container starts traced with SHOALRT_TRACE (runtime/trace.h).
#   awk -f bench/phases.awk TRACE...     one file per start, lines "PHASE PID MONO_NS REAL_US";
# the caller adds "bench-start" and "bench-end" lines (PID 0, MONO_NS 0) with its own wall
# clock before the program's exec and after it returned. Each phase is charged the time since
# the mark before it on the start's timeline (all processes together), in wall-clock
# microseconds, the one clock the caller shares with the traced processes. -v caller=NAME names
# the starting process (default shoalrt).
function median(key, n,    i, v, m, t) {
	m = 0
	for (i = 1; i <= n; i++)
		v[++m] = vals[key, i]
	# insertion sort: a few hundred values at most
	for (i = 2; i <= m; i++) {
		t = v[i]
		for (j = i - 1; j >= 1 && v[j] > t; j--)
			v[j + 1] = v[j]
		v[j + 1] = t
	}
	return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
FNR == 1 && NR > 1 { flush() }
{ name[++nl] = $1; pid[nl] = $2; t[nl] = $4 }
END {
	flush()
	printf "  %-28s %9s %9s %s\n", "phase (process)", "step ms", "at ms", "(medians)"
	for (k = 1; k <= np; k++) {
		p = order[k]
		at[p] = median("at" SUBSEP p, cnt[p])
	}
	# order by median time since the start
	for (i = 2; i <= np; i++) {
		x = order[i]
		for (j = i - 1; j >= 1 && at[order[j]] > at[x]; j--)
			order[j + 1] = order[j]
		order[j + 1] = x
	}
	for (k = 1; k <= np; k++) {
		p = order[k]
		printf "  %-28s %9.2f %9.2f\n", p " (" who[p] ")", median("step" SUBSEP p, cnt[p]) / 1000,
		    at[p] / 1000
	}
}
function flush(    i, j, x, y, s) {
	if (nl == 0)
		return
	# sort this start's marks by time
	for (i = 2; i <= nl; i++) {
		x = t[i]; y = name[i]; s = pid[i]
		for (j = i - 1; j >= 1 && t[j] > x; j--) {
			t[j + 1] = t[j]; name[j + 1] = name[j]; pid[j + 1] = pid[j]
		}
		t[j + 1] = x; name[j + 1] = y; pid[j + 1] = s
	}
	starter = ""
	for (i = 1; i <= nl && starter == ""; i++)
		if (pid[i] != 0)
			starter = pid[i]
	for (i = 1; i <= nl; i++) {
		p = name[i]
		if (!(p in cnt)) {
			order[++np] = p
			cnt[p] = 0
		}
		c = ++cnt[p]
		vals["step", p, c] = i > 1 ? t[i] - t[i - 1] : 0
		vals["at", p, c] = t[i] - t[1]
		if (!(p in who))
			who[p] = pid[i] == 0 ? "bench" : pid[i] == 1 ? "container" : pid[i] == starter ? (caller != "" ? caller : "shoalrt") : "shim"
	}
	nl = 0
}
