#include "resources.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* v1 reports "no limit" as a huge page-aligned number; anything above 2^62 is unlimited. */
#define UNLIMITED_ABOVE (INT64_C(1) << 62)

int64_t
resources_parse_limit(const char *text)
{
	char *end;
	long long v;

	if (text == NULL || strncmp(text, "max", 3) == 0)
		return -1;
	v = strtoll(text, &end, 10);
	if (end == text || v <= 0 || v >= UNLIMITED_ABOVE)
		return -1;
	return v;
}

int64_t
resources_parse_cpu_max(const char *text)
{
	long long quota, period;

	if (text == NULL || strncmp(text, "max", 3) == 0)
		return -1;
	if (sscanf(text, "%lld %lld", &quota, &period) != 2 || quota <= 0 || period <= 0)
		return -1;
	return quota * 1000 / period;
}

static char *
read_small(const char *path)
{
	return util_read_file(path, NULL, NULL);
}

/* This process's cgroup path for a v1 controller (or "" for v2 when ctrl is NULL). */
static char *
own_cgroup(const char *ctrl)
{
	cleanup_free char *text = read_small("/proc/self/cgroup");
	char *save = NULL;

	if (text == NULL)
		return NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2;
		if (c1 == NULL || (c2 = strchr(c1 + 1, ':')) == NULL)
			continue;
		*c2 = '\0';
		if (ctrl == NULL) {
			if (c1[1] == '\0')
				return xstrdup(c2 + 1);
			continue;
		}
		/* c1+1 is a comma list such as "cpu,cpuacct". */
		char *list = c1 + 1, *s2 = NULL;
		for (char *t = strtok_r(list, ",", &s2); t; t = strtok_r(NULL, ",", &s2))
			if (strcmp(t, ctrl) == 0)
				return xstrdup(c2 + 1);
	}
	return NULL;
}

/* Read a limit file, walking from our cgroup up to the root: the tightest ancestor wins. */
static int64_t
tightest(const char *dir, const char *cgpath, const char *file, bool cpu_max)
{
	cleanup_free char *p = xstrdup(cgpath ? cgpath : "/");
	int64_t best = -1;

	for (;;) {
		cleanup_free char *path = xasprintf("%s%s/%s", dir, p, file);
		cleanup_free char *text = read_small(path);
		int64_t v = cpu_max ? resources_parse_cpu_max(text) : resources_parse_limit(text);
		char *slash;

		if (v > 0 && (best < 0 || v < best))
			best = v;
		slash = strrchr(p, '/');
		if (slash == NULL || p[0] == '\0' || strcmp(p, "/") == 0)
			break;
		*slash = '\0';
	}
	return best;
}

static int64_t
v1_cpu_quota(const char *cgroot)
{
	cleanup_free char *path = own_cgroup("cpu");
	cleanup_free char *dir = xasprintf("%s/cpu", cgroot);
	cleanup_free char *qpath = NULL, *ppath = NULL, *q = NULL, *pr = NULL;
	long long quota, period;

	if (path == NULL)
		return -1;
	qpath = xasprintf("%s%s/cpu.cfs_quota_us", dir, path);
	ppath = xasprintf("%s%s/cpu.cfs_period_us", dir, path);
	q = read_small(qpath);
	pr = read_small(ppath);
	if (q == NULL || pr == NULL)
		return -1;
	quota = strtoll(q, NULL, 10);
	period = strtoll(pr, NULL, 10);
	if (quota <= 0 || period <= 0)
		return -1;
	return quota * 1000 / period;
}

void
resources_capacity(const char *cgroot, struct resources *out)
{
	cleanup_free char *meminfo = read_small("/proc/meminfo");
	cleanup_free char *v1mem = own_cgroup("memory");
	cleanup_free char *v2 = own_cgroup(NULL);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int64_t mem = 0, lim, cpu;

	out->cpu_millis = (ncpu > 0 ? ncpu : 1) * 1000;
	if (meminfo) {
		char *p = strstr(meminfo, "MemTotal:");
		if (p)
			mem = strtoll(p + 9, NULL, 10) * 1024;
	}
	out->memory_bytes = mem;

	if (v1mem) {
		cleanup_free char *dir = xasprintf("%s/memory", cgroot);
		lim = tightest(dir, v1mem, "memory.limit_in_bytes", false);
		if (lim > 0 && lim < out->memory_bytes)
			out->memory_bytes = lim;
	}
	cpu = v1_cpu_quota(cgroot);
	if (cpu > 0 && cpu < out->cpu_millis)
		out->cpu_millis = cpu;
	if (v2) {
		/* Pure v2 hosts mount the unified tree at cgroot, hybrid ones at cgroot/unified. */
		cleanup_free char *uni = xasprintf("%s/unified", cgroot);
		const char *dirs[] = {cgroot, uni};
		for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
			lim = tightest(dirs[i], v2, "memory.max", false);
			if (lim > 0 && lim < out->memory_bytes)
				out->memory_bytes = lim;
			cpu = tightest(dirs[i], v2, "cpu.max", true);
			if (cpu > 0 && cpu < out->cpu_millis)
				out->cpu_millis = cpu;
		}
	}
}

void
resources_usage(struct resources_cpu_sample *prev, int64_t ncpu_millis, struct resources *out)
{
	cleanup_free char *stat = read_small("/proc/stat");
	cleanup_free char *meminfo = read_small("/proc/meminfo");
	unsigned long long v[8] = {0};

	out->cpu_millis = 0;
	out->memory_bytes = 0;
	if (stat && sscanf(stat, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
	                   &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		uint64_t idle = v[3] + v[4], total = 0, busy;
		for (int i = 0; i < 8; i++)
			total += v[i];
		busy = total - idle;
		if (prev->total && total > prev->total)
			out->cpu_millis = (int64_t)((busy - prev->busy) * (uint64_t)ncpu_millis /
			                            (total - prev->total));
		prev->busy = busy;
		prev->total = total;
	}
	if (meminfo) {
		char *t = strstr(meminfo, "MemTotal:"), *a = strstr(meminfo, "MemAvailable:");
		if (t && a)
			out->memory_bytes =
			    (strtoll(t + 9, NULL, 10) - strtoll(a + 13, NULL, 10)) * 1024;
	}
}
