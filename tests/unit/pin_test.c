/* Unit tests for the pinning of service versions to manifest digests (scheduler/service's
 * service_pin_set and the store's pins table): the first digest wins, only the current and
 * the previous version keep a pin, pins survive a restart and go with their service. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "scheduler/service.h"
#include "scheduler/store.h"
#include "util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static void
test_first_digest_wins(void **state)
{
	struct service *s = service_new("web", 0);

	(void)state;
	s->version = 1;
	assert_null(service_pin_get(s, 1));
	assert_true(service_pin_set(s, 1, D1));
	/* A later report of another digest (the tag moved) changes nothing. */
	assert_false(service_pin_set(s, 1, D2));
	assert_string_equal(service_pin_get(s, 1), D1);
	assert_false(service_pin_set(s, 0, D2));
	/* A new version starts unpinned; the previous one keeps its pin (rollback). */
	s->prev_version = 1;
	s->version = 2;
	assert_null(service_pin_get(s, 2));
	assert_true(service_pin_set(s, 2, D2));
	assert_string_equal(service_pin_get(s, 1), D1);
	assert_string_equal(service_pin_get(s, 2), D2);
	/* Version 3: the pin of version 1 makes room. */
	s->prev_version = 2;
	s->version = 3;
	assert_true(service_pin_set(s, 3, D3));
	assert_null(service_pin_get(s, 1));
	assert_string_equal(service_pin_get(s, 2), D2);
	assert_string_equal(service_pin_get(s, 3), D3);
	/* Both slots hold live versions: a stale version's report pins nothing. */
	assert_false(service_pin_set(s, 1, D1));
	service_free(s);
}

struct seen {
	char v[8][96];
	size_t n;
};

static void
collect(const char *service, uint64_t version, const char *digest, void *arg)
{
	struct seen *s = arg;

	if (s->n < 8)
		snprintf(s->v[s->n++], sizeof(s->v[0]), "%s %llu %s", service,
		         (unsigned long long)version, digest);
}

static void
test_store(void **state)
{
	char dir[] = "/tmp/shoal-pin-test.XXXXXX";
	cleanup_free char *db = NULL;
	cleanup_free char *cmd = NULL;
	struct store st;
	struct shoal_err err;
	struct seen seen = {0};

	(void)state;
	assert_non_null(mkdtemp(dir));
	db = xasprintf("%s/state.db", dir);
	cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(store_open(&st, db, &err), 0);
	assert_int_equal(store_pin_put(&st, "web", 1, D1, 0, &err), 0);
	assert_int_equal(store_pin_put(&st, "web", 1, D2, 0, &err), 0); /* kept: D1 */
	assert_int_equal(store_pin_put(&st, "web", 2, D2, 1, &err), 0);
	assert_int_equal(store_pin_put(&st, "api", 7, D3, 0, &err), 0);
	assert_int_equal(store_pin_put(&st, "web", 3, D3, 2, &err), 0); /* drops version 1 */
	store_close(&st);
	assert_int_equal(store_open(&st, db, &err), 0);
	assert_int_equal(store_pin_each(&st, collect, &seen, &err), 0);
	assert_int_equal(seen.n, 3);
	assert_string_equal(seen.v[0], "web 2 " D2);
	assert_string_equal(seen.v[1], "web 3 " D3);
	assert_string_equal(seen.v[2], "api 7 " D3);
	/* A service removed takes its pins: one made again under the name starts at 1. */
	assert_int_equal(store_service_delete(&st, "web", &err), 0);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(store_pin_each(&st, collect, &seen, &err), 0);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.v[0], "api 7 " D3);
	store_close(&st);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_digest_wins),
	    cmocka_unit_test(test_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
