/* Unit tests for the update state as a type in the store (scheduler/store.c): a store written
 * by an older scheduler, which kept only the display text, is converted at open into the same
 * states and reasons the scheduler would have parsed back; new rows keep the type. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "err.h"
#include "scheduler/service.h"
#include "scheduler/store.h"
#include "scheduler/update_text.h"
#include "util.h"

struct fx {
	char dir[64];
	char db[128];
};

static int
setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/shoal-store-update-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/state.db", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	cleanup_free char *cmd = xasprintf("rm -rf '%s'", f->dir);

	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* What each row read back says. */
struct seen {
	size_t n;
	bool typed[8];
	int kind[8];
	char *message[8];
	char *name[8];
};

static void
collect(const struct store_service *sv, void *arg)
{
	struct seen *s = arg;

	if (s->n >= 8)
		return;
	s->typed[s->n] = sv->update_typed;
	s->kind[s->n] = sv->update_kind;
	s->message[s->n] = sv->update_message ? xstrdup(sv->update_message) : NULL;
	s->name[s->n] = xstrdup(sv->name);
	s->n++;
}

static void
seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->message[i]);
		free(s->name[i]);
	}
}

/* The services table as schedulers before the typed state wrote it. */
static const char old_schema[] = "CREATE TABLE services ("
                                 "  name TEXT PRIMARY KEY,"
                                 "  spec_json TEXT NOT NULL,"
                                 "  prev_spec_json TEXT,"
                                 "  version INTEGER NOT NULL,"
                                 "  prev_version INTEGER NOT NULL DEFAULT 0,"
                                 "  created_ms INTEGER NOT NULL,"
                                 "  updated_ms INTEGER NOT NULL,"
                                 "  removed INTEGER NOT NULL DEFAULT 0,"
                                 "  update_state TEXT);";

/* Every state, with a reason where it has one, written as text by an older scheduler (the
 * text is update_text's, so a change of wording there fails here), converts to the state. */
static void
test_old_rows_converted(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *name;
		enum update_state st;
		const char *msg;
	} cases[] = {
	    {"a", UPDATE_NONE, NULL},
	    {"b", UPDATE_UPDATING, NULL},
	    {"c", UPDATE_PAUSED, "task web.2.abcd unhealthy: GET /: 500"},
	    {"d", UPDATE_ROLLING_BACK, "task web.1.ef01 exited with code 1"},
	    {"e", UPDATE_ROLLED_BACK, "no progress for 60s: waiting: no node"},
	    {"f", UPDATE_COMPLETED, NULL},
	};
	struct seen seen = {0};
	struct store s;
	struct shoal_err err;
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, old_schema, NULL, NULL, NULL), SQLITE_OK);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct service *svc = service_new(cases[i].name, 1);
		cleanup_free char *text = NULL, *sql = NULL;
		svc->update.state = cases[i].st;
		svc->update.message = cases[i].msg ? xstrdup(cases[i].msg) : NULL;
		svc->update.done = 2;
		svc->update.total = 3;
		text = update_text(svc);
		sql = sqlite3_mprintf("INSERT INTO services(name, spec_json, version, created_ms,"
		                      " updated_ms, update_state) VALUES(%Q, '{}', 1, 1, 1, %Q)",
		                      cases[i].name, text);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_free(sql);
		sql = NULL;
		service_free(svc);
	}
	sqlite3_close(db);

	assert_int_equal(store_open(&s, f->db, &err), 0);
	assert_int_equal(store_service_each(&s, collect, &seen, &err), 0);
	store_close(&s);
	assert_int_equal(seen.n, ARRAY_SIZE(cases));
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_string_equal(seen.name[i], cases[i].name);
		assert_true(seen.typed[i]);
		assert_int_equal(seen.kind[i], cases[i].st);
		if (cases[i].msg)
			assert_string_equal(seen.message[i], cases[i].msg);
		else
			assert_null(seen.message[i]);
	}
	seen_free(&seen);
}

/* A row written now keeps the type and the reason; one without them (an older writer) reads
 * as untyped, for the scheduler to parse the text. */
static void
test_typed_round_trip(void **state)
{
	struct fx *f = *state;
	struct store_service typed = {
	    .name = "web",
	    .spec_json = "{}",
	    .version = 2,
	    .update_state = "paused: why",
	    .update_typed = true,
	    .update_kind = UPDATE_PAUSED,
	    .update_message = "why",
	};
	struct store_service text = {
	    .name = "zzz", .spec_json = "{}", .version = 1, .update_state = "completed"};
	struct seen seen = {0};
	struct store s;
	struct shoal_err err;

	assert_int_equal(store_open(&s, f->db, &err), 0);
	assert_int_equal(store_service_put(&s, &typed, &err), 0);
	assert_int_equal(store_service_put(&s, &text, &err), 0);
	assert_int_equal(store_service_each(&s, collect, &seen, &err), 0);
	store_close(&s);
	assert_int_equal(seen.n, 2);
	assert_true(seen.typed[0]);
	assert_int_equal(seen.kind[0], UPDATE_PAUSED);
	assert_string_equal(seen.message[0], "why");
	assert_false(seen.typed[1]);
	seen_free(&seen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_old_rows_converted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_typed_round_trip, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
