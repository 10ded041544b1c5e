/* Unit tests for common/backoff: the delays the agent's three retry loops wait (the session to
 * the scheduler, the ingress reconnect, a port that cannot listen). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void
test_doubles_to_the_cap(void **state)
{
	const struct backoff b = {.base_ms = 100, .cap_ms = 2000};

	(void)state;
	assert_int_equal(backoff_ms(&b, 0), 100);
	assert_int_equal(backoff_ms(&b, 1), 200);
	assert_int_equal(backoff_ms(&b, 4), 1600);
	assert_int_equal(backoff_ms(&b, 5), 2000); /* 3200 capped */
	/* A long outage: no overflow, still the cap. */
	assert_int_equal(backoff_ms(&b, 1000), 2000);
	/* Before the first failure (a step below 0): the base. */
	assert_int_equal(backoff_ms(&b, -1), 100);
	/* Without jitter the delay is the plain value. */
	assert_int_equal(backoff_delay_ms(&b, 3), 800);
}

static void
test_cap_not_a_power_of_two(void **state)
{
	const struct backoff b = {.base_ms = 500, .cap_ms = 5000};

	(void)state;
	assert_int_equal(backoff_ms(&b, 3), 4000);
	assert_int_equal(backoff_ms(&b, 4), 5000); /* 8000 capped, not 4000 */
}

/* Jitter spreads a delay by +/- its percentage, so agents failing together spread out, and
 * never leaves the band. */
static void
test_jitter_stays_in_band(void **state)
{
	const struct backoff b = {.base_ms = 1000, .cap_ms = 1000, .jitter_pct = 20};
	int64_t lo = INT64_MAX, hi = 0;

	(void)state;
	for (int i = 0; i < 200; i++) {
		int64_t ms = backoff_delay_ms(&b, i % 3);
		assert_in_range(ms, 800, 1200);
		lo = ms < lo ? ms : lo;
		hi = ms > hi ? ms : hi;
	}
	/* 200 draws from 401 values all equal: odds below 1 in 10^500. */
	assert_true(lo < hi);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_doubles_to_the_cap),
	    cmocka_unit_test(test_cap_not_a_power_of_two),
	    cmocka_unit_test(test_jitter_stays_in_band),
	};
	return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
