/* Unit tests for agent/resources: cgroup limit files as v1 and v2 write them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/resources.h"

static void
test_limits(void **state)
{
	(void)state;
	assert_int_equal(resources_parse_limit("9223372036854771712\n"), -1); /* v1: none */
	assert_int_equal(resources_parse_limit("max\n"), -1);                 /* v2: none */
	assert_int_equal(resources_parse_limit("536870912\n"), 536870912);
	assert_int_equal(resources_parse_limit(""), -1);
	assert_int_equal(resources_parse_limit(NULL), -1);
}

static void
test_cpu_max(void **state)
{
	(void)state;
	assert_int_equal(resources_parse_cpu_max("max 100000\n"), -1);
	assert_int_equal(resources_parse_cpu_max("150000 100000\n"), 1500);
	assert_int_equal(resources_parse_cpu_max("50000 100000"), 500);
	assert_int_equal(resources_parse_cpu_max("garbage"), -1);
}

static void
test_capacity_fake_root(void **state)
{
	struct resources r;

	(void)state;
	/* With no cgroup files at all, capacity is the machine's: at least 1 CPU, some memory. */
	resources_capacity("/nonexistent", &r);
	assert_true(r.cpu_millis >= 1000);
	assert_true(r.memory_bytes > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_cpu_max),
	    cmocka_unit_test(test_capacity_fake_root),
	};
	return cmocka_run_group_tests_name("resources", tests, NULL, NULL);
}
