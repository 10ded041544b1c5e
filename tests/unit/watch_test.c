/* Unit tests for the CLI's rollout watch (cli/watch) and `shoal events` times (cli/events). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shoal.pb-c.h"
#include "err.h"
#include "cli/events.h"
#include "cli/watch.h"

static Shoal__Event
ev(uint64_t seq, const char *type, const char *action, const char *svc, uint32_t slot,
   uint64_t version, const char *msg)
{
	Shoal__Event e = SHOAL__EVENT__INIT;

	e.seq = seq;
	e.time_ms = 1796378400000 + (int64_t)seq;
	e.type = (char *)type;
	e.action = (char *)action;
	e.service = (char *)svc;
	e.node = slot ? "node1" : "";
	e.task = slot ? "web.1.abcd" : "";
	e.task_id = slot ? "0123456789ab" : "";
	e.slot = slot;
	e.version = version;
	e.message = (char *)msg;
	return e;
}

static void
setup_state(struct watch_state *st, struct watch_service *v, enum watch_kind kind, FILE *out)
{
	memset(st, 0, sizeof(*st));
	memset(v, 0, 2 * sizeof(*v));
	v[0].name = "web";
	v[1].name = "api";
	st->v = v;
	st->n = 2;
	st->kind = kind;
	st->out = out;
}

/* Two watched services, web and api, printing to a memory stream (buf): the state of the
 * watch tests. */
struct watch_out {
	struct watch_state st;
	struct watch_service v[2];
	char *buf;
	size_t len;
	FILE *out;
};

static int
setup(void **state)
{
	struct watch_out *w = calloc(1, sizeof(*w));

	if (w == NULL || (w->out = open_memstream(&w->buf, &w->len)) == NULL)
		return -1;
	setup_state(&w->st, w->v, WATCH_APPLY, w->out);
	*state = w;
	return 0;
}

static int
teardown(void **state)
{
	struct watch_out *w = *state;

	fclose(w->out);
	free(w->buf);
	free(w->v[0].slots);
	free(w->v[1].slots);
	free(w);
	return 0;
}

static void
test_converged_and_failures(void **state)
{
	struct watch_out *w = *state;
	struct watch_state *st = &w->st;
	struct watch_service *v = w->v;
	Shoal__Event e;

	e = ev(5, "task", "running", "web", 1, 2, "");
	assert_true(watch_event(st, &e));
	e = ev(6, "task", "running", "other", 1, 2, "");
	assert_false(watch_event(st, &e)); /* not watched */
	assert_false(watch_finished(st));
	e = ev(7, "service", "converged", "web", 0, 2, "3/3 running");
	watch_event(st, &e);
	assert_true(v[0].done);
	assert_false(v[0].failed);
	assert_false(watch_finished(st));
	/* A rollback is a failure of an apply, with the reason. */
	e = ev(8, "update", "rolled back", "api", 0, 1, "task api.1.x exited with code 3");
	watch_event(st, &e);
	assert_true(watch_finished(st));
	assert_true(v[1].failed);
	assert_string_equal(v[1].status, "update rolled back: task api.1.x exited with code 3");
	assert_int_equal(st->last_seq, 8);
	fflush(w->out);
	assert_non_null(strstr(w->buf, "web: slot 1: running web.1.abcd v2 on node1\n"));
	assert_non_null(strstr(w->buf, "web: service converged: 3/3 running\n"));
	assert_null(strstr(w->buf, "other"));
	free(v[0].slots);
	free(v[1].slots);

	/* For `shoal rollback`, rolled back is the goal; paused and stuck fail. */
	setup_state(st, v, WATCH_ROLLBACK, w->out);
	e = ev(9, "update", "rolled back", "web", 0, 1, "rollback requested");
	watch_event(st, &e);
	assert_true(v[0].done);
	assert_false(v[0].failed);
	e = ev(10, "update", "paused", "api", 0, 1, "rollback paused: no progress for 300s");
	watch_event(st, &e);
	assert_true(v[1].failed);
	assert_string_equal(v[1].status, "update paused: rollback paused: no progress for 300s");
	setup_state(st, v, WATCH_APPLY, w->out);
	e = ev(11, "service", "stuck", "web", 0, 1, "no progress for 300s: waiting: x");
	watch_event(st, &e);
	assert_true(v[0].failed);
	assert_string_equal(v[0].status, "stuck: no progress for 300s: waiting: x");
}

static void
test_slots_and_drawing(void **state)
{
	struct watch_out *w = *state;
	struct watch_state *st = &w->st;
	struct watch_service *v = w->v;
	Shoal__Event e;

	st->tty = true;
	st->n = 1;
	e = ev(1, "update", "started", "web", 0, 2, "");
	watch_event(st, &e);
	e = ev(2, "task", "running", "web", 2, 2, "");
	watch_event(st, &e);
	e = ev(3, "task", "healthy", "web", 1, 2, "");
	watch_event(st, &e);
	/* The old task of slot 1 stopping does not hide the new one. */
	e = ev(4, "task", "stopped", "web", 1, 1, "replaced");
	watch_event(st, &e);
	assert_int_equal(v[0].nslots, 2);
	assert_int_equal(v[0].slots[0].num, 1); /* sorted */
	assert_string_equal(v[0].slots[0].action, "healthy");
	assert_int_equal(v[0].slots[0].version, 2);
	watch_draw(st);
	fflush(w->out);
	/* Nothing printed line by line in a terminal: drawn lines only. */
	assert_null(strstr(w->buf, "web: slot"));
	assert_non_null(strstr(w->buf, "  slot 1   healthy   v2   [==========] node1"));
	assert_non_null(strstr(w->buf, "  slot 2   running   v2   [========> ] node1"));
	assert_int_equal(st->drawn, 3);
	/* A redraw goes back up over the lines drawn. */
	watch_draw(st);
	fflush(w->out);
	assert_non_null(strstr(w->buf, "\033[3A"));
}

static void
test_detach_arg(void **state)
{
	char *argv[] = {"scale", "-d", "web=3", "--detach", "api=1", NULL};
	int argc = 5;

	(void)state;
	assert_true(watch_detach_arg(&argc, argv));
	assert_int_equal(argc, 3);
	assert_string_equal(argv[1], "web=3");
	assert_string_equal(argv[2], "api=1");
	assert_null(argv[3]);
	assert_false(watch_detach_arg(&argc, argv));
}

static void
test_parse_time(void **state)
{
	int64_t now = 1796378400000, ms; /* 2026-12-04T10:00:00Z */
	struct shoal_err err;

	(void)state;
	assert_int_equal(events_parse_time("10m", now, &ms, &err), 0);
	assert_int_equal(ms, now - 600000);
	assert_int_equal(events_parse_time("0s", now, &ms, &err), 0);
	assert_int_equal(ms, now);
	assert_int_equal(events_parse_time("2026-12-04T10:00:00Z", now, &ms, &err), 0);
	assert_int_equal(ms, now);
	assert_int_equal(events_parse_time("2026-12-04T11:00:00.250+01:00", now, &ms, &err), 0);
	assert_int_equal(ms, now + 250);
	assert_int_equal(events_parse_time("1796378400", now, &ms, &err), 0);
	assert_int_equal(ms, now);
	assert_int_equal(events_parse_time("1796378400.5", now, &ms, &err), 0);
	assert_int_equal(ms, now + 500);
	/* common/when's forms (days too), and the fractions and ms only events took. */
	assert_int_equal(events_parse_time("1d", now, &ms, &err), 0);
	assert_int_equal(ms, now - 86400000);
	assert_int_equal(events_parse_time("1.5h", now, &ms, &err), 0);
	assert_int_equal(ms, now - 5400000);
	assert_int_equal(events_parse_time("500ms", now, &ms, &err), 0);
	assert_int_equal(ms, now - 500);
	assert_int_equal(events_parse_time("yesterday", now, &ms, &err), -1);
	assert_non_null(strstr(err.msg, "invalid time"));
	assert_int_equal(events_parse_time("2026-13-04T10:00:00Z", now, &ms, &err), -1);
	assert_int_equal(events_parse_time("2026-12-04T10:00:00", now, &ms, &err), -1);
	assert_int_equal(events_parse_time("", now, &ms, &err), -1);
	assert_int_equal(events_parse_time("-5m", now, &ms, &err), -1);
}

static void
test_print(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	Shoal__Event e = ev(42, "task", "failed", "web", 1, 3, "exited with code 3");

	(void)state;
	events_print_line(&e, out);
	events_print_json(&e, out);
	fclose(out);
	assert_non_null(strstr(buf, "2026-12-04T10:00:00.042Z task failed web.1.abcd node=node1 "
	                            "version=3 (exited with code 3)\n"));
	assert_non_null(strstr(buf, "{\"seq\":42,\"time\":\"2026-12-04T10:00:00.042Z\""));
	assert_non_null(strstr(buf, "\"message\":\"exited with code 3\"}\n"));
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_converged_and_failures, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slots_and_drawing, setup, teardown),
	    cmocka_unit_test(test_detach_arg),
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test(test_print),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
