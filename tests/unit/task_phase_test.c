/* Unit tests for the phase of a task (scheduler/task.c): the table of allowed transitions,
 * written here a second time on purpose, so a change to one without the other fails; the
 * refusals leave the task as it was; desired, wanted and live derive from the phase. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "scheduler/service.h"
#include "scheduler/task.h"

#define WALL 1700000000000LL

#define R TASK_PHASE_RUN
#define H TASK_PHASE_HELD
#define L TASK_PHASE_LOST
#define D TASK_PHASE_DRAINING
#define S TASK_PHASE_SHUTDOWN

/* Every transition the scheduler makes (docs/state-machines.md), and nothing else. */
static const struct {
	enum task_phase from, to;
	const char *why;
} allowed[] = {
    {R, H, "stop-first: a new task waits for the old one"},
    {H, R, "the old task stopped"},
    {R, L, "its node went down"},
    {R, D, "asked to stop while a proxy may send to it"},
    {R, S, "asked to stop, nothing sends to it"},
    {H, S, "scaled down while held"},
    {L, S, "replaced elsewhere"},
    {D, S, "every proxy confirmed, or the drain timed out"},
};

static bool
listed(enum task_phase from, enum task_phase to)
{
	if (from == to)
		return true; /* staying is no transition */
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (allowed[i].from == from && allowed[i].to == to)
			return true;
	return false;
}

struct fx {
	struct service *svc;
	struct task *t;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->svc = service_new("web", WALL);
	f->t = task_new(f->svc, 1, 1, WALL);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	task_free(f->t);
	service_free(f->svc);
	free(f);
	return 0;
}

/* Bring a fresh task to phase p along allowed transitions. */
static void
reach(struct task *t, enum task_phase p)
{
	t->phase = TASK_PHASE_RUN;
	t->bound = false;
	if (p == TASK_PHASE_RUN)
		return;
	assert_true(task_phase_set(t, p));
	assert_int_equal(t->phase, p);
}

/* All 25 pairs: the table allows exactly the listed ones. */
static void
test_table(void **state)
{
	(void)state;
	for (int from = 0; from < TASK_PHASE_COUNT; from++)
		for (int to = 0; to < TASK_PHASE_COUNT; to++) {
			bool want = listed((enum task_phase)from, (enum task_phase)to);
			if (task_phase_allowed((enum task_phase)from, (enum task_phase)to) != want)
				fail_msg("%s -> %s: table says %s",
				         task_phase_name((enum task_phase)from),
				         task_phase_name((enum task_phase)to),
				         want ? "refused" : "allowed");
		}
	assert_false(task_phase_allowed(TASK_PHASE_COUNT, TASK_PHASE_RUN));
	assert_false(task_phase_allowed(TASK_PHASE_RUN, (enum task_phase) - 1));
}

/* Each allowed transition, made on a task. */
static void
test_every_allowed_transition(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		reach(f->t, allowed[i].from);
		if (!task_phase_set(f->t, allowed[i].to))
			fail_msg("%s -> %s (%s) refused", task_phase_name(allowed[i].from),
			         task_phase_name(allowed[i].to), allowed[i].why);
		assert_int_equal(f->t->phase, allowed[i].to);
	}
}

/* What the booleans allowed and the phase cannot be: each refused, the task unchanged. */
static void
test_refused(void **state)
{
	struct fx *f = *state;
	static const enum task_phase refused[][2] = {
	    {S, R}, /* a task asked to stop never runs again: its slot starts a new one */
	    {L, R}, /* a lost task stays lost if its node returns (its replacement runs) */
	    {D, R}, /* draining is on the way to stopping */
	    {L, D}, /* a lost task is in no proxy's table: nothing to drain */
	    {H, D}, /* a held task is placed nowhere: nothing to drain */
	    {H, L}, /* a held task is on no node: no node to lose */
	    {S, D}, /* a drain starts before the stop, never after */
	    {D, L}, /* a node going down does not un-ask a stop */
	};

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		reach(f->t, refused[i][0]);
		if (task_phase_set(f->t, refused[i][1]))
			fail_msg("%s -> %s allowed", task_phase_name(refused[i][0]),
			         task_phase_name(refused[i][1]));
		assert_int_equal(f->t->phase, refused[i][0]);
	}
	/* Held means unplaced: a task on a node is never held back. */
	reach(f->t, TASK_PHASE_RUN);
	f->t->bound = true;
	assert_false(task_phase_set(f->t, TASK_PHASE_HELD));
	assert_int_equal(f->t->phase, TASK_PHASE_RUN);
	/* Staying is allowed, even in the final phase. */
	reach(f->t, TASK_PHASE_SHUTDOWN);
	assert_true(task_phase_set(f->t, TASK_PHASE_SHUTDOWN));
}

/* desired (the wire's, the store's), wanted and live are read from the phase. */
static void
test_derived(void **state)
{
	struct fx *f = *state;
	static const struct {
		enum task_phase p;
		enum task_desired desired;
		bool wanted;
	} rows[] = {
	    {R, TASK_DESIRED_RUNNING, true},   {H, TASK_DESIRED_RUNNING, true},
	    {L, TASK_DESIRED_RUNNING, false},  {D, TASK_DESIRED_SHUTDOWN, false},
	    {S, TASK_DESIRED_SHUTDOWN, false},
	};

	assert_int_equal(f->t->phase, TASK_PHASE_RUN); /* a new task */
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		reach(f->t, rows[i].p);
		f->t->state = TASK_STATE_RUNNING;
		assert_int_equal(task_desired(f->t), rows[i].desired);
		assert_int_equal(task_wanted(f->t), rows[i].wanted);
		assert_int_equal(task_live(f->t), rows[i].wanted);
		f->t->state =
		    TASK_STATE_FAILED; /* an ended task is no replica, whatever its phase */
		assert_false(task_live(f->t));
	}
	assert_string_equal(task_phase_name(TASK_PHASE_DRAINING), "draining");
	assert_string_equal(task_phase_name((enum task_phase)42), "unknown");
}

/* The store's row is bookkeeping beside the phase: kept while queued or written. */
static void
test_row(void **state)
{
	struct fx *f = *state;

	assert_false(task_row_kept(f->t));
	f->t->row.queued = true;
	assert_true(task_row_kept(f->t));
	f->t->row.written = true;
	f->t->row.queued = false;
	assert_true(task_row_kept(f->t));
	f->t->row.written = false;
	assert_false(task_row_kept(f->t));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test_setup_teardown(test_every_allowed_transition, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_derived, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_row, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
