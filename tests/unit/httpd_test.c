/* Unit tests for common/httpd: the --http address both daemons accept and the server set-up. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/http.h>

#include "err.h"
#include "fixture.h"
#include "httpd.h"

static void
on_req(struct evhttp_request *req, void *arg)
{
	(void)req;
	(void)arg;
}

static void
test_parse(void **state)
{
	struct httpd_addr a;
	struct shoal_err err;

	(void)state;
	assert_int_equal(httpd_parse("*:9100", &a, &err), 0);
	assert_string_equal(a.host, "0.0.0.0");
	assert_int_equal(a.port, 9100);
	assert_false(a.loopback);
	assert_int_equal(httpd_parse(":9100", &a, &err), 0);
	assert_string_equal(a.host, "0.0.0.0");
	assert_int_equal(httpd_parse("127.0.0.2:80", &a, &err), 0);
	assert_true(a.loopback);
	assert_int_equal(httpd_parse("localhost:80", &a, &err), -1);
	assert_string_equal(err.msg, "--http localhost:80: host must be an IPv4 address");
	assert_int_equal(httpd_parse("127.0.0.1", &a, &err), -1);
	assert_non_null(strstr(err.msg, "--http"));
}

/* A free port binds and is reported; a port taken is an error with errno, naming the spec. */
static void
test_bind(void **state)
{
	struct event_base *base = event_base_new();
	struct evhttp *h1, *h2;
	struct httpd_addr a;
	struct shoal_err err;
	uint16_t port = 0, port2 = 0;
	char spec[32];

	(void)state;
	snprintf(spec, sizeof(spec), "127.0.0.1:%u", fixture_free_port());
	assert_int_equal(httpd_parse(spec, &a, &err), 0);
	h1 = httpd_new(base, on_req, NULL, &err);
	assert_non_null(h1);
	assert_int_equal(httpd_bind(h1, &a, spec, &port, &err), 0);
	assert_int_equal(port, a.port);
	assert_int_equal(httpd_parse(spec, &a, &err), 0);
	h2 = httpd_new(base, on_req, NULL, &err);
	assert_int_equal(httpd_bind(h2, &a, spec, &port2, &err), -1);
	assert_true(err.code != 0);
	assert_non_null(strstr(err.msg, "--http: listen on 127.0.0.1:"));
	evhttp_free(h2);
	evhttp_free(h1);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_bind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
