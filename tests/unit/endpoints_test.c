/*
 * Unit tests for scheduler/endpoints through a real in-process scheduler
 * (tests/unit/sched_harness.h): which services' tasks a node's Endpoints carry. A published
 * service's go to every node; an unpublished one's only to the nodes that follow it
 * (EndpointsSubscribe, or Register after a reconnect); every node gets every name and VIP.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "log.h"
#include "scheduler/endpoints.h"
#include "scheduler/service.h"
#include "scheduler/task.h"
#include "tests/unit/sched_harness.h"

/* The worker connection's pushes: the last Endpoints and how many came. */
struct pushes {
	struct harness *h;
	Shoal__Endpoints *last; /* owned */
	unsigned count;
};

static struct pushes P;

static void
ep_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	uint8_t *buf;
	size_t len;

	if (env->id == 0 && env->body_case == SHOAL__ENVELOPE__BODY_ENDPOINTS) {
		len = shoal__endpoints__get_packed_size(env->endpoints);
		buf = xmalloc(len ? len : 1);
		shoal__endpoints__pack(env->endpoints, buf);
		if (P.last)
			shoal__endpoints__free_unpacked(P.last, NULL);
		P.last = shoal__endpoints__unpack(NULL, len, buf);
		P.count++;
		free(buf);
		return;
	}
	harness_cli_message(c, env, arg);
}

static const struct rpc_callbacks ep_cbs = {
    .ready = harness_cli_ready,
    .message = ep_message,
    .closed = harness_cli_closed,
};

/* A fresh worker connection (the old one closed) whose pushes land in P. */
static void
ep_connect(struct harness *h)
{
	assert_int_equal(harness_reconnect_cbs(h, HARNESS_WORKER, &ep_cbs), 0);
}

static int
setup(void **state)
{
	struct harness *h;

	if (harness_setup(state) == -1)
		return -1;
	h = *state;
	memset(&P, 0, sizeof(P));
	P.h = h;
	ep_connect(h);
	return 0;
}

static int
teardown(void **state)
{
	harness_teardown(state);
	if (P.last)
		shoal__endpoints__free_unpacked(P.last, NULL);
	memset(&P, 0, sizeof(P));
	return 0;
}

/* Register as name, following the services in subs, running what api's tasks on it run (an
 * agent lists them, or the scheduler counts them lost). */
static void
do_register(struct harness *h, const char *name, char **subs, size_t nsubs)
{
	Shoal__Envelope *r;
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__TaskStatus ts[8], *tsp[8];
	const struct service *api = services_find(&h->srv.services, "api");

	for (size_t k = 0; api && k < api->nslots && reg.n_tasks_running < 8; k++) {
		const struct task *t = api->slots[k].cur;
		if (t == NULL || t->node == NULL || strcmp(t->node->name, name) != 0)
			continue;
		shoal__task_status__init(&ts[reg.n_tasks_running]);
		ts[reg.n_tasks_running].task_id = (char *)t->id;
		ts[reg.n_tasks_running].state = SHOAL__TASK_STATE__TASK_RUNNING;
		ts[reg.n_tasks_running].timestamp_ms = util_wall_ms();
		ts[reg.n_tasks_running].container_ip = (char *)t->ip;
		tsp[reg.n_tasks_running] = &ts[reg.n_tasks_running];
		reg.n_tasks_running++;
	}
	reg.tasks_running = tsp;

	reg.node_name = (char *)name;
	reg.address = "192.168.56.11";
	reg.endpoints_subscribed = subs;
	reg.n_endpoints_subscribed = nsubs;
	r = harness_register(h, &reg);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
}

static void
apply(struct harness *h, const char *json)
{
	Shoal__Envelope *r = harness_apply(h, json);

	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_APPLY_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
}

/* Report every task of service name running, at 10.244.1.<base + slot>. */
static void
run_all(struct harness *h, const char *name, int base)
{
	const struct service *svc;

	harness_spin(h, 100);
	svc = services_find(&h->srv.services, name);
	assert_non_null(svc);
	for (size_t k = 0; k < svc->nslots; k++) {
		Shoal__TaskStatus ts = SHOAL__TASK_STATUS__INIT;
		char ip[32];
		assert_non_null(svc->slots[k].cur);
		snprintf(ip, sizeof(ip), "10.244.1.%d", base + (int)k);
		ts.task_id = (char *)svc->slots[k].cur->id;
		ts.state = SHOAL__TASK_STATE__TASK_RUNNING;
		ts.timestamp_ms = util_wall_ms();
		ts.container_ip = ip;
		assert_int_equal(harness_report(h, &ts), 0);
	}
	harness_spin(h, 200);
}

static void
subscribe(struct harness *h, const char *name)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__EndpointsSubscribe sub = SHOAL__ENDPOINTS_SUBSCRIBE__INIT;
	char *names[] = {(char *)name};
	struct shoal_err err;

	sub.services = names;
	sub.n_services = 1;
	env.id = ++h->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_ENDPOINTS_SUBSCRIBE;
	env.endpoints_subscribe = &sub;
	assert_int_equal(rpc_send(h->cli[HARNESS_WORKER], &env, &err), 0);
	harness_spin(h, 200);
}

static const Shoal__ServiceName *
name_of(const char *name)
{
	assert_non_null(P.last);
	for (size_t i = 0; i < P.last->n_names; i++)
		if (strcmp(P.last->names[i]->name, name) == 0)
			return P.last->names[i];
	fail_msg("no name %s in the last Endpoints", name);
	return NULL;
}

#define API                                                                                        \
	"{\"name\":\"api\",\"image\":\"shoal/web:1\",\"replicas\":2,\"ports\":[{\"target\":80}]}"
#define WEB                                                                                        \
	"{\"name\":\"web\",\"image\":\"shoal/web:1\",\"replicas\":1,"                              \
	"\"ports\":[{\"published\":8090,\"target\":8090}]}"

/*
 * Before, every service's tasks went to every node: with a million tasks the table never
 * reached 10,000 nodes. Now an unpublished service's tasks reach a node only once it follows
 * the service; its name and VIP reach every node; a published service's tasks every node.
 */
static void
test_unpublished_tasks_only_to_followers(void **state)
{
	struct harness *h = *state;
	const Shoal__ServiceName *sn;
	uint64_t gen;

	do_register(h, "n1", NULL, 0);
	apply(h, API);
	apply(h, WEB);
	run_all(h, "api", 10);
	run_all(h, "web", 20);
	sn = name_of("api");
	assert_true(sn->tasks_omitted);
	assert_int_equal(sn->n_tasks, 0);
	assert_true(sn->vip && sn->vip[0]);
	assert_int_equal(sn->n_vip_ports, 1);
	sn = name_of("web");
	assert_false(sn->tasks_omitted);
	assert_int_equal(sn->n_tasks, 1);
	assert_int_equal(P.last->n_services, 1);
	assert_int_equal(P.last->services[0]->n_backends, 1);
	/* An unfollowed unpublished task is in nobody's table: nothing to drain. */
	const struct service *api = services_find(&h->srv.services, "api");
	assert_false(endpoints_drain(&h->srv, api->slots[0].cur));

	gen = P.last->generation;
	subscribe(h, "api");
	assert_true(endpoints_subscribed(&h->srv.endpoints, "n1", "api"));
	sn = name_of("api");
	assert_false(sn->tasks_omitted);
	assert_int_equal(sn->n_tasks, 2);
	assert_string_equal(sn->tasks[0]->ip, "10.244.1.10");
	assert_true(P.last->generation >= gen);
	/* A name that is not a service is not followed. */
	subscribe(h, "nosuch");
	assert_false(endpoints_subscribed(&h->srv.endpoints, "n1", "nosuch"));
}

/*
 * A follower sees its service change (a replica added) in the next generation; a node that
 * reconnects keeps following it (the subscription is the node's), and one whose Register
 * names it (a scheduler that restarted knows nothing) gets the tasks in its first table.
 */
static void
test_followers_across_reconnects(void **state)
{
	struct harness *h = *state;
	char *subs[] = {"api"};
	unsigned before;

	do_register(h, "n1", NULL, 0);
	apply(h, API);
	run_all(h, "api", 10);
	subscribe(h, "api");
	assert_int_equal(name_of("api")->n_tasks, 2);

	/* Scale to 3: the follower gets the third. */
	apply(h, "{\"name\":\"api\",\"image\":\"shoal/web:1\",\"replicas\":3,"
	         "\"ports\":[{\"target\":80}]}");
	run_all(h, "api", 10);
	assert_int_equal(name_of("api")->n_tasks, 3);

	/* A new session of the same node: its first table has them. */
	ep_connect(h);
	before = P.count;
	do_register(h, "n1", NULL, 0);
	harness_spin(h, 100);
	assert_true(P.count > before);
	assert_false(name_of("api")->tasks_omitted);
	assert_int_equal(name_of("api")->n_tasks, 3);

	/* Another node does not follow it... */
	ep_connect(h);
	do_register(h, "n2", NULL, 0);
	harness_spin(h, 100);
	assert_true(name_of("api")->tasks_omitted);
	assert_int_equal(name_of("api")->n_tasks, 0);
	/* ...until its Register says so. */
	ep_connect(h);
	do_register(h, "n2", subs, 1);
	harness_spin(h, 100);
	assert_false(name_of("api")->tasks_omitted);
	assert_int_equal(name_of("api")->n_tasks, 3);
	assert_true(endpoints_subscribed(&h->srv.endpoints, "n2", "api"));
}

/*
 * A service without ports (a worker its callers find by tasks.NAME): a follower sees its
 * replicas as they start. Before, only a service with ports had its Endpoints rebuilt when a
 * task started, so a follower's view stayed behind.
 */
static void
test_portless_follower_sees_starts(void **state)
{
	struct harness *h = *state;

	do_register(h, "n1", NULL, 0);
	apply(h, "{\"name\":\"api\",\"image\":\"shoal/web:1\",\"replicas\":1}");
	run_all(h, "api", 10);
	subscribe(h, "api");
	assert_int_equal(name_of("api")->n_tasks, 1);
	apply(h, "{\"name\":\"api\",\"image\":\"shoal/web:1\",\"replicas\":2}");
	run_all(h, "api", 10);
	assert_false(name_of("api")->tasks_omitted);
	assert_int_equal(name_of("api")->n_tasks, 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_unpublished_tasks_only_to_followers, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_followers_across_reconnects, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_portless_follower_sees_starts, setup, teardown),
	};

	log_level = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
