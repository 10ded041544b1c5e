/*
 * Unit tests for scheduler/vip: services' virtual IPs are stable and distinct.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "scheduler/vip.h"

static void
test_in_range_and_stable(void **state)
{
	struct vip_input in[] = {{"web", 100}, {"db", 50}, {"cache", 200}};
	struct vip_input rev[] = {{"cache", 200}, {"db", 50}, {"web", 100}};
	uint32_t a[3], b[3];

	(void)state;
	vip_assign(in, 3, a);
	vip_assign(rev, 3, b);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(a[i] >> (32 - VIP_PREFIX), VIP_NET >> (32 - VIP_PREFIX));
		assert_true((a[i] & 255) != 0 && (a[i] & 255) != 255);
	}
	/* The order of the list does not matter, nor do the other services. */
	assert_int_equal(a[0], b[2]);
	assert_int_equal(a[1], b[1]);
	assert_int_equal(a[2], b[0]);
	vip_assign(in, 1, b);
	assert_int_equal(a[0], b[0]);
}

static void
test_clash_moves_the_younger(void **state)
{
	/* The same name twice clashes for sure: the older keeps the hash's address. */
	struct vip_input in[] = {{"x", 20}, {"x", 10}};
	struct vip_input one[] = {{"x", 10}};
	uint32_t a[2], b[1];

	(void)state;
	vip_assign(in, 2, a);
	vip_assign(one, 1, b);
	assert_int_equal(a[1], b[0]);
	assert_int_not_equal(a[0], a[1]);
}

static void
test_many_distinct(void **state)
{
	static struct vip_input in[2000];
	static char names[2000][16];
	static uint32_t out[2000];

	(void)state;
	for (int i = 0; i < 2000; i++) {
		snprintf(names[i], sizeof(names[i]), "svc%d", i);
		in[i] = (struct vip_input){names[i], i};
	}
	vip_assign(in, 2000, out);
	for (int i = 0; i < 2000; i++)
		for (int j = i + 1; j < 2000; j++)
			assert_int_not_equal(out[i], out[j]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_range_and_stable),
	    cmocka_unit_test(test_clash_moves_the_younger),
	    cmocka_unit_test(test_many_distinct),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
