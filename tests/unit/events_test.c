/* Unit tests for scheduler/events: the ring, reading on after a seq, filters, subscribers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "scheduler/events.h"

static uint64_t
emit_task(struct events *ev, const char *svc, const char *node, const char *action)
{
	return events_emit(ev, EVENTS_TASK, action, svc, node, "0123456789ab", "web.1.0123", 1, 2,
	                   "%s on %s", action, node);
}

static void
test_ring_wraps_and_reads_on(void **state)
{
	struct events ev;
	const struct events_entry *e;
	uint64_t last = 0, n = 0;

	(void)state;
	events_init(&ev, 4);
	assert_null(events_next(&ev, 0));
	assert_int_equal(events_first_seq(&ev), 1);
	for (int i = 0; i < 10; i++)
		last = emit_task(&ev, "web", "node1", "running");
	assert_int_equal(last, 10);
	/* Only the last 4 are held: a reader at 0 resumes at 7 (a gap it can see). */
	assert_int_equal(events_first_seq(&ev), 7);
	e = events_next(&ev, 0);
	assert_non_null(e);
	assert_int_equal(e->seq, 7);
	for (e = events_next(&ev, 5); e; e = events_next(&ev, e->seq))
		n++;
	assert_int_equal(n, 4);
	e = events_next(&ev, 8);
	assert_int_equal(e->seq, 9);
	assert_null(events_next(&ev, 10));
	assert_string_equal(e->message, "running on node1");
	assert_int_equal(ev.total[EVENTS_TASK], 10);
	events_free(&ev);
}

static void
test_long_strings_are_cut(void **state)
{
	struct events ev;
	char big[600];
	const struct events_entry *e;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	events_init(&ev, 0);
	events_emit(&ev, EVENTS_SERVICE, big, big, NULL, NULL, NULL, 0, 0, "%s", big);
	e = events_next(&ev, 0);
	assert_int_equal(strlen(e->action), sizeof(e->action) - 1);
	assert_int_equal(strlen(e->service), sizeof(e->service) - 1);
	assert_string_equal(e->node, "");
	assert_int_equal(strlen(e->message), sizeof(e->message) - 1);
	events_free(&ev);
}

static void
test_filters(void **state)
{
	struct events ev;
	struct events_filter f = {0};
	struct shoal_err err;
	const struct events_entry *e;
	size_t n = 0;

	(void)state;
	events_init(&ev, 0);
	emit_task(&ev, "web", "node1", "running");
	emit_task(&ev, "api", "node2", "running");
	emit_task(&ev, "db", "node1", "failed");
	events_emit(&ev, EVENTS_NODE, "down", NULL, "node1", NULL, NULL, 0, 0, NULL);
	events_emit(&ev, EVENTS_UPDATE, "completed", "web", NULL, NULL, NULL, 0, 3, NULL);

	/* Two values of one key: either. */
	assert_int_equal(events_filter_add(&f, "service=web", &err), 0);
	assert_int_equal(events_filter_add(&f, "service=api", &err), 0);
	for (e = events_next(&ev, 0); e; e = events_next(&ev, e->seq))
		n += events_filter_match(&f, e);
	assert_int_equal(n, 3);
	/* Another key: both. */
	assert_int_equal(events_filter_add(&f, "type=task", &err), 0);
	n = 0;
	for (e = events_next(&ev, 0); e; e = events_next(&ev, e->seq))
		n += events_filter_match(&f, e);
	assert_int_equal(n, 2);

	/* A node filter takes the node's own events and the tasks on it. */
	memset(&f, 0, sizeof(f));
	assert_int_equal(events_filter_add(&f, "node=node1", &err), 0);
	n = 0;
	for (e = events_next(&ev, 0); e; e = events_next(&ev, e->seq))
		n += events_filter_match(&f, e);
	assert_int_equal(n, 3);

	/* A task by name or id. */
	memset(&f, 0, sizeof(f));
	assert_int_equal(events_filter_add(&f, "task=web.1.0123", &err), 0);
	assert_true(events_filter_match(&f, events_next(&ev, 0)));
	memset(&f, 0, sizeof(f));
	assert_int_equal(events_filter_add(&f, "task=0123456789ab", &err), 0);
	assert_true(events_filter_match(&f, events_next(&ev, 0)));
	assert_false(events_filter_match(&f, events_next(&ev, 3)));

	/* Time bounds. */
	memset(&f, 0, sizeof(f));
	f.since_ms = events_next(&ev, 0)->time_ms + 1000000;
	assert_false(events_filter_match(&f, events_next(&ev, 0)));

	/* Bad filters say what is wrong. */
	memset(&f, 0, sizeof(f));
	assert_int_equal(events_filter_add(&f, "color=red", &err), -1);
	assert_non_null(strstr(err.msg, "unknown key"));
	assert_int_equal(events_filter_add(&f, "type=pod", &err), -1);
	assert_non_null(strstr(err.msg, "node, task, service or update"));
	assert_int_equal(events_filter_add(&f, "service", &err), -1);
	assert_int_equal(events_filter_add(&f, "service=", &err), -1);
	for (int i = 0; i < EVENTS_FILTER_MAX; i++)
		assert_int_equal(events_filter_add(&f, "node=a", &err), 0);
	assert_int_equal(events_filter_add(&f, "node=a", &err), -1);
	events_free(&ev);
}

struct counter {
	struct events *ev;
	struct events_sub *self, *other;
	int calls;
};

static void
count_cb(const struct events_entry *e, void *arg)
{
	struct counter *c = arg;

	(void)e;
	c->calls++;
	/* Leaving from inside the call, and taking another subscriber along. */
	if (c->calls == 2) {
		events_unsubscribe(c->ev, c->self);
		if (c->other)
			events_unsubscribe(c->ev, c->other);
	}
}

static void
test_subscribers(void **state)
{
	struct events ev;
	struct counter a = {0}, b = {0}, c = {0};

	(void)state;
	events_init(&ev, 8);
	a.ev = b.ev = c.ev = &ev;
	a.self = events_subscribe(&ev, count_cb, &a);
	b.self = events_subscribe(&ev, count_cb, &b);
	c.self = events_subscribe(&ev, count_cb, &c);
	a.other = c.self; /* a leaves at its 2nd call and takes c with it */
	b.calls = -10;    /* b stays */
	emit_task(&ev, "web", "n", "running");
	emit_task(&ev, "web", "n", "running");
	emit_task(&ev, "web", "n", "running");
	assert_int_equal(a.calls, 2);
	assert_int_equal(b.calls, -7);
	/* c was removed during the 2nd entry, before its own call for it. */
	assert_int_equal(c.calls, 1);
	events_unsubscribe(&ev, b.self);
	assert_null(ev.subs);
	events_free(&ev);
}

static void
collect(const struct events_entry *e, void *arg)
{
	uint64_t *last = arg;

	assert_true(e->seq > *last);
	*last = e->seq;
}

static void
test_since(void **state)
{
	struct events ev;
	struct events_filter f = {0};
	struct shoal_err err;
	uint64_t last = 0;

	(void)state;
	events_init(&ev, 4);
	for (int i = 0; i < 6; i++)
		emit_task(&ev, i % 2 ? "web" : "api", "node1", "running");
	/* From the oldest held (3), in order. */
	assert_int_equal(events_since(&ev, 0, NULL, collect, &last), 4);
	assert_int_equal(last, 6);
	last = 4;
	assert_int_equal(events_since(&ev, 4, NULL, collect, &last), 2);
	assert_int_equal(events_filter_add(&f, "service=web", &err), 0);
	last = 0;
	assert_int_equal(events_since(&ev, 0, &f, collect, &last), 2);
	assert_int_equal(last, 6);
	events_free(&ev);
}

static void
test_json(void **state)
{
	struct events ev;
	char buf[1024], small[80];

	(void)state;
	events_init(&ev, 0);
	events_emit(&ev, EVENTS_TASK, "failed", "web", "node1", "0123456789ab", "web.1.0123", 1, 2,
	            "said \"no\"\n");
	events_format_json(events_next(&ev, 0), buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"type\":\"task\""));
	assert_non_null(strstr(buf, "\"message\":\"said \\\"no\\\"\\u000a\""));
	assert_int_equal(buf[strlen(buf) - 1], '}');
	/* Cut, but still a string. */
	events_format_json(events_next(&ev, 0), small, sizeof(small));
	assert_true(strlen(small) < sizeof(small));
	events_format_line(events_next(&ev, 0), buf, sizeof(buf));
	assert_non_null(strstr(buf, "task failed web.1.0123 node=node1"));
	events_free(&ev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ring_wraps_and_reads_on),
	    cmocka_unit_test(test_long_strings_are_cut),
	    cmocka_unit_test(test_filters),
	    cmocka_unit_test(test_subscribers),
	    cmocka_unit_test(test_since),
	    cmocka_unit_test(test_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
