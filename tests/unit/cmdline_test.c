/* Unit tests for common/cmdline: the end of every program's getopt_long loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <getopt.h>
#include <cmocka.h>

#include "cmdline.h"
#include "log.h"

static void
test_log_level(void **state)
{
	(void)state;
	assert_int_equal(cmdline_log_level("prog", "debug"), LOG_DEBUG);
	assert_int_equal(cmdline_log_level("prog", "nope"), -1);
}

static void
test_usage(void **state)
{
	(void)state;
	assert_int_equal(cmdline_usage('h', ""), 0); /* asked for: success */
	assert_int_equal(cmdline_usage('?', ""), 1); /* an option getopt refused */
}

static void
test_no_rest(void **state)
{
	char *argv[] = {"prog", "--x", "left", NULL};

	(void)state;
	optind = 3;
	assert_true(cmdline_no_rest("prog", 3, argv));
	optind = 2;
	assert_false(cmdline_no_rest("prog", 3, argv));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_log_level),
	    cmocka_unit_test(test_usage),
	    cmocka_unit_test(test_no_rest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
