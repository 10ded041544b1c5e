/* Unit tests for scheduler/nodes and scheduler/store: identity and subnets survive restarts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "scheduler/nodes.h"
#include "scheduler/store.h"
#include "util.h"

struct fixture {
	char dir[64];
	char db[128];
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/shoal-nodes-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/state.db", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	cleanup_free char *cmd = xasprintf("rm -rf '%s'", f->dir);

	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void
test_cidr(void **state)
{
	struct shoal_err err;
	uint32_t base;
	int prefix;

	(void)state;
	assert_int_equal(nodes_parse_cidr("10.244.0.0/16", &base, &prefix, &err), 0);
	assert_int_equal(base, 0x0af40000);
	assert_int_equal(prefix, 16);
	assert_int_equal(nodes_parse_cidr("10.244.0.0/25", &base, &prefix, &err), -1);
	assert_string_equal(err.msg, "cluster CIDR \"10.244.0.0/25\": prefix must be /8 to /24");
	assert_int_equal(nodes_parse_cidr("10.244.0.0", &base, &prefix, &err), -1);
	assert_int_equal(nodes_parse_cidr("300.1.1.1/16", &base, &prefix, &err), -1);
}

static void
test_register_distinct_subnets(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	char s1[32], s2[32], s3[32];
	struct node *a, *b, *c;

	assert_int_equal(store_open(&st, f->db, &err), 0);
	assert_int_equal(nodes_init(&ns, "10.244.0.0/16", &err), 0);
	a = nodes_register(&ns, &st, "node1", "192.168.56.11", "zone=a", 2000, 1 << 30, NULL, &err);
	b = nodes_register(&ns, &st, "node2", "192.168.56.12", "zone=b", 2000, 1 << 30, NULL, &err);
	c = nodes_register(&ns, &st, "node3", "192.168.56.13", "", 1000, 1 << 29, NULL, &err);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_string_equal(nodes_subnet(&ns, a, s1, sizeof(s1)), "10.244.1.0/24");
	assert_string_equal(nodes_subnet(&ns, b, s2, sizeof(s2)), "10.244.2.0/24");
	assert_string_equal(nodes_subnet(&ns, c, s3, sizeof(s3)), "10.244.3.0/24");
	assert_string_not_equal(a->id, b->id);
	/* Re-registering keeps the id and subnet, updates the address. */
	char id[16];
	snprintf(id, sizeof(id), "%s", b->id);
	assert_ptr_equal(
	    nodes_register(&ns, &st, "node2", "192.168.56.22", "zone=b", 2000, 1 << 30, NULL, &err), b);
	assert_string_equal(b->id, id);
	assert_string_equal(b->address, "192.168.56.22");
	assert_string_equal(nodes_subnet(&ns, b, s2, sizeof(s2)), "10.244.2.0/24");
	nodes_free(&ns);
	store_close(&st);
}

static void
test_reload_keeps_identity(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	char id1[16], id2[16], sub[32];
	struct node *n;

	assert_int_equal(store_open(&st, f->db, &err), 0);
	assert_int_equal(nodes_init(&ns, "10.244.0.0/16", &err), 0);
	n = nodes_register(&ns, &st, "node1", "192.168.56.11", "zone=a", 2000, 1 << 30, NULL, &err);
	snprintf(id1, sizeof(id1), "%s", n->id);
	n = nodes_register(&ns, &st, "node2", "192.168.56.12", "zone=b", 2000, 1 << 30, NULL, &err);
	snprintf(id2, sizeof(id2), "%s", n->id);
	nodes_free(&ns);
	store_close(&st);

	/* As after a kill -9 and restart: everything comes back from SQLite, down until seen. */
	assert_int_equal(store_open(&st, f->db, &err), 0);
	assert_int_equal(nodes_init(&ns, "10.244.0.0/16", &err), 0);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	assert_int_equal(ns.n, 2);
	n = nodes_find(&ns, "node2");
	assert_non_null(n);
	assert_string_equal(n->id, id2);
	assert_int_equal(n->status, NODE_UNKNOWN);
	assert_string_equal(n->labels, "zone=b");
	assert_string_equal(nodes_subnet(&ns, n, sub, sizeof(sub)), "10.244.2.0/24");
	/* A new node does not get a subnet already held. */
	n = nodes_register(&ns, &st, "node3", "192.168.56.13", "", 1000, 1 << 29, NULL, &err);
	assert_string_equal(nodes_subnet(&ns, n, sub, sizeof(sub)), "10.244.3.0/24");
	assert_string_equal(nodes_find(&ns, "node1")->id, id1);
	nodes_free(&ns);
	store_close(&st);
}

static void
test_subnets_exhausted(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	char name[16];

	assert_int_equal(store_open(&st, f->db, &err), 0);
	/* A /22 holds four /24s; index 0 is skipped, so three nodes fit. */
	assert_int_equal(nodes_init(&ns, "10.9.0.0/22", &err), 0);
	for (int i = 1; i <= 3; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_non_null(nodes_register(&ns, &st, name, "10.0.0.1", "", 1000, 1, NULL, &err));
	}
	assert_null(nodes_register(&ns, &st, "n4", "10.0.0.1", "", 1000, 1, NULL, &err));
	assert_string_equal(err.msg, "no free /24 left in the cluster CIDR for node n4");
	assert_null(nodes_find(&ns, "n4"));
	nodes_free(&ns);
	store_close(&st);
}

static int downs;
static void
count_down(struct node *n, void *arg)
{
	(void)n;
	(void)arg;
	downs++;
}

static void
test_expire(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	struct node *a, *b;

	assert_int_equal(store_open(&st, f->db, &err), 0);
	assert_int_equal(nodes_init(&ns, "10.244.0.0/16", &err), 0);
	a = nodes_register(&ns, &st, "a", "10.0.0.1", "", 1000, 1, NULL, &err);
	b = nodes_register(&ns, &st, "b", "10.0.0.2", "", 1000, 1, NULL, &err);
	a->status = b->status = NODE_READY;
	a->last_seen = 10000;
	b->last_seen = 12500;
	downs = 0;
	/* At t=13000 with a 3000 ms timeout: a (silent 3000 ms) stays, then goes at 13001. */
	assert_int_equal(nodes_expire(&ns, 13000, 3000, count_down, NULL), 0);
	assert_int_equal(nodes_expire(&ns, 13001, 3000, count_down, NULL), 1);
	assert_int_equal(a->status, NODE_DOWN);
	assert_int_equal(b->status, NODE_READY);
	/* A node already down is not reported twice. */
	assert_int_equal(nodes_expire(&ns, 20000, 3000, count_down, NULL), 1);
	assert_int_equal(downs, 2);
	nodes_free(&ns);
	store_close(&st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cidr),
	    cmocka_unit_test_setup_teardown(test_register_distinct_subnets, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload_keeps_identity, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_subnets_exhausted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("nodes", tests, NULL, NULL);
}
