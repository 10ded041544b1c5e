/* Unit tests for common/util and common/err: parsing a user types, formatting a user reads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "err.h"
#include "util.h"

static void
test_duration(void **state)
{
	struct shoal_err err;
	int64_t ms;

	(void)state;
	assert_int_equal(util_parse_duration_ms("1500ms", &ms, &err), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(util_parse_duration_ms("2s", &ms, &err), 0);
	assert_int_equal(ms, 2000);
	assert_int_equal(util_parse_duration_ms("1.5m", &ms, &err), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(util_parse_duration_ms("1h", &ms, &err), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(util_parse_duration_ms("10", &ms, &err), -1);
	assert_string_equal(err.msg, "invalid duration \"10\" (want a number and ms, s, m or h)");
	assert_int_equal(util_parse_duration_ms("-1s", &ms, &err), -1);
	assert_int_equal(util_parse_duration_ms("s", &ms, &err), -1);
}

static void
test_bytes(void **state)
{
	struct shoal_err err;
	int64_t b;

	(void)state;
	assert_int_equal(util_parse_bytes("64Mi", &b, &err), 0);
	assert_int_equal(b, 64 * 1024 * 1024);
	assert_int_equal(util_parse_bytes("1Gi", &b, &err), 0);
	assert_int_equal(b, 1073741824LL);
	assert_int_equal(util_parse_bytes("32k", &b, &err), 0);
	assert_int_equal(b, 32000);
	assert_int_equal(util_parse_bytes("1.5M", &b, &err), 0);
	assert_int_equal(b, 1500000);
	assert_int_equal(util_parse_bytes("4096", &b, &err), 0);
	assert_int_equal(b, 4096);
	assert_int_equal(util_parse_bytes("64MB", &b, &err), -1);
	assert_string_equal(err.msg,
	                    "invalid size \"64MB\" (want a number with Ki, Mi, Gi, k, M or G)");
}

static void
test_format(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(util_format_bytes(512, buf, sizeof(buf)), "512");
	assert_string_equal(util_format_bytes(64 << 20, buf, sizeof(buf)), "64Mi");
	assert_string_equal(util_format_bytes(1536LL << 20, buf, sizeof(buf)), "1.5Gi");
	assert_string_equal(util_format_age(5000, buf, sizeof(buf)), "5s");
	assert_string_equal(util_format_age(600000, buf, sizeof(buf)), "10m");
	assert_string_equal(util_format_age(3 * 3600000, buf, sizeof(buf)), "3h");
}

static void
test_hostport(void **state)
{
	struct shoal_err err;
	char host[64];
	uint16_t port;

	(void)state;
	assert_int_equal(util_parse_hostport("10.0.0.1:7100", host, sizeof(host), &port, &err), 0);
	assert_string_equal(host, "10.0.0.1");
	assert_int_equal(port, 7100);
	assert_int_equal(util_parse_hostport(":80", host, sizeof(host), &port, &err), 0);
	assert_string_equal(host, "");
	assert_int_equal(util_parse_hostport("10.0.0.1", host, sizeof(host), &port, &err), -1);
	assert_int_equal(util_parse_hostport("h:70000", host, sizeof(host), &port, &err), -1);
	assert_string_equal(err.msg, "h:70000: port must be 1-65535");
}

static void
test_err_prefix(void **state)
{
	struct shoal_err err;

	(void)state;
	err_set(&err, ENOENT, "open %s", "layers/ab12/etc");
	err_prefix(&err, "layer sha256:%s", "ab12");
	assert_string_equal(err.msg,
	                    "layer sha256:ab12: open layers/ab12/etc: No such file or directory");
	assert_int_equal(err.code, ENOENT);
}

static void
test_jitter(void **state)
{
	(void)state;
	for (int i = 0; i < 1000; i++) {
		int64_t v = util_jitter(1000, 10);
		assert_true(v >= 900 && v <= 1100);
	}
}

/* One hex-digit decoder for the token parser and the HTTP chunk parser. */
static void
test_hexval(void **state)
{
	(void)state;
	assert_int_equal(util_hexval('0'), 0);
	assert_int_equal(util_hexval('9'), 9);
	assert_int_equal(util_hexval('a'), 10);
	assert_int_equal(util_hexval('F'), 15);
	assert_int_equal(util_hexval('g'), -1);
	assert_int_equal(util_hexval(';'), -1);
	assert_int_equal(util_hexval('\0'), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration),   cmocka_unit_test(test_bytes),
	    cmocka_unit_test(test_format),     cmocka_unit_test(test_hostport),
	    cmocka_unit_test(test_err_prefix), cmocka_unit_test(test_jitter),
	    cmocka_unit_test(test_hexval),
	};
	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
