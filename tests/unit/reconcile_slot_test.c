/* Unit tests for scheduler/reconcile_slot: the rules of one replica slot as pure functions of
 * (service, slot, now). Each test builds the slot in memory (service, tasks, nodes), asks what
 * to do, and checks the action, the way swarmkit's restart_test drives its orchestrator on an
 * in-memory store instead of a cluster. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "manifest.h"
#include "scheduler/nodes.h"
#include "scheduler/reconcile.h"
#include "scheduler/reconcile_slot.h"
#include "scheduler/server-t.h"
#include "scheduler/service.h"
#include "scheduler/task.h"
#include "util.h"

#define WALL 1700000000000LL /* wall ms of "now" in these tests */

struct fx {
	struct service *svc;
	struct slot *sl;
	struct node up, down, drained;
	struct task *owned[8];
	size_t nowned;
};

static int
setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	f->svc = service_new("web", WALL);
	f->svc->version = 2;
	f->svc->spec.replicas = 1;
	f->svc->spec.restart.policy = MANIFEST_RESTART_ALWAYS;
	f->svc->spec.restart.delay_ms = 1000;
	f->svc->spec.update.monitor_ms = 5000;
	f->svc->spec.update.order = MANIFEST_ORDER_STOP_FIRST;
	f->sl = service_slot(f->svc, 1);
	f->up = (struct node){.name = "n1", .status = NODE_READY};
	f->down = (struct node){.name = "n2", .status = NODE_DOWN};
	f->drained = (struct node){.name = "n3", .status = NODE_READY, .drain = true};
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	/* The slot owns cur, next and the stopping list (service_free frees them). */
	service_free(f->svc);
	for (size_t i = 0; i < f->nowned; i++)
		task_free(f->owned[i]);
	free(f);
	return 0;
}

/* A task of the service at version v, running on n since monotonic ms since. */
static struct task *
running(struct fx *f, uint64_t v, struct node *n, int64_t since)
{
	struct task *t = task_new(f->svc, f->sl->num, v, WALL - 60000);

	t->node = n;
	t->bound = true;
	t->state = TASK_STATE_RUNNING;
	t->running_since = since;
	return t;
}

/* t ended (exit code) at monotonic ms at. */
static void
ended(struct task *t, int code, int64_t at)
{
	t->state = code ? TASK_STATE_FAILED : TASK_STATE_STOPPED;
	t->exit_code = code;
	t->finished_mono = at;
}

static enum reconcile_slot_act
cur_act(struct fx *f, int64_t now)
{
	return reconcile_slot_cur(f->svc, f->sl, now, WALL).act;
}

static void
test_empty_slot_starts(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cur_act(f, 0), RS_START);
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 0, WALL).act, RS_NONE);
}

static void
test_steady_slot_does_nothing(void **state)
{
	struct fx *f = *state;
	struct reconcile_slot_action a;

	f->sl->cur = running(f, 2, &f->up, 100);
	a = reconcile_slot_cur(f->svc, f->sl, 100000, WALL);
	assert_int_equal(a.act, RS_NONE);
	assert_false(a.wait);
}

/* delay, doubling per consecutive restart, capped at 60 s; the back-off is waited out. */
static void
test_restart_backoff(void **state)
{
	struct fx *f = *state;
	struct reconcile_slot_action a;
	struct task *t = f->sl->cur = running(f, 2, &f->up, 1000);

	ended(t, 1, 2000); /* ran 1 s: no reset */
	a = reconcile_slot_cur(f->svc, f->sl, 2999, WALL);
	assert_int_equal(a.act, RS_WAIT);
	assert_true(a.wait);
	a = reconcile_slot_cur(f->svc, f->sl, 3000, WALL);
	assert_int_equal(a.act, RS_RESTART);
	assert_int_equal(a.restarts, 1);

	t->restarts = 3; /* the 4th restart waits 1 s * 2^3 */
	assert_int_equal(cur_act(f, 2000 + 7999), RS_WAIT);
	a = reconcile_slot_cur(f->svc, f->sl, 2000 + 8000, WALL);
	assert_int_equal(a.act, RS_RESTART);
	assert_int_equal(a.restarts, 4);

	t->restarts = 20;
	assert_int_equal(reconcile_slot_backoff_ms(f->svc, 21), RECONCILE_BACKOFF_MAX_MS);
	assert_int_equal(cur_act(f, 2000 + 59999), RS_WAIT);
	assert_int_equal(cur_act(f, 2000 + 60000), RS_RESTART);
}

/* A task that ran 10 s or more starts its slot's count afresh. */
static void
test_restart_count_resets_after_long_run(void **state)
{
	struct fx *f = *state;
	struct reconcile_slot_action a;
	struct task *t = f->sl->cur = running(f, 2, &f->up, 1000);

	t->restarts = 7;
	ended(t, 1, 1000 + RECONCILE_BACKOFF_RESET_MS);
	a = reconcile_slot_cur(f->svc, f->sl, 1000 + RECONCILE_BACKOFF_RESET_MS + 1000, WALL);
	assert_int_equal(a.act, RS_RESTART);
	assert_int_equal(a.restarts, 1);
}

static void
test_restart_policy(void **state)
{
	struct fx *f = *state;
	struct task *t = f->sl->cur = running(f, 2, &f->up, 1000);

	ended(t, 0, 2000);
	f->svc->spec.restart.policy = MANIFEST_RESTART_ON_FAILURE;
	assert_int_equal(cur_act(f, 100000), RS_NONE); /* exited 0: not a failure */
	t->oom_killed = true;
	assert_int_equal(cur_act(f, 100000), RS_RESTART);
	f->svc->spec.restart.policy = MANIFEST_RESTART_NEVER;
	assert_int_equal(cur_act(f, 100000), RS_NONE);
	f->svc->spec.restart.policy = MANIFEST_RESTART_ALWAYS;
	t->oom_killed = false;
	assert_int_equal(cur_act(f, 100000), RS_RESTART); /* exited 0, restarted anyway */
}

static void
test_max_attempts(void **state)
{
	struct fx *f = *state;
	struct task *t = f->sl->cur = running(f, 2, &f->up, 1000);

	f->svc->spec.restart.max_attempts = 3;
	ended(t, 1, 2000);
	t->restarts = 2;
	assert_int_equal(cur_act(f, 100000), RS_RESTART); /* the 3rd */
	t->restarts = 3;
	assert_int_equal(cur_act(f, 100000), RS_GIVE_UP);
}

/* Node down: the task is lost and replaced, keeping its restart count; a replacement lost
 * is stopped. */
static void
test_node_down(void **state)
{
	struct fx *f = *state;
	struct reconcile_slot_action a;
	struct task *t = f->sl->cur = running(f, 2, &f->down, 1000);

	assert_true(task_phase_set(t, TASK_PHASE_LOST));
	t->restarts = 2;
	a = reconcile_slot_cur(f->svc, f->sl, 5000, WALL);
	assert_int_equal(a.act, RS_REPLACE_LOST);
	assert_int_equal(a.restarts, 2);

	f->sl->cur = running(f, 2, &f->up, 1000);
	f->owned[f->nowned++] = t; /* no longer the slot's */
	f->sl->next = running(f, 2, &f->down, 0);
	f->sl->next->state = TASK_STATE_STARTING;
	assert_true(task_phase_set(f->sl->next, TASK_PHASE_LOST));
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 5000, WALL).act, RS_NEXT_LOST);
}

/* Drain: a replacement elsewhere, which takes over once healthy. */
static void
test_drain(void **state)
{
	struct fx *f = *state;

	f->sl->cur = running(f, 2, &f->drained, 1000);
	assert_int_equal(cur_act(f, 5000), RS_DRAIN);
	f->sl->next = running(f, 2, NULL, 0);
	f->sl->next->state = TASK_STATE_ASSIGNED;
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 5000, WALL).act, RS_NONE);
	assert_int_equal(cur_act(f, 5000), RS_NONE); /* one move at a time */
	f->sl->next->state = TASK_STATE_RUNNING;
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 5000, WALL).act, RS_NEXT_TAKEOVER);
}

/* A new version: start-first starts the new task beside the old one, stop-first replaces
 * it; both within the update's budget, and only an update's tasks are watched. */
static void
test_update_order_and_budget(void **state)
{
	struct fx *f = *state;
	struct reconcile_slot_action a;

	f->sl->cur = running(f, 1, &f->up, 1000);
	f->svc->update.state = UPDATE_UPDATING;
	f->svc->update.budget = 1;
	a = reconcile_slot_cur(f->svc, f->sl, 5000, WALL);
	assert_int_equal(a.act, RS_UPDATE_STOP_FIRST);
	assert_true(a.from_update);
	assert_true(a.wait);
	f->svc->spec.update.order = MANIFEST_ORDER_START_FIRST;
	assert_int_equal(cur_act(f, 5000), RS_UPDATE_START_FIRST);

	f->svc->update.budget = 0; /* parallelism used up */
	a = reconcile_slot_cur(f->svc, f->sl, 5000, WALL);
	assert_int_equal(a.act, RS_NONE);
	assert_true(a.wait);
	f->svc->update.state = UPDATE_PAUSED;
	a = reconcile_slot_cur(f->svc, f->sl, 5000, WALL);
	assert_int_equal(a.act, RS_NONE);
	assert_false(a.wait);

	/* A service that never updated (first deploy after a restart) is not throttled. */
	f->svc->update.state = UPDATE_NONE;
	a = reconcile_slot_cur(f->svc, f->sl, 5000, WALL);
	assert_int_equal(a.act, RS_UPDATE_START_FIRST);
	assert_false(a.from_update);
}

/* Stop-first: the new task is held (not placed) while the old one still stops on a node we
 * hear from; then released. */
static void
test_stop_first_hold(void **state)
{
	struct fx *f = *state;
	struct task *old = running(f, 1, &f->up, 1000);
	struct task *t = f->sl->cur = running(f, 2, NULL, 0);

	t->state = TASK_STATE_PENDING;
	t->bound = false; /* not placed: only then may it be held */
	assert_true(task_phase_set(t, TASK_PHASE_HELD));
	slot_add_stopping(f->sl, old);
	assert_true(task_phase_set(old, TASK_PHASE_SHUTDOWN));
	assert_int_equal(cur_act(f, 5000), RS_NONE);
	old->node = &f->down; /* stopping on a node that went down: does not hold it up */
	assert_int_equal(cur_act(f, 5000), RS_UNHOLD);
	old->node = &f->up;
	ended(old, 0, 5000);
	assert_int_equal(cur_act(f, 5000), RS_UNHOLD);
	assert_true(reconcile_slot_again(RS_UNHOLD));
}

/* An update's task is watched for monitor: healthy in time is done, not healthy in time or
 * ended is a failure (the service's failure_action, in update.c, decides what follows). */
static void
test_monitor(void **state)
{
	struct fx *f = *state;
	struct task *n;

	f->svc->spec.health.kind = MANIFEST_HEALTH_TCP;
	f->sl->cur = running(f, 1, &f->up, 0);
	n = f->sl->next = running(f, 2, &f->up, 10000);
	n->from_update = true;
	task_set_health(n, TASK_HEALTH_STARTING, NULL);
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 15000, WALL).act, RS_NONE);
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 15001, WALL).act, RS_NEXT_MONITOR);
	task_set_health(n, TASK_HEALTH_HEALTHY, NULL);
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 15001, WALL).act, RS_NEXT_TAKEOVER);
	ended(n, 1, 15001);
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 15001, WALL).act, RS_NEXT_ENDED);

	/* Never got to run: monitor + 30 s from its creation (wall clock). */
	n->state = TASK_STATE_ASSIGNED;
	n->running_since = 0;
	n->created_ms = WALL - 35000;
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 0, WALL).act, RS_NONE);
	n->created_ms = WALL - 35001;
	assert_int_equal(reconcile_slot_next(f->svc, f->sl, 0, WALL).act, RS_NEXT_MONITOR);
}

/* Stop-first's new task is the current one: it is watched the same way. */
static void
test_monitor_current(void **state)
{
	struct fx *f = *state;
	struct task *t = f->sl->cur = running(f, 2, &f->up, 10000);
	char why[200];

	f->svc->spec.health.kind = MANIFEST_HEALTH_TCP;
	t->from_update = true;
	task_set_health(t, TASK_HEALTH_UNHEALTHY, "connection refused");
	assert_int_equal(cur_act(f, 15000), RS_WAIT);
	assert_int_equal(cur_act(f, 15001), RS_UPDATE_MONITOR);
	task_set_health(t, TASK_HEALTH_HEALTHY, NULL);
	assert_int_equal(cur_act(f, 15001), RS_UPDATE_DONE);
	ended(t, 3, 15001);
	task_set_health(t, TASK_HEALTH_NONE, NULL);
	assert_int_equal(cur_act(f, 15001), RS_UPDATE_ENDED);
	assert_true(reconcile_slot_again(RS_UPDATE_ENDED));
	/* Once the update counted it (from_update cleared), the slot restarts as any other. */
	t->from_update = false;
	assert_int_equal(cur_act(f, 15001 + 1000), RS_RESTART);
	reconcile_slot_failure_text(t, why, sizeof(why));
	assert_string_equal(why, "exited with code 3");
	task_set_health(t, TASK_HEALTH_UNHEALTHY, "connection refused");
	reconcile_slot_failure_text(t, why, sizeof(why));
	assert_string_equal(why, "unhealthy: connection refused");
}

/* Health is a type: an agent's verdict sets it (and the listed text), an older agent's text
 * is read into the same type, and only a change counts. */
static void
test_health_state(void **state)
{
	struct fx *f = *state;
	struct task *t = f->sl->cur = running(f, 2, &f->up, 1000);
	const char *reason;

	f->svc->spec.health.kind = MANIFEST_HEALTH_HTTP;
	assert_false(task_healthy(t)); /* nothing reported yet */
	assert_true(task_set_health(t, TASK_HEALTH_STARTING, NULL));
	assert_false(task_set_health(t, TASK_HEALTH_STARTING, NULL));
	assert_false(task_healthy(t));
	assert_true(task_set_health(t, TASK_HEALTH_HEALTHY, NULL));
	assert_true(task_healthy(t));
	assert_string_equal(t->health, "healthy");
	assert_true(task_set_health(t, TASK_HEALTH_UNHEALTHY, "GET /healthz: 500"));
	assert_false(task_healthy(t));
	assert_string_equal(t->health, "unhealthy: GET /healthz: 500");
	assert_true(task_set_health(t, TASK_HEALTH_UNHEALTHY, "GET /healthz: 503"));
	assert_false(task_set_health(t, TASK_HEALTH_UNHEALTHY, "GET /healthz: 503"));

	assert_int_equal(task_health_parse("", &reason), TASK_HEALTH_NONE);
	assert_int_equal(task_health_parse("starting", &reason), TASK_HEALTH_STARTING);
	assert_int_equal(task_health_parse("healthy", &reason), TASK_HEALTH_HEALTHY);
	assert_int_equal(task_health_parse("unhealthy: GET /: 500", &reason),
	                 TASK_HEALTH_UNHEALTHY);
	assert_string_equal(reason, "GET /: 500");
	/* "healthy" is not a prefix match: a text that only starts with it is not healthy. */
	assert_int_equal(task_health_parse("healthyish", &reason), TASK_HEALTH_UNKNOWN);
}

/* Memory per task at a million replicas: the task fits a 224-byte malloc chunk (216 bytes
 * of struct), an unhealthy text is freed when the verdict changes back (ASan checks the
 * constants are never freed), and a service scaled to N gets exactly N slots. */
static void
test_task_memory(void **state)
{
	struct fx *f = *state;
	struct task *t = f->sl->cur = running(f, 2, &f->up, 1000);
	struct service *svc = service_new("big", WALL);

	assert_true(sizeof(struct task) <= 216);
	assert_true(task_set_health(t, TASK_HEALTH_UNHEALTHY, "refused"));
	assert_true(task_set_health(t, TASK_HEALTH_NONE, NULL));
	assert_string_equal(t->health, "");
	assert_true(task_set_health(t, TASK_HEALTH_UNHEALTHY, "refused"));
	/* teardown frees t with its unhealthy text */
	service_slots_reserve(svc, 10000);
	for (uint32_t i = 1; i <= 10000; i++)
		service_slot(svc, i);
	assert_int_equal(svc->nslots, 10000);
	assert_int_equal(svc->capslots, 10000);
	service_free(svc);
}

/* A slot is found by its number with or without gaps (the no-search path for 1..n, the
 * binary search once a scale-down left holes), and a free number is the first gap. */
static void
test_slot_lookup(void **state)
{
	struct service *svc = service_new("gaps", WALL);
	uint32_t nums[] = {1, 2, 4, 5, 9};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(nums); i++)
		service_slot(svc, nums[i]);
	for (uint32_t n = 0; n <= 10; n++) {
		struct slot *sl = service_slot_find(svc, n);
		bool have = n == 1 || n == 2 || n == 4 || n == 5 || n == 9;
		assert_int_equal(sl != NULL, have);
		if (sl)
			assert_int_equal(sl->num, n);
	}
	assert_int_equal(service_free_slot(svc), 3);
	assert_int_equal(service_free_slot_from(svc, 4), 6);
	assert_int_equal(service_slot(svc, 3)->num, 3); /* inserted in order */
	assert_int_equal(svc->slots[2].num, 3);
	assert_int_equal(service_slot_find(svc, 4)->num, 4);
	service_free(svc);
}

/* A big scale-up comes in slices: each pass of the service creates RECONCILE_SCALE_SLICE
 * slots at most and marks the service again, so the loop reads heartbeats between slices;
 * the last slice leaves it clean. (No nodes here: the tasks stay pending.) */
static void
test_scale_in_slices(void **state)
{
	struct sched_server *srv = xcalloc(1, sizeof(*srv));
	struct service *svc = service_new("big", WALL);

	(void)state;
	svc->version = 1;
	svc->spec.replicas = 2 * RECONCILE_SCALE_SLICE + 1;
	assert_true(reconcile_service(srv, svc, 1000));
	assert_int_equal(svc->nslots, RECONCILE_SCALE_SLICE);
	assert_true(svc->dirty);
	assert_int_equal(srv->ndirty_svcs, 1);
	assert_ptr_equal(srv->dirty_svcs[0], svc);
	assert_true(reconcile_service(srv, svc, 1000));
	assert_int_equal(svc->nslots, 2 * RECONCILE_SCALE_SLICE);
	assert_true(reconcile_service(srv, svc, 1000));
	assert_int_equal(svc->nslots, 2 * RECONCILE_SCALE_SLICE + 1);
	assert_false(svc->dirty);
	for (size_t i = 0; i < svc->nslots; i++) {
		assert_int_equal(svc->slots[i].num, i + 1);
		assert_non_null(svc->slots[i].cur);
	}
	assert_int_equal(srv->tasks.n, 2 * RECONCILE_SCALE_SLICE + 1);
	task_map_free(&srv->tasks);
	service_free(svc);
	free(srv->dirty_svcs);
	free(srv->dirty_tasks);
	free(srv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_empty_slot_starts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_steady_slot_does_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_backoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_count_resets_after_long_run, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_restart_policy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_attempts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_node_down, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update_order_and_budget, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_first_hold, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_monitor, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_monitor_current, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_health_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_task_memory, setup, teardown),
	    cmocka_unit_test(test_slot_lookup),
	    cmocka_unit_test(test_scale_in_slices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
