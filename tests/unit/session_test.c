/* Unit tests for agent/session: the reconnect back-off an operator sees in the logs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/session.h"

static void
test_backoff_doubles_to_5s(void **state)
{
	(void)state;
	assert_int_equal(session_backoff_ms(1), 100);
	assert_int_equal(session_backoff_ms(2), 200);
	assert_int_equal(session_backoff_ms(3), 400);
	assert_int_equal(session_backoff_ms(6), 3200);
	assert_int_equal(session_backoff_ms(7), 5000);
	assert_int_equal(session_backoff_ms(100), 5000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff_doubles_to_5s),
	};
	return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
