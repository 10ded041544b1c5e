/*
 * Unit tests for scheduler/api through a real in-process scheduler (tests/unit/sched_harness.h):
 * what a holder of the worker token can make the scheduler do with crafted messages, and the
 * rule that no request is ever answered with silence.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sodium.h>

#include "log.h"
#include "scheduler/task.h"
#include "tests/unit/sched_harness.h"

/* Frames of 4 KiB: a listing of a few dozen labelled nodes no longer fits in one. */
static int
setup_small_frames(void **state)
{
	struct harness *h = xcalloc(1, sizeof(*h));

	if (harness_open(h, 4096) == -1)
		return -1;
	*state = h;
	return 0;
}

/* Register name with n labels "kI=vI" (or "k=v" n times when same). The reply, owned. */
static Shoal__Envelope *
do_register(struct harness *h, const char *name, const char *address, size_t n, bool same)
{
	Shoal__Envelope *r;
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Label *lv = xcalloc(n + 1, sizeof(*lv));
	Shoal__Label **lp = xcalloc(n + 1, sizeof(*lp));
	char(*kv)[2][16] = xcalloc(n + 1, sizeof(*kv));

	for (size_t i = 0; i < n; i++) {
		shoal__label__init(&lv[i]);
		snprintf(kv[i][0], sizeof(kv[i][0]), same ? "k" : "key%zu", i);
		snprintf(kv[i][1], sizeof(kv[i][1]), same ? "v" : "value%zu", i);
		lv[i].key = kv[i][0];
		lv[i].value = kv[i][1];
		lp[i] = &lv[i];
	}
	reg.node_name = (char *)name;
	reg.address = (char *)address;
	reg.labels = lp;
	reg.n_labels = n;
	r = harness_register(h, &reg);
	free(lv);
	free(lp);
	free(kv);
	return r;
}

static Shoal__Envelope *
list_nodes(struct harness *h)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__ListNodes ln = SHOAL__LIST_NODES__INIT;

	env.body_case = SHOAL__ENVELOPE__BODY_LIST_NODES;
	env.list_nodes = &ln;
	return harness_call(h, HARNESS_ADMIN, &env, 1000);
}

/* The Register of the issue: half a million labels. Refused at once, nothing stored. */
static void
test_register_500k_labels(void **state)
{
	struct harness *h = *state;
	Shoal__Envelope *r;

	r = do_register(h, "evil", "10.0.0.9", 500000, true);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_ERROR);
	assert_int_equal(r->error->code, EINVAL);
	assert_string_equal(r->error->message, "register refused: 500000 labels: at most 64");
	shoal__envelope__free_unpacked(r, NULL);

	r = do_register(h, "node1", "10.0.0.1", 2, false);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
	r = list_nodes(h);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_LIST_NODES_REPLY);
	assert_int_equal(r->list_nodes_reply->n_nodes, 1);
	assert_string_equal(r->list_nodes_reply->nodes[0]->name, "node1");
	assert_int_equal(r->list_nodes_reply->nodes[0]->n_labels, 2);
	shoal__envelope__free_unpacked(r, NULL);
}

/* A reply that does not fit a frame is an error reply with the request's id, not silence. */
static void
test_oversized_reply_is_an_error(void **state)
{
	struct harness *h = *state;
	Shoal__Envelope *r;
	char name[16];

	/* Each within the caps; together ~20 x 40 x 16 bytes, over the 4 KiB frame. */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "node%d", i);
		assert_int_equal(harness_reconnect(h, HARNESS_WORKER), 0);
		r = do_register(h, name, "10.0.0.1", 40, false);
		assert_non_null(r);
		assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
		shoal__envelope__free_unpacked(r, NULL);
	}
	r = list_nodes(h);
	assert_non_null(r); /* before: no reply at all, the CLI waited for its timeout */
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_ERROR);
	assert_int_equal(r->error->code, EMSGSIZE);
	assert_non_null(strstr(r->error->message, "list_nodes_reply"));
	assert_non_null(strstr(r->error->message, "exceeds the frame limit of 4096 bytes"));
	shoal__envelope__free_unpacked(r, NULL);
	/* The connection stays usable. */
	r = do_register(h, "node19", "10.0.0.1", 0, false);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
}

/*
 * One connection registers node a, then node b. Before, both kept it as their session and
 * only b was unlinked when it closed: anything sent to a afterwards (Assignments, Endpoints)
 * went through a freed connection (found by tests/fuzz/register.c under ASan).
 */
static void
test_one_node_per_connection(void **state)
{
	struct harness *h = *state;
	Shoal__Envelope *r;

	r = do_register(h, "a", "10.0.0.1", 0, false);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
	r = do_register(h, "b", "10.0.0.2", 0, false);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_ERROR);
	assert_int_equal(r->error->code, EPROTO);
	assert_string_equal(r->error->message,
	                    "this connection registered node a; one node per connection");
	shoal__envelope__free_unpacked(r, NULL);
	/* The same name again is a re-registration, as an agent may send. */
	r = do_register(h, "a", "10.0.0.1", 1, false);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
	r = list_nodes(h);
	assert_non_null(r);
	assert_int_equal(r->list_nodes_reply->n_nodes, 1);
	shoal__envelope__free_unpacked(r, NULL);
}

/* The task of service web: its id, state and ip. false while there is none. */
static bool
web_task(struct harness *h, char id[16], int *st, char ip[16])
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT, *r;
	Shoal__ListTasks lt = SHOAL__LIST_TASKS__INIT;
	bool found = false;

	lt.service = "web";
	env.body_case = SHOAL__ENVELOPE__BODY_LIST_TASKS;
	env.list_tasks = &lt;
	r = harness_call(h, HARNESS_ADMIN, &env, 1000);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_LIST_TASKS_REPLY);
	for (size_t i = 0; i < r->list_tasks_reply->n_tasks && !found; i++) {
		const Shoal__TaskInfo *ti = r->list_tasks_reply->tasks[i];
		if (strcmp(ti->node, "evil") != 0)
			continue;
		snprintf(id, 16, "%s", ti->id);
		snprintf(ip, 16, "%s", ti->ip);
		*st = ti->state;
		found = true;
	}
	shoal__envelope__free_unpacked(r, NULL);
	return found;
}

/* Report the task running at ip with a health verdict: as a type (state, reason) and as the
 * text an agent of an older version sends alone ("" and "": none). */
static void
report_running(struct harness *h, const char *id, const char *ip, int state, const char *reason,
               const char *text)
{
	Shoal__TaskStatus ts = SHOAL__TASK_STATUS__INIT;

	ts.task_id = (char *)id;
	ts.state = SHOAL__TASK_STATE__TASK_RUNNING;
	ts.timestamp_ms = util_wall_ms();
	ts.container_ip = (char *)ip;
	ts.health_state = (Shoal__HealthState)state;
	ts.health_reason = (char *)reason;
	ts.health = (char *)text;
	assert_int_equal(harness_report(h, &ts), 0);
	harness_spin(h, 50);
}

static void
report(struct harness *h, const char *id, const char *ip)
{
	report_running(h, id, ip, SHOAL__HEALTH_STATE__HEALTH_STATE_UNSET, "", "");
}

static void
report_health(struct harness *h, const char *id, int state, const char *reason, const char *text)
{
	report_running(h, id, "10.244.1.9", state, reason, text);
}

/*
 * Node "evil" registers (it gets 10.244.1.0/24) and the admin applies spec, a service web
 * placed on it: its task, assigned, in id, *st and ip.
 */
static void
web_on_evil(struct harness *h, const char *spec, char id[16], int *st, char ip[16])
{
	Shoal__Envelope *r;

	r = do_register(h, "evil", "192.168.56.66", 0, false);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
	assert_string_equal(r->register_reply->container_subnet, "10.244.1.0/24");
	shoal__envelope__free_unpacked(r, NULL);
	r = harness_apply(h, spec);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_APPLY_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
	harness_spin(h, 100);
	assert_true(web_task(h, id, st, ip));
}

/*
 * A worker registers as node "evil" (it gets 10.244.1.0/24), is given a task, and reports it
 * running at addresses every proxy would then dial: refused, the task stays where it was.
 * Then at an address of its own /24: accepted (the check is not a wall).
 */
static void
test_task_address_checked(void **state)
{
	struct harness *h = *state;
	const char *spec = "{\"name\":\"web\",\"image\":\"shoal/web:1\",\"replicas\":1,"
	                   "\"ports\":[{\"published\":8090,\"target\":8090}],"
	                   "\"placement\":{\"constraints\":[\"node.name == evil\"]}}";
	const char *bad[] = {"127.0.0.1",  "10.244.2.7",    "169.254.169.254", "224.0.0.1",
	                     "10.244.1.1", "192.168.56.11", "0.0.0.0",         "not-an-ip"};
	char id[16], ip[16];
	int st;

	web_on_evil(h, spec, id, &st, ip);
	assert_int_equal(st, SHOAL__TASK_STATE__TASK_ASSIGNED);

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		report(h, id, bad[i]);
		assert_true(web_task(h, id, &st, ip));
		assert_int_equal(st, SHOAL__TASK_STATE__TASK_ASSIGNED);
		assert_string_equal(ip, "");
	}
	report(h, id, "10.244.1.9");
	assert_true(web_task(h, id, &st, ip));
	assert_int_equal(st, SHOAL__TASK_STATE__TASK_RUNNING);
	assert_string_equal(ip, "10.244.1.9");
	/* Once running, it cannot move its address out either. */
	report(h, id, "127.0.0.1");
	assert_true(web_task(h, id, &st, ip));
	assert_string_equal(ip, "10.244.1.9");
}

/*
 * Health crosses the wire as a type: the scheduler decides on health_state (and lists
 * "unhealthy: <reason>"), not on the text; an agent of an older version, which sends the text
 * alone, is read into the same type.
 */
static void
test_health_is_a_type(void **state)
{
	struct harness *h = *state;
	const char *spec = "{\"name\":\"web\",\"image\":\"shoal/web:1\",\"replicas\":1,"
	                   "\"health\":{\"kind\":\"tcp\",\"port\":8090},"
	                   "\"placement\":{\"constraints\":[\"node.name == evil\"]}}";
	char id[16], ip[16];
	struct task *t;
	int st;

	web_on_evil(h, spec, id, &st, ip);
	t = task_map_get(&h->srv.tasks, id);
	assert_non_null(t);

	/* The type wins over a text that says otherwise. */
	report_health(h, id, SHOAL__HEALTH_STATE__HEALTH_STATE_UNHEALTHY, "connect: refused",
	              "healthy");
	assert_int_equal(t->health_state, TASK_HEALTH_UNHEALTHY);
	assert_string_equal(t->health, "unhealthy: connect: refused");
	assert_false(task_healthy(t));
	report_health(h, id, SHOAL__HEALTH_STATE__HEALTH_STATE_HEALTHY, "", "unhealthy: stale");
	assert_int_equal(t->health_state, TASK_HEALTH_HEALTHY);
	assert_true(task_healthy(t));

	/* An older agent: the text alone. */
	report_health(h, id, SHOAL__HEALTH_STATE__HEALTH_STATE_UNSET, "", "unhealthy: GET /: 500");
	assert_int_equal(t->health_state, TASK_HEALTH_UNHEALTHY);
	assert_string_equal(t->health, "unhealthy: GET /: 500");
	report_health(h, id, SHOAL__HEALTH_STATE__HEALTH_STATE_UNSET, "", "healthy");
	assert_true(task_healthy(t));
	/* A value from a newer agent this one does not know: read the text. */
	report_health(h, id, 99, "", "starting");
	assert_int_equal(t->health_state, TASK_HEALTH_STARTING);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_register_500k_labels, harness_setup,
	                                    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_reply_is_an_error, setup_small_frames,
	                                    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_task_address_checked, harness_setup,
	                                    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_one_node_per_connection, harness_setup,
	                                    harness_teardown),
	    cmocka_unit_test_setup_teardown(test_health_is_a_type, harness_setup, harness_teardown),
	};
	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	log_level = getenv("SHOAL_TEST_LOG") ? LOG_DEBUG : -1;
	return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
