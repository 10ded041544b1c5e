/* Unit tests for the store's dispatch to its etcd back end (scheduler/store.c) and the
 * follower's answer (scheduler/ha.c): no etcd needed, the cases stop before the network or
 * reach a closed port. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "scheduler/etcd.h"
#include "scheduler/ha.h"
#include "scheduler/store.h"
#include "scheduler/store_etcd.h"

static int fenced_calls;

static void
on_fenced(const char *why, void *arg)
{
	(void)arg;
	assert_non_null(strstr(why, "does not lead"));
	fenced_calls++;
}

/* An etcd client on a port nothing listens on: a request fails at once. */
static struct etcd *
closed_etcd(void)
{
	struct etcd_config cfg = {.endpoints = "etcd://127.0.0.1:1", .timeout_ms = 500};
	struct shoal_err err;
	struct etcd *e = etcd_new(NULL, &cfg, &err);

	assert_non_null(e);
	return e;
}

static const struct store_node node = {.id = "n1",
                                       .name = "n1",
                                       .address = "10.0.0.1",
                                       .labels = "",
                                       .admin_labels = "",
                                       .availability = "active",
                                       .node_key = ""};

/* A store on etcd E under /t/ whose step-down hook counts into fenced_calls (reset). */
static void
open_fenced_store(struct store *s, struct etcd *e)
{
	struct shoal_err err;

	fenced_calls = 0;
	assert_int_equal(store_open_etcd(s, e, "/t/", &err), 0);
	assert_non_null(s->etcd);
	s->fenced = on_fenced;
}

/* A write through store.h reaches the etcd back end; refused for want of leadership, it
 * calls the step-down hook with SHOAL_ENOTLEADER. */
static void
test_write_without_fence_steps_down(void **state)
{
	struct etcd *e = closed_etcd();
	struct store s;
	struct shoal_err err;

	(void)state;
	open_fenced_store(&s, e);
	assert_int_equal(store_node_put(&s, &node, &err), -1);
	assert_int_equal(err.code, SHOAL_ENOTLEADER);
	assert_int_equal(fenced_calls, 1);
	/* The batch path too: tx_begin / put / commit. */
	assert_int_equal(store_tx_begin(&s, &err), 0);
	assert_int_equal(s.in_tx, 1);
	assert_int_equal(store_task_delete(&s, "t1", &err), 0); /* queued */
	assert_int_equal(store_tx_commit(&s, &err), -1);
	assert_int_equal(s.in_tx, 0);
	assert_int_equal(err.code, SHOAL_ENOTLEADER);
	assert_int_equal(fenced_calls, 2);
	store_close(&s);
	etcd_free(e);
}

/* An etcd that does not answer is not a lost leadership: no step-down from the store (the
 * lease decides that), the error says etcd. */
static void
test_unreachable_is_not_fenced(void **state)
{
	struct etcd *e = closed_etcd();
	struct store s;
	struct shoal_err err;

	(void)state;
	open_fenced_store(&s, e);
	store_etcd_set_fence(s.etcd, "/t/leader", 7, "{\"address\":\"a\",\"id\":\"a\"}");
	assert_int_equal(store_node_put(&s, &node, &err), -1);
	assert_int_not_equal(err.code, SHOAL_ENOTLEADER);
	assert_non_null(strstr(err.msg, "etcd"));
	assert_int_equal(fenced_calls, 0);
	store_close(&s);
	etcd_free(e);
}

static void
test_bad_prefix(void **state)
{
	struct etcd *e = closed_etcd();
	struct store s;
	struct shoal_err err;

	(void)state;
	assert_int_equal(store_open_etcd(&s, e, "noslash", &err), -1);
	assert_null(s.etcd);
	store_close(&s); /* safe on a store that did not open */
	etcd_free(e);
}

static void
test_not_leader_message(void **state)
{
	char buf[256];

	(void)state;
	ha_not_leader_message("10.0.0.2:7100", buf, sizeof(buf));
	assert_string_equal(buf, "not the leader; the leader is 10.0.0.2:7100");
	ha_not_leader_message("", buf, sizeof(buf));
	assert_non_null(strstr(buf, "no scheduler leads"));
	ha_not_leader_message(NULL, buf, sizeof(buf));
	assert_non_null(strstr(buf, "no scheduler leads"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_without_fence_steps_down),
	    cmocka_unit_test(test_unreachable_is_not_fenced),
	    cmocka_unit_test(test_bad_prefix),
	    cmocka_unit_test(test_not_leader_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
