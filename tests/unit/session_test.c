/* Unit tests for agent/session: the reconnect back-off an operator sees in the logs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/session.h"

static void
test_backoff_doubles_to_2s(void **state)
{
	(void)state;
	assert_int_equal(session_backoff_ms(1), 100);
	assert_int_equal(session_backoff_ms(2), 200);
	assert_int_equal(session_backoff_ms(3), 400);
	assert_int_equal(session_backoff_ms(5), 1600);
	/* Capped well below a restarted scheduler's grace (10 s), with jitter (+20%). */
	assert_int_equal(session_backoff_ms(6), 2000);
	assert_int_equal(session_backoff_ms(100), 2000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff_doubles_to_2s),
	};
	return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
