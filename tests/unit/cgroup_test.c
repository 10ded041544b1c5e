/* Unit tests for runtime/cgroup: the values a user types, and what the v2 writer leaves in a
 * (fake) cgroupfs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "err.h"
#include "util.h"
#include "runtime/cgroup.h"
#include "fixture.h"

static void
test_parse_cpus(void **state)
{
	struct shoal_err err;
	int64_t q, p;

	(void)state;
	assert_int_equal(cgroup_parse_cpus("0.5", &q, &p, &err), 0);
	assert_int_equal(q, 50000);
	assert_int_equal(p, 100000);
	assert_int_equal(cgroup_parse_cpus("2", &q, &p, &err), 0);
	assert_int_equal(q, 200000);
	assert_int_equal(cgroup_parse_cpus("1.25", &q, &p, &err), 0);
	assert_int_equal(q, 125000);
	assert_int_equal(cgroup_parse_cpus("0", &q, &p, &err), -1);
	assert_int_equal(cgroup_parse_cpus("-1", &q, &p, &err), -1);
	assert_int_equal(cgroup_parse_cpus("half", &q, &p, &err), -1);
	assert_string_equal(err.msg, "invalid cpus \"half\" (want a number of CPUs such as 0.5)");
	assert_int_equal(cgroup_parse_cpus("0.001", &q, &p, &err), -1);
	assert_int_equal(cgroup_parse_cpus("1x", &q, &p, &err), -1);
}

static void
test_parse_memory(void **state)
{
	struct shoal_err err;
	int64_t b;

	(void)state;
	assert_int_equal(cgroup_parse_memory("64Mi", &b, &err), 0);
	assert_int_equal(b, 64 * 1024 * 1024);
	assert_int_equal(cgroup_parse_memory("1Gi", &b, &err), 0);
	assert_int_equal(b, 1073741824LL);
	assert_int_equal(cgroup_parse_memory("16M", &b, &err), 0);
	assert_int_equal(b, 16000000);
	assert_int_equal(cgroup_parse_memory("12x", &b, &err), -1);
	assert_string_equal(
	    err.msg, "memory: invalid size \"12x\" (want a number with Ki, Mi, Gi, k, M or G)");
	assert_int_equal(cgroup_parse_memory("1Ki", &b, &err), -1);
	assert_string_equal(err.msg, "memory \"1Ki\" too small (at least 4Mi)");
}

static void
test_parse_pids(void **state)
{
	struct shoal_err err;
	int64_t n;

	(void)state;
	assert_int_equal(cgroup_parse_pids("256", &n, &err), 0);
	assert_int_equal(n, 256);
	assert_int_equal(cgroup_parse_pids("0", &n, &err), -1);
	assert_int_equal(cgroup_parse_pids("12a", &n, &err), -1);
}

static char *
slurp(const char *dir, const char *file)
{
	cleanup_free char *p = xasprintf("%s/%s", dir, file);
	return util_read_file(p, NULL, NULL);
}

static void
put(const char *dir, const char *file, const char *data)
{
	cleanup_free char *p = xasprintf("%s/%s", dir, file);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(data, f);
	fclose(f);
}

/* The contents of dir/file are want. */
static void
assert_file(const char *dir, const char *file, const char *want)
{
	cleanup_free char *v = slurp(dir, file);

	assert_non_null(v);
	assert_string_equal(v, want);
}

/* A fake cgroupfs (rm with fixture_rmtree; a fake dir holds files, so rmdir fails). v1: one
 * directory per controller of CTRLS. */
static const char *const CTRLS[] = {"cpu", "cpuacct", "memory", "pids"};

static void
fake_v1(char dir[64])
{
	assert_int_equal(fixture_tmpdir(dir, 64, "cgroup"), 0);
	for (size_t i = 0; i < ARRAY_SIZE(CTRLS); i++) {
		cleanup_free char *c = xasprintf("%s/%s", dir, CTRLS[i]);
		assert_int_equal(mkdir(c, 0755), 0);
	}
}

/* v2: one tree, its root listing the controllers. */
static void
fake_v2(char dir[64])
{
	assert_int_equal(fixture_tmpdir(dir, 64, "cgroup"), 0);
	put(dir, "cgroup.controllers", "cpu memory pids\n");
}

static void
test_detect(void **state)
{
	char dir[64];

	(void)state;
	assert_int_equal(fixture_tmpdir(dir, sizeof(dir), "cgroup"), 0);
	/* No cgroup.controllers at the root: v1. */
	assert_ptr_equal(cgroup_detect(dir), &cgroup_ops_v1);
	/* A hybrid host's unified tree lists only hugetlb: still v1. */
	put(dir, "cgroup.controllers", "hugetlb\n");
	assert_ptr_equal(cgroup_detect(dir), &cgroup_ops_v1);
	put(dir, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
	assert_ptr_equal(cgroup_detect(dir), &cgroup_ops_v2);
	cleanup_free char *f = xasprintf("%s/cgroup.controllers", dir);
	unlink(f);
	rmdir(dir);
}

/* v1 against a fake cgroupfs (one directory per controller): limits in each, and joining goes
 * through "tasks", never cgroup.procs (which would cost an RCU grace period per start). */
static void
test_v1_writer(void **state)
{
	char dir[64];
	struct shoal_err err;
	struct cgroup_limits l = {50000, 100000, 64 * 1024 * 1024, 256};
	struct cgroup *cg;

	(void)state;
	fake_v1(dir);
	cg = cgroup_new(dir, "shoal/c1", &cgroup_ops_v1);
	assert_int_equal(cgroup_create(cg, &l, &err), 0);
	cleanup_free char *cpu = xasprintf("%s/cpu/shoal/c1", dir);
	cleanup_free char *mem = xasprintf("%s/memory/shoal/c1", dir);
	cleanup_free char *pids = xasprintf("%s/pids/shoal/c1", dir);
	assert_file(cpu, "cpu.cfs_quota_us", "50000");
	assert_file(mem, "memory.limit_in_bytes", "67108864");
	assert_file(pids, "pids.max", "256");
	assert_int_equal(cg->nprocs, 4);
	assert_int_equal(cgroup_enter_self(cg, &err), 0);
	for (size_t i = 0; i < 4; i++) {
		cleanup_free char *leaf = xasprintf("%s/%s/shoal/c1", dir, CTRLS[i]);
		assert_file(leaf, "tasks", "0");
		assert_null(slurp(leaf, "cgroup.procs"));
	}
	cgroup_close_fds(cg);
	assert_int_equal(fixture_rmtree(dir), 0);
	cgroup_free(cg);
}

static void
test_v2_writer(void **state)
{
	char dir[64];
	struct shoal_err err;
	struct cgroup_limits l = {50000, 100000, 64 * 1024 * 1024, 256};
	struct cgroup *cg;
	bool oom = true;

	(void)state;
	fake_v2(dir);
	cg = cgroup_new(dir, "shoal/c1", NULL);
	assert_ptr_equal(cg->ops, &cgroup_ops_v2);
	assert_int_equal(cgroup_create(cg, &l, &err), 0);
	cleanup_free char *leaf = xasprintf("%s/shoal/c1", dir);
	cleanup_free char *mid = xasprintf("%s/shoal", dir);
	cleanup_free char *v;
	assert_file(leaf, "cpu.max", "50000 100000");
	assert_file(leaf, "memory.max", "67108864");
	assert_file(leaf, "memory.swap.max", "0");
	assert_file(leaf, "pids.max", "256");
	/* Controllers enabled for children at the root and at shoal/, not in the leaf. */
	assert_file(dir, "cgroup.subtree_control", "+cpu +memory +pids");
	assert_file(mid, "cgroup.subtree_control", "+cpu +memory +pids");
	v = slurp(leaf, "cgroup.subtree_control");
	assert_null(v);
	/* Joining writes "0" (the writer itself) to cgroup.procs. */
	assert_int_equal(cg->nprocs, 1);
	assert_int_equal(cgroup_enter_self(cg, &err), 0);
	assert_file(leaf, "cgroup.procs", "0");
	cgroup_close_fds(cg);

	put(leaf, "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n");
	assert_int_equal(cgroup_oom_killed(cg, &oom, &err), 0);
	assert_false(oom);
	put(leaf, "memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n");
	assert_int_equal(cgroup_oom_killed(cg, &oom, &err), 0);
	assert_true(oom);

	assert_int_equal(fixture_rmtree(dir), 0);
	cgroup_free(cg);
}

/* v1 with no limit in the spec: the pids default lands in pids.max, nothing else is written;
 * without a pids controller the default is skipped, but an explicit limit fails. */
static void
test_v1_default_pids(void **state)
{
	char dir[64];
	struct shoal_err err;
	struct cgroup_limits l = {0};
	struct cgroup *cg;
	char *v;

	(void)state;
	fake_v1(dir);
	cg = cgroup_new(dir, "shoal/c1", &cgroup_ops_v1);
	assert_int_equal(cgroup_create(cg, &l, &err), 0);
	cleanup_free char *pids = xasprintf("%s/pids/shoal/c1", dir);
	cleanup_free char *mem = xasprintf("%s/memory/shoal/c1", dir);
	assert_non_null((v = slurp(pids, "pids.max")));
	assert_string_equal(v, "4096");
	free(v);
	assert_null(slurp(mem, "memory.limit_in_bytes"));
	/* The parent of every container holds 3/4 of the host's pids. */
	cleanup_free char *parent = xasprintf("%s/pids/shoal", dir);
	cleanup_free char *want = xasprintf("%lld", (long long)cgroup_host_pids_cap());
	assert_true(cgroup_host_pids_cap() > 0);
	assert_non_null((v = slurp(parent, "pids.max")));
	assert_string_equal(v, want);
	free(v);
	cgroup_free(cg);

	/* A host without the pids controller: the default is skipped, an explicit limit is not. */
	v = xasprintf("rm -rf %s/pids", dir);
	assert_int_equal(system(v), 0);
	free(v);
	cg = cgroup_new(dir, "shoal/c2", &cgroup_ops_v1);
	assert_int_equal(cgroup_create(cg, &l, &err), 0);
	cgroup_free(cg);
	l.pids = 100;
	cg = cgroup_new(dir, "shoal/c3", &cgroup_ops_v1);
	assert_int_equal(cgroup_create(cg, &l, &err), -1);
	cgroup_free(cg);

	assert_int_equal(fixture_rmtree(dir), 0);
}

static void
test_v2_no_limits(void **state)
{
	char dir[64];
	struct shoal_err err;
	struct cgroup_limits l = {0};
	struct cgroup *cg;

	(void)state;
	fake_v2(dir);
	cg = cgroup_new(dir, "shoal/c2", NULL);
	assert_int_equal(cgroup_create(cg, &l, &err), 0);
	cleanup_free char *leaf = xasprintf("%s/shoal/c2", dir);
	cleanup_free char *p = xasprintf("%s/memory.max", leaf);
	/* No limit: nothing written, the kernel default ("max") stays. */
	assert_int_equal(access(p, F_OK), -1);
	/* But pids: a fork bomb would take the host's pids, so a default applies. */
	cleanup_free char *v = slurp(leaf, "pids.max");
	assert_non_null(v);
	assert_string_equal(v, "4096");
	assert_int_equal(fixture_rmtree(dir), 0);
	cgroup_free(cg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_cpus),   cmocka_unit_test(test_parse_memory),
	    cmocka_unit_test(test_parse_pids),   cmocka_unit_test(test_detect),
	    cmocka_unit_test(test_v1_writer),    cmocka_unit_test(test_v2_writer),
	    cmocka_unit_test(test_v2_no_limits), cmocka_unit_test(test_v1_default_pids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
