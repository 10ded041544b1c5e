/* Unit tests for common/log: repeated lines are rate-limited per call site. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"

/* Run fn with stderr going to a temporary file; return what it wrote (caller frees). */
static char *
capture(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	long len;
	char *out;

	assert_non_null(tmp);
	fflush(stderr);
	dup2(fileno(tmp), 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	len = ftell(tmp);
	fseek(tmp, 0, SEEK_SET);
	out = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(out, 1, (size_t)len, tmp), (size_t)len);
	fclose(tmp);
	return out;
}

static int
count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void
flood(void)
{
	/* An attacker's repeated line: 1,000 failed handshakes from many ports. */
	for (int i = 0; i < 1000; i++)
		shoal_log(LOG_WARNING, "rpc: 10.0.0.9:%d: closing: bad magic", 40000 + i);
	/* Another call site is not held back by the first one's flood. */
	for (int i = 0; i < 3; i++)
		shoal_log(LOG_INFO, "node node%d registered", i);
	/* Info lines are the cluster's own changes (60 nodes removed by an admin): never limited.
	 */
	for (int i = 0; i < 60; i++)
		shoal_log(LOG_INFO, "node gone%d removed", i);
	/* Debug is asked for: never limited. */
	for (int i = 0; i < 50; i++)
		shoal_log(LOG_DEBUG, "debug line %d", i);
	usleep(150 * 1000);
	log_tick();
}

static void
test_rate_limit(void **state)
{
	char *out;

	(void)state;
	log_init("test", LOG_DEBUG);
	log_set_rate_limit(5, 100);
	out = capture(flood);
	assert_int_equal(count(out, "closing: bad magic"), 5 + 1);
	assert_int_equal(count(out, "rpc: 10.0.0.9:40004: closing"), 1);
	assert_int_equal(count(out, "rpc: 10.0.0.9:40005: closing"), 0);
	/* One line tells what was held back, and the last of it. */
	assert_int_equal(count(out, "warn test: 995 similar lines suppressed in 0s, the last: "
	                            "rpc: 10.0.0.9:40999: closing: bad magic\n"),
	                 1);
	assert_int_equal(count(out, "registered"), 3);
	assert_int_equal(count(out, " removed"), 60);
	assert_int_equal(count(out, "debug line"), 50);
	free(out);
	log_set_rate_limit(20, 10000);
}

static void
window(void)
{
	for (int i = 0; i < 8; i++)
		shoal_log(LOG_WARNING, "accept: Too many open files %d", i);
	usleep(150 * 1000);
	/* The next window writes again, after the count of the last one. */
	for (int i = 0; i < 2; i++)
		shoal_log(LOG_WARNING, "accept: Too many open files %d", i);
}

static void
test_next_window(void **state)
{
	char *out;
	const char *sum, *again;

	(void)state;
	log_init("test", LOG_INFO);
	log_set_rate_limit(5, 100);
	out = capture(window);
	assert_int_equal(count(out, "accept: Too many open files"), 5 + 1 + 2);
	sum = strstr(out, "3 similar lines suppressed");
	assert_non_null(sum);
	again = strstr(sum, "\n");
	assert_non_null(strstr(again, "accept: Too many open files 0\n"));
	free(out);
	log_set_rate_limit(20, 10000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rate_limit),
	    cmocka_unit_test(test_next_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
