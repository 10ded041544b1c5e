/* Unit tests for scheduler/service's Apply, Scale and Remove: the scheduler holds every spec to
 * the CLI's own check, and answers only once the change is committed to the store. Each test
 * plays a client that bypasses the CLI and sends crafted specs straight to the scheduler. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "err.h"
#include "manifest_spec.h"
#include "scheduler/server.h"
#include "scheduler/service.h"
#include "scheduler/service_apply.h"
#include "scheduler/store.h"
#include "scheduler/update.h"
#include "util.h"

struct fixture {
	char dir[64];
	char db[128];
	struct sched_server srv; /* only services and store are used: no loop, no network */
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct shoal_err err;

	snprintf(f->dir, sizeof(f->dir), "/tmp/shoal-service-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/state.db", f->dir);
	if (store_open(&f->srv.store, f->db, &err) == -1)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	cleanup_free char *cmd = xasprintf("rm -rf '%s'", f->dir);

	services_free(&f->srv.services);
	free(f->srv.dirty_svcs);
	store_close(&f->srv.store);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void
count_row(const struct store_service *sv, void *arg)
{
	(void)sv;
	(*(size_t *)arg)++;
}

/* The rows a scheduler restarted now would load: read through a second connection, so only
 * what was committed counts. */
static size_t
committed_rows(struct fixture *f)
{
	struct store other;
	struct shoal_err err;
	size_t n = 0;

	assert_int_equal(store_open(&other, f->db, &err), 0);
	assert_int_equal(store_service_each(&other, count_row, &n, &err), 0);
	store_close(&other);
	return n;
}

/* Apply one spec that must be refused with exactly the lines want (NULL-terminated). */
static void
refused(struct fixture *f, const char *json, const char *const *want)
{
	struct manifest_errors errs = {0};
	struct service_changes ch;
	struct shoal_err err;
	char *specs[] = {(char *)json};
	size_t n = 0;

	while (want[n] != NULL)
		n++;
	assert_int_equal(service_apply(&f->srv, specs, 1, &ch, &errs, &err), -1);
	for (size_t i = 0; i < errs.n; i++)
		if (errs.n != n || strcmp(errs.lines[i], want[i]) != 0)
			print_error("got: %s\n", errs.lines[i]);
	assert_int_equal(err.code, EINVAL);
	assert_int_equal(errs.n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(errs.lines[i], want[i]);
	assert_int_equal(ch.n, 0);
	/* Nothing changed, in memory or on disk. */
	assert_int_equal(f->srv.services.n, 0);
	assert_int_equal(committed_rows(f), 0);
	manifest_errors_free(&errs);
}

#define REFUSED(f, json, ...) refused((f), (json), (const char *const[]){__VA_ARGS__, NULL})

/* What the scheduler accepted in the issue, each now refused with the CLI's message. */
static void
test_apply_refuses_what_the_cli_refuses(void **state)
{
	struct fixture *f = *state;

	REFUSED(f, "{\"name\":\"web\",\"image\":\"x\",\"replicas\":20000}",
	        "service web: replicas: must be between 0 and 10000, got 20000");
	/* This one aborted the scheduler on an allocation. */
	REFUSED(f, "{\"name\":\"web\",\"image\":\"x\",\"replicas\":4000000000}",
	        "service web: replicas: must be between 0 and 10000, got 4000000000");
	REFUSED(f,
	        "{\"name\":\"web\",\"image\":\"x\",\"health\":{\"kind\":\"tcp\",\"port\":80,"
	        "\"interval_ms\":0}}",
	        "service web: health.interval: must be greater than 0, got 0 ms");
	REFUSED(
	    f, "{\"name\":\"web\",\"image\":\"x\",\"env\":{\"A=B\":\"1\"}}",
	    "service web: env: invalid variable name \"A=B\" (want no '=', no space, not empty)");
	REFUSED(f, "{\"name\":\"web\",\"image\":\"x\",\"env\":{\"\":\"1\"}}",
	        "service web: env: invalid variable name \"\" (want no '=', no space, not empty)");
	REFUSED(f, "{\"name\":\"web\",\"image\":\"a b;reboot\"}",
	        "service web: image: invalid reference \"a b;reboot\": invalid character "
	        "(allowed: a-z 0-9 . _ - / : @)");
	REFUSED(f, "{\"name\":\"Web_1\",\"image\":\"x\"}",
	        "spec 1: service: invalid name \"Web_1\" (want a DNS label: lowercase letters, "
	        "digits and '-', at most 63 characters, not starting or ending with '-')");
	REFUSED(f, "{\"name\":\"web\"}", "spec 1: spec json: name and image are required");
	/* Every problem of a spec, not the first. */
	REFUSED(
	    f,
	    "{\"name\":\"web\",\"image\":\"x;y\",\"replicas\":20000,\"env\":{\"A=B\":\"1\"},"
	    "\"ports\":[{\"published\":8080,\"target\":80},{\"published\":8080,\"target\":81}]}",
	    "service web: image: invalid reference \"x;y\": invalid character "
	    "(allowed: a-z 0-9 . _ - / : @)",
	    "service web: replicas: must be between 0 and 10000, got 20000",
	    "service web: env: invalid variable name \"A=B\" (want no '=', no space, not empty)");
}

static void
apply_ok(struct fixture *f, char **specs, size_t n, const char *const *actions)
{
	struct manifest_errors errs = {0};
	struct service_changes ch;
	struct shoal_err err;

	if (service_apply(&f->srv, specs, n, &ch, &errs, &err) == -1) {
		print_error("refused: %s\n", err.msg);
		for (size_t i = 0; i < errs.n; i++)
			print_error("  %s\n", errs.lines[i]);
		fail();
	}
	assert_int_equal(ch.n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(ch.v[i].action, actions[i]);
	service_changes_free(&ch);
}

/* Clashes with each other and with the cluster, all reported together. */
static void
test_apply_set_checks(void **state)
{
	struct fixture *f = *state;
	struct manifest_errors errs = {0};
	struct service_changes ch;
	struct shoal_err err;
	char *db[] = {"{\"name\":\"db\",\"image\":\"x\",\"ports\":[{\"published\":5432,\"target\":"
	              "5432}]}"};
	char *bad[] = {
	    "{\"name\":\"web\",\"image\":\"x\",\"ports\":[{\"published\":8080,\"target\":80}]}",
	    "{\"name\":\"api\",\"image\":\"x\",\"ports\":[{\"published\":8080,\"target\":80},"
	    "{\"published\":5432,\"target\":1}]}",
	    "{\"name\":\"web\",\"image\":\"x\"}",
	    "{\"name\":\"one\",\"image\":\"x\",\"ports\":[{\"published\":9000,\"target\":1},"
	    "{\"published\":9000,\"target\":2}]}",
	};

	apply_ok(f, db, 1, (const char *const[]){"created"});
	assert_int_equal(service_apply(&f->srv, bad, 4, &ch, &errs, &err), -1);
	assert_int_equal(err.code, EINVAL);
	assert_string_equal(err.msg, "apply refused, nothing changed: 4 problems");
	assert_int_equal(errs.n, 4);
	assert_string_equal(errs.lines[0], "service web: given twice");
	assert_string_equal(errs.lines[1], "services web and api both publish port 8080");
	assert_string_equal(errs.lines[2],
	                    "service api: published port 5432 is already used by service db");
	assert_string_equal(errs.lines[3], "service one: port 9000 is published twice");
	manifest_errors_free(&errs);
	assert_int_equal(f->srv.services.n, 1);
	assert_int_equal(committed_rows(f), 1);
}

/* "created" means committed: another connection (a restarted scheduler) sees the row at once,
 * and the in-memory state matches what was stored. */
static void
test_apply_commits_before_answering(void **state)
{
	struct fixture *f = *state;
	struct shoal_err err;
	char *v1[] = {"{\"name\":\"web\",\"image\":\"x\",\"replicas\":2}"};
	char *v2[] = {"{\"name\":\"web\",\"image\":\"x\",\"replicas\":3}"};
	char *v3[] = {"{\"name\":\"web\",\"image\":\"y\",\"replicas\":3}"};
	struct service *svc;

	/* An open batch (tasks of a reconcile pass) does not hold the apply's row back. */
	assert_int_equal(store_tx_begin(&f->srv.store, &err), 0);
	apply_ok(f, v1, 1, (const char *const[]){"created"});
	assert_int_equal(committed_rows(f), 1);
	assert_int_equal(f->srv.store.in_tx, 0);
	apply_ok(f, v1, 1, (const char *const[]){"unchanged"});
	apply_ok(f, v2, 1, (const char *const[]){"scaled"});
	apply_ok(f, v3, 1, (const char *const[]){"updated"});
	svc = services_find(&f->srv.services, "web");
	assert_non_null(svc);
	assert_int_equal(svc->version, 2);
	assert_int_equal(svc->prev_version, 1);
	assert_string_equal(svc->spec.image, "y");
	assert_int_equal(svc->update.state, UPDATE_UPDATING);
	assert_int_equal(committed_rows(f), 1);
}

/* The store fails (full, or read-only): the client gets the error, memory is untouched, and
 * the next apply after the store recovers works. */
static void
test_apply_store_failure(void **state)
{
	struct fixture *f = *state;
	struct manifest_errors errs = {0};
	struct service_changes ch;
	struct shoal_err err;
	cleanup_free char *big = NULL;
	char value[16384];
	char *specs[1];
	sqlite3_stmt *st;
	int pages;

	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	big = xasprintf("{\"name\":\"web\",\"image\":\"x\",\"env\":{\"BIG\":\"%s\"}}", value);
	specs[0] = big;

	/* A full disk: the database may not grow by a page. */
	assert_int_equal(sqlite3_prepare_v2(f->srv.store.db, "PRAGMA page_count", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	pages = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	{
		cleanup_free char *sql = xasprintf("PRAGMA max_page_count=%d", pages);
		assert_int_equal(sqlite3_exec(f->srv.store.db, sql, NULL, NULL, NULL), SQLITE_OK);
	}
	assert_int_equal(service_apply(&f->srv, specs, 1, &ch, &errs, &err), -1);
	assert_int_equal(err.code, EIO);
	assert_string_equal(err.msg, "apply failed, nothing changed: store: service put: "
	                             "database or disk is full");
	assert_int_equal(errs.n, 0);
	assert_int_equal(f->srv.services.n, 0);
	assert_int_equal(committed_rows(f), 0);

	/* A read-only database. */
	assert_int_equal(
	    sqlite3_exec(f->srv.store.db, "PRAGMA max_page_count=1000000", NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_exec(f->srv.store.db, "PRAGMA query_only=1", NULL, NULL, NULL),
	                 SQLITE_OK);
	assert_int_equal(service_apply(&f->srv, specs, 1, &ch, &errs, &err), -1);
	assert_int_equal(err.code, EIO);
	assert_non_null(strstr(err.msg, "apply failed, nothing changed: store: "));
	assert_int_equal(f->srv.services.n, 0);

	/* Recovered: the same apply goes through, and the store is not stuck in a transaction. */
	assert_int_equal(sqlite3_exec(f->srv.store.db, "PRAGMA query_only=0", NULL, NULL, NULL),
	                 SQLITE_OK);
	apply_ok(f, specs, 1, (const char *const[]){"created"});
	assert_int_equal(committed_rows(f), 1);
}

/* Another process holds the write lock (a second scheduler on the data dir, an sqlite3 shell):
 * the apply fails within the short busy timeout with a clear error, instead of stalling the
 * loop, and so every agent's heartbeat, for seconds (2 s per call before). */
static void
test_apply_locked_store_fails_fast(void **state)
{
	struct fixture *f = *state;
	struct manifest_errors errs = {0};
	struct service_changes ch;
	struct shoal_err err;
	char *web[] = {"{\"name\":\"web\",\"image\":\"x\"}"};
	struct store other;
	int64_t t0, ms;

	assert_int_equal(store_open(&other, f->db, &err), 0);
	assert_int_equal(sqlite3_exec(other.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	t0 = util_now_ms();
	assert_int_equal(service_apply(&f->srv, web, 1, &ch, &errs, &err), -1);
	ms = util_now_ms() - t0;
	assert_int_equal(err.code, EIO);
	assert_string_equal(err.msg,
	                    "apply failed, nothing changed: store: begin: database is locked");
	assert_true(ms >= STORE_BUSY_TIMEOUT_MS / 2 && ms < 1000);
	assert_int_equal(f->srv.services.n, 0);
	assert_int_equal(sqlite3_exec(other.db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	store_close(&other);
	apply_ok(f, web, 1, (const char *const[]){"created"});
}

static void
test_scale_and_remove(void **state)
{
	struct fixture *f = *state;
	struct manifest_errors errs = {0};
	struct shoal_err err;
	char *web[] = {"{\"name\":\"web\",\"image\":\"x\",\"replicas\":2}"};
	struct service *svc;

	apply_ok(f, web, 1, (const char *const[]){"created"});
	svc = services_find(&f->srv.services, "web");
	/* The same check as apply: the same message. */
	assert_int_equal(
	    service_scale(&f->srv, &(struct service_scale){"web", 20000}, 1, &errs, &err), -1);
	assert_int_equal(err.code, EINVAL);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.lines[0],
	                    "service web: replicas: must be between 0 and 10000, got 20000");
	manifest_errors_free(&errs);
	assert_int_equal(service_scale(&f->srv, &(struct service_scale){"nope", 1}, 1, &errs, &err),
	                 -1);
	assert_int_equal(err.code, ENOENT);

	/* A store that cannot write: no scale, no remove, nothing changed. */
	assert_int_equal(sqlite3_exec(f->srv.store.db, "PRAGMA query_only=1", NULL, NULL, NULL),
	                 SQLITE_OK);
	assert_int_equal(service_scale(&f->srv, &(struct service_scale){"web", 5}, 1, &errs, &err),
	                 -1);
	assert_int_equal(err.code, EIO);
	assert_int_equal(svc->spec.replicas, 2);
	assert_int_equal(service_remove(&f->srv, "web", &err), -1);
	assert_int_equal(err.code, EIO);
	assert_false(svc->removed);
	assert_int_equal(sqlite3_exec(f->srv.store.db, "PRAGMA query_only=0", NULL, NULL, NULL),
	                 SQLITE_OK);

	assert_int_equal(service_scale(&f->srv, &(struct service_scale){"web", 5}, 1, &errs, &err),
	                 0);
	assert_int_equal(svc->spec.replicas, 5);
	assert_non_null(strstr(svc->spec_json, "\"replicas\":5"));
	assert_int_equal(service_remove(&f->srv, "web", &err), 0);
	assert_true(svc->removed);
	assert_int_equal(service_remove(&f->srv, "web", &err), -1);
	assert_int_equal(err.code, ENOENT);
}

/* `shoal rm web` then `shoal apply` while the old tasks stop: a new service, not an update of
 * the removed one (it said "updated ... (completed)" and numbered the new slots 4-6). */
static void
test_recreate_after_remove(void **state)
{
	struct fixture *f = *state;
	struct shoal_err err;
	char *web[] = {"{\"name\":\"web\",\"image\":\"x\",\"replicas\":3}"};
	char *web2[] = {"{\"name\":\"web\",\"image\":\"y\",\"replicas\":3}"};
	struct service *svc;

	apply_ok(f, web, 1, (const char *const[]){"created"});
	apply_ok(f, web2, 1, (const char *const[]){"updated"});
	svc = services_find(&f->srv.services, "web");
	assert_non_null(svc->prev_spec_json);
	assert_int_equal(service_remove(&f->srv, "web", &err), 0);
	/* Its three slots are still there, their tasks stopping (scaled away by the reconciler). */
	for (uint32_t i = 1; i <= 3; i++)
		service_slot(svc, i)->removed = true;
	apply_ok(f, web, 1, (const char *const[]){"created"});
	assert_ptr_equal(services_find(&f->srv.services, "web"), svc);
	assert_false(svc->removed);
	assert_null(svc->prev_spec_json);
	assert_int_equal(svc->update.state, UPDATE_NONE);
	assert_true(svc->version > 2); /* versions only grow: old tasks keep theirs */
	/* The slots come back: the new tasks are numbered 1..3 again. */
	assert_int_equal(svc->nslots, 3);
	for (size_t i = 0; i < svc->nslots; i++) {
		assert_int_equal(svc->slots[i].num, i + 1);
		assert_false(svc->slots[i].removed);
	}
	assert_int_equal(service_free_slot(svc), 4);
	/* Applied again unchanged: unchanged. */
	apply_ok(f, web, 1, (const char *const[]){"unchanged"});
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_apply_refuses_what_the_cli_refuses, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_apply_set_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apply_commits_before_answering, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apply_store_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apply_locked_store_fails_fast, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scale_and_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recreate_after_remove, setup, teardown),
	};
	return cmocka_run_group_tests_name("service", tests, NULL, NULL);
}
