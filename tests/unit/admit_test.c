/* Unit tests for common/admit: what a listener refuses before it spends anything. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "admit.h"

static struct sockaddr *
addr(struct sockaddr_in *sin, const char *ip)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin->sin_addr);
	return (struct sockaddr *)sin;
}

/* One host holding idle unauthenticated sockets gets max_unauth_per_src of them; another
 * host still gets in; a finished handshake frees the slot. */
static void
test_per_source(void **state)
{
	struct admit_limits lim = {
	    .max_unauth = 100, .max_unauth_per_src = 4, .rate_per_src = 1000};
	struct admit *a = admit_new(&lim);
	struct sockaddr_in x, y;

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_int_equal(admit_take(a, addr(&x, "10.0.0.9"), 0), ADMIT_OK);
	assert_int_equal(admit_take(a, addr(&x, "10.0.0.9"), 0), ADMIT_SRC_FULL);
	assert_int_equal(admit_take(a, addr(&y, "10.0.0.2"), 0), ADMIT_OK);
	assert_int_equal(admit_unauth(a), 5);
	admit_release(a, addr(&x, "10.0.0.9"));
	assert_int_equal(admit_take(a, addr(&x, "10.0.0.9"), 0), ADMIT_OK);
	admit_free(a);
}

/* All sources together stop at max_unauth. */
static void
test_global(void **state)
{
	struct admit_limits lim = {.max_unauth = 10, .max_unauth_per_src = 4, .rate_per_src = 1000};
	struct admit *a = admit_new(&lim);
	struct sockaddr_in x;
	char ip[32];
	int ok = 0;

	(void)state;
	for (int i = 0; i < 20; i++) {
		snprintf(ip, sizeof(ip), "10.0.1.%d", i + 1);
		ok += admit_take(a, addr(&x, ip), 0) == ADMIT_OK;
	}
	assert_int_equal(ok, 10);
	assert_int_equal(admit_take(a, addr(&x, "10.0.2.1"), 0), ADMIT_FULL);
	admit_free(a);
}

/* A HELLO flood from one address: burst, then rate_per_src a second; the refused attempts
 * do not earn tokens. Other addresses are untouched. */
static void
test_rate(void **state)
{
	struct admit_limits lim = {.max_unauth = 100000,
	                           .max_unauth_per_src = 100000,
	                           .rate_per_src = 50,
	                           .burst_per_src = 100};
	struct admit *a = admit_new(&lim);
	struct sockaddr_in x, y;
	int ok = 0;

	(void)state;
	/* 4,100 attempts a second for 2 s, each released at once (handshake done or failed). */
	for (int ms = 0; ms < 2000; ms++)
		for (int k = 0; k < 4; k++)
			if (admit_take(a, addr(&x, "10.0.0.9"), 1000 + ms) == ADMIT_OK) {
				ok++;
				admit_release(a, addr(&x, "10.0.0.9"));
			}
	assert_in_range(ok, 195, 201);
	assert_int_equal(admit_take(a, addr(&y, "10.0.0.2"), 3000), ADMIT_OK);
	/* After a quiet second the source has 50 tokens again. */
	ok = 0;
	for (int k = 0; k < 100; k++)
		if (admit_take(a, addr(&x, "10.0.0.9"), 4000) == ADMIT_OK) {
			ok++;
			admit_release(a, addr(&x, "10.0.0.9"));
		}
	assert_in_range(ok, 49, 51);
	admit_expire(a, 100000);
	admit_free(a);
}

/* Loopback is this host: only the global cap applies to it. */
static void
test_loopback(void **state)
{
	struct admit_limits lim = {.max_unauth = 50, .max_unauth_per_src = 2, .rate_per_src = 1};
	struct admit *a = admit_new(&lim);
	struct sockaddr_in x;
	int ok = 0;

	(void)state;
	for (int i = 0; i < 60; i++)
		ok += admit_take(a, addr(&x, "127.0.0.3"), 0) == ADMIT_OK;
	assert_int_equal(ok, 50);
	admit_free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_per_source),
	    cmocka_unit_test(test_global),
	    cmocka_unit_test(test_rate),
	    cmocka_unit_test(test_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
