/* Unit tests for runtime/spawn: finding, from a line of /proc/PID/cgroup, the directory an
 * exec'd process joins (the container's cgroup in every hierarchy, as its init is). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>

#include "err.h"
#include "util.h"
#include "runtime/spawn_exec.h"

/* A hybrid host as this machine's: v1 controllers, some co-mounted, systemd's named
 * hierarchy, the unified one at unified/, and one subtree bind mount. */
static const char MOUNTINFO[] =
    "22 27 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "26 22 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
    "27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 "
    "cgroup2 rw,nsdelegate\n"
    "28 26 0:26 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup "
    "cgroup rw,xattr,name=systemd\n"
    "32 26 0:30 /sub /mnt/cpusub rw,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct\n"
    "33 26 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - "
    "cgroup cgroup rw,cpu,cpuacct\n"
    "34 26 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup "
    "cgroup rw,memory\n"
    "35 26 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup "
    "cgroup rw,pids\n";

static const char *
dir_of(const char *mountinfo, const char *line)
{
	static char out[256];

	if (spawn_exec_cgroup_dir(mountinfo, line, out, sizeof(out)) == -1)
		return "(none)";
	return out;
}

static void
test_cgroup_dir_v1(void **state)
{
	(void)state;
	assert_string_equal(dir_of(MOUNTINFO, "4:memory:/shoal/ab12"),
	                    "/sys/fs/cgroup/memory/shoal/ab12");
	assert_string_equal(dir_of(MOUNTINFO, "8:pids:/shoal/ab12\n"),
	                    "/sys/fs/cgroup/pids/shoal/ab12");
	/* Co-mounted controllers: the mount whose options hold both. */
	assert_string_equal(dir_of(MOUNTINFO, "2:cpu,cpuacct:/shoal/ab12"),
	                    "/sys/fs/cgroup/cpu,cpuacct/shoal/ab12");
	/* A named hierarchy. */
	assert_string_equal(dir_of(MOUNTINFO, "1:name=systemd:/user.slice"),
	                    "/sys/fs/cgroup/systemd/user.slice");
	/* The root of a hierarchy is its mount point. */
	assert_string_equal(dir_of(MOUNTINFO, "4:memory:/"), "/sys/fs/cgroup/memory");
	/* A controller mounted nowhere, and a prefix of an option that is not one. */
	assert_string_equal(dir_of(MOUNTINFO, "5:devices:/shoal/ab12"), "(none)");
	assert_string_equal(dir_of(MOUNTINFO, "6:mem:/x"), "(none)");
}

static void
test_cgroup_dir_v2(void **state)
{
	(void)state;
	assert_string_equal(dir_of(MOUNTINFO, "0::/shoal/ab12"),
	                    "/sys/fs/cgroup/unified/shoal/ab12");
	/* A v2-only host: the unified hierarchy at the cgroupfs root. */
	assert_string_equal(dir_of("30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
	                           "0::/system.slice/shoal-agent.service"),
	                    "/sys/fs/cgroup/system.slice/shoal-agent.service");
	/* No v2 mount at all. */
	assert_string_equal(
	    dir_of("35 26 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n", "0::/"),
	    "(none)");
}

static void
test_cgroup_dir_subtree(void **state)
{
	static const char only_sub[] =
	    "32 26 0:30 /sub /mnt/cpusub rw,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct\n";

	(void)state;
	/* A bind mount of /sub shows what is under /sub, and nothing else. */
	assert_string_equal(dir_of(only_sub, "2:cpu,cpuacct:/sub/x"), "/mnt/cpusub/x");
	assert_string_equal(dir_of(only_sub, "2:cpu,cpuacct:/sub"), "/mnt/cpusub");
	assert_string_equal(dir_of(only_sub, "2:cpu,cpuacct:/subway"), "(none)");
	assert_string_equal(dir_of(only_sub, "2:cpu,cpuacct:/other"), "(none)");
}

static void
test_cgroup_dir_bad_lines(void **state)
{
	(void)state;
	assert_string_equal(dir_of(MOUNTINFO, ""), "(none)");
	assert_string_equal(dir_of(MOUNTINFO, "garbage"), "(none)");
	assert_string_equal(dir_of(MOUNTINFO, "4:memory:"), "(none)");
	assert_string_equal(dir_of(MOUNTINFO, "4:memory:relative"), "(none)");
	assert_string_equal(dir_of("", "4:memory:/x"), "(none)");
	assert_string_equal(dir_of("truncated line without fields", "4:memory:/x"), "(none)");
}

/* An exec'd process copies the init's limits from /proc/PID/limits: ours, read that way, are
 * what getrlimit says. */
static void
test_parse_limits_self(void **state)
{
	struct rlimit got[RLIM_NLIMITS], want;
	struct shoal_err err;
	char *text = util_read_file("/proc/self/limits", NULL, &err);

	(void)state;
	assert_non_null(text);
	assert_int_equal(spawn_exec_parse_limits(text, got, &err), 0);
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		assert_int_equal(getrlimit((enum __rlimit_resource)r, &want), 0);
		assert_true(got[r].rlim_cur == want.rlim_cur);
		assert_true(got[r].rlim_max == want.rlim_max);
	}
	free(text);
}

static void
test_parse_limits_bad(void **state)
{
	struct rlimit got[RLIM_NLIMITS];
	struct shoal_err err;

	(void)state;
	assert_int_equal(spawn_exec_parse_limits("", got, &err), -1);
	assert_int_equal(
	    spawn_exec_parse_limits("Limit   Soft Limit  Hard Limit  Units\n", got, &err), -1);
	assert_string_equal(err.msg, "0 limits, want 16");
	assert_int_equal(spawn_exec_parse_limits("Limit\n"
	                                         "Max cpu time              lots                 "
	                                         "unlimited            seconds\n",
	                                         got, &err),
	                 -1);
	assert_string_equal(err.msg, "cannot parse limit \"Max cpu time              lots"
	                             "                 unlimited            seconds\"");
	assert_int_equal(spawn_exec_parse_limits("Limit\nshort\n", got, &err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cgroup_dir_v1),      cmocka_unit_test(test_cgroup_dir_v2),
	    cmocka_unit_test(test_cgroup_dir_subtree), cmocka_unit_test(test_cgroup_dir_bad_lines),
	    cmocka_unit_test(test_parse_limits_self),  cmocka_unit_test(test_parse_limits_bad),
	};
	return cmocka_run_group_tests_name("spawn", tests, NULL, NULL);
}
