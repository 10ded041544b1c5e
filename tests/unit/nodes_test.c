/* Unit tests for scheduler/nodes and scheduler/store: identity and subnets survive restarts. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>
#include <sqlite3.h>

#include "fixture.h"
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

	if (fixture_tmpdir(f->dir, sizeof(f->dir), "nodes") == -1)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/state.db", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	if (fixture_rmtree(f->dir) == -1)
		return -1;
	free(f);
	return 0;
}

/* The store in f's dir and a node table of 10.244.0.0/16 on it. */
static void
open_table(struct fixture *f, struct store *st, struct nodes *ns)
{
	struct shoal_err err;

	assert_int_equal(store_open(st, f->db, &err), 0);
	assert_int_equal(nodes_init(ns, "10.244.0.0/16", &err), 0);
}

static void
close_table(struct store *st, struct nodes *ns)
{
	nodes_free(ns);
	store_close(st);
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

	open_table(f, &st, &ns);
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
	    nodes_register(&ns, &st, "node2", "192.168.56.22", "zone=b", 2000, 1 << 30, NULL, &err),
	    b);
	assert_string_equal(b->id, id);
	assert_string_equal(b->address, "192.168.56.22");
	assert_string_equal(nodes_subnet(&ns, b, s2, sizeof(s2)), "10.244.2.0/24");
	close_table(&st, &ns);
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

	open_table(f, &st, &ns);
	n = nodes_register(&ns, &st, "node1", "192.168.56.11", "zone=a", 2000, 1 << 30, NULL, &err);
	snprintf(id1, sizeof(id1), "%s", n->id);
	n = nodes_register(&ns, &st, "node2", "192.168.56.12", "zone=b", 2000, 1 << 30, NULL, &err);
	snprintf(id2, sizeof(id2), "%s", n->id);
	close_table(&st, &ns);

	/* As after a kill -9 and restart: everything comes back from SQLite, down until seen. */
	open_table(f, &st, &ns);
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
	close_table(&st, &ns);
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
		assert_non_null(
		    nodes_register(&ns, &st, name, "10.0.0.1", "", 1000, 1, NULL, &err));
	}
	assert_null(nodes_register(&ns, &st, "n4", "10.0.0.1", "", 1000, 1, NULL, &err));
	assert_string_equal(err.msg, "no free /24 left in the cluster CIDR for node n4");
	assert_null(nodes_find(&ns, "n4"));
	close_table(&st, &ns);
}

static int downs;
static void
count_down(struct node *n, void *arg)
{
	(void)n;
	(void)arg;
	downs++;
}

/* A store and a node table with two ready nodes, a and b, for the expiry tests. */
static void
two_ready_nodes(struct fixture *f, struct store *st, struct nodes *ns, struct node **a,
                struct node **b)
{
	struct shoal_err err;

	open_table(f, st, ns);
	*a = nodes_register(ns, st, "a", "10.0.0.1", "", 1000, 1, NULL, &err);
	*b = nodes_register(ns, st, "b", "10.0.0.2", "", 1000, 1, NULL, &err);
	assert_non_null(*a);
	assert_non_null(*b);
	(*a)->status = (*b)->status = NODE_READY;
}

static void
test_expire(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct node *a, *b;

	two_ready_nodes(f, &st, &ns, &a, &b);
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
	close_table(&st, &ns);
}

/* --max-heartbeats: past that many nodes the interval grows with them, never below the
 * configured one nor above a minute; each node's silence is judged by what it was told,
 * and by the longer of its last two while a shorter one is reaching it. */
static void
test_heartbeat_cap(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	struct node *a, *b;
	char name[16];

	open_table(f, &st, &ns);
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_non_null(
		    nodes_register(&ns, &st, name, "10.0.0.1", "", 1000, 1, NULL, &err));
	}
	assert_int_equal(nodes_heartbeat_ms(&ns, 1000, 0), 1000);  /* no cap */
	assert_int_equal(nodes_heartbeat_ms(&ns, 1000, 10), 1000); /* 10 nodes, 10 a second */
	assert_int_equal(nodes_heartbeat_ms(&ns, 1000, 5), 2000);
	assert_int_equal(nodes_heartbeat_ms(&ns, 1000, 3), 3334);
	assert_int_equal(nodes_heartbeat_ms(&ns, 5000, 5), 5000);
	assert_int_equal(nodes_heartbeat_ms(&ns, 1000, 0), 1000);
	ns.n = 1000000; /* counted, not walked */
	assert_int_equal(nodes_heartbeat_ms(&ns, 1000, 1), NODES_HEARTBEAT_MAX_MS);
	ns.n = 10;

	a = nodes_find(&ns, "n0");
	b = nodes_find(&ns, "n1");
	for (size_t i = 0; i < ns.n; i++) {
		ns.v[i]->status = NODE_READY;
		ns.v[i]->last_seen = 10000;
	}
	nodes_told(a, 2000);
	nodes_told(a, 2000);
	nodes_told(b, 2000);
	nodes_told(b, 1000); /* its next beat was still timed by the 2000 */
	downs = 0;
	/* The others, never told, go by the 3000 ms given. */
	assert_int_equal(nodes_expire(&ns, 13001, 3000, count_down, NULL), 8);
	assert_int_equal(nodes_expire(&ns, 16000, 3000, count_down, NULL), 0);
	assert_int_equal(nodes_expire(&ns, 16001, 3000, count_down, NULL), 2);
	assert_int_equal(a->status, NODE_DOWN);
	assert_int_equal(b->status, NODE_DOWN);
	/* Told the shorter one twice: 3 of it. */
	nodes_told(b, 1000);
	b->status = NODE_READY;
	b->last_seen = 20000;
	assert_int_equal(nodes_expire(&ns, 23001, 3000, count_down, NULL), 1);
	close_table(&st, &ns);
}

/* A restarted scheduler: the nodes it loads get the grace period, not the 3-beat timer,
 * while a node that came back and then went silent is held to the timer again. */
static void
test_expire_restart_grace(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	struct node *a, *b;
	int64_t t0;

	open_table(f, &st, &ns);
	assert_non_null(nodes_register(&ns, &st, "a", "10.0.0.1", "", 1000, 1, NULL, &err));
	assert_non_null(nodes_register(&ns, &st, "b", "10.0.0.2", "", 1000, 1, NULL, &err));
	nodes_free(&ns);
	assert_int_equal(nodes_init(&ns, "10.244.0.0/16", &err), 0);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	/* Longer than an agent's reconnect: 5 silent beats, then a 2 s back-off (+20%). */
	assert_true(ns.restart_grace_ms > 5000 + 2400);
	a = nodes_find(&ns, "a");
	b = nodes_find(&ns, "b");
	assert_int_equal(a->status, NODE_UNKNOWN);
	t0 = a->last_seen;
	b->status = NODE_READY; /* b registered again at t0 + 1 s */
	b->last_seen = t0 + 1000;
	downs = 0;
	/* Past the 3000 ms timer: a, not heard from since the start, is still in its grace. */
	assert_int_equal(nodes_expire(&ns, t0 + 3001, 3000, count_down, NULL), 0);
	assert_int_equal(nodes_expire(&ns, t0 + 4001, 3000, count_down, NULL), 1);
	assert_int_equal(b->status, NODE_DOWN);
	assert_int_equal(nodes_expire(&ns, t0 + ns.restart_grace_ms, 3000, count_down, NULL), 0);
	assert_int_equal(a->status, NODE_UNKNOWN);
	assert_int_equal(nodes_expire(&ns, t0 + ns.restart_grace_ms + 1, 3000, count_down, NULL),
	                 1);
	assert_int_equal(a->status, NODE_DOWN);
	assert_int_equal(downs, 2);
	close_table(&st, &ns);
}

/* The scheduler's own hold-ups (a long pass, a burst of registrations) are not a node's
 * silence: its heartbeat may be sitting unread in our socket buffer. */
static void
test_expire_not_our_stall(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct node *a, *b;

	two_ready_nodes(f, &st, &ns, &a, &b);
	nodes_tick(&ns, 10000, 100);
	nodes_seen(&ns, a, 10000);
	nodes_seen(&ns, b, 10000);
	/* Ticks on time (with a timer's slack): no stall. */
	nodes_tick(&ns, 10100, 100);
	nodes_tick(&ns, 10250, 100);
	assert_int_equal(ns.stalled_ms, 0);
	/* The loop is held up for 5 s: the next tick comes at 15250. */
	nodes_tick(&ns, 15250, 100);
	assert_int_equal(ns.stalled_ms, 4900);
	downs = 0;
	assert_int_equal(nodes_expire(&ns, 15250, 3000, count_down, NULL), 0);
	/* b's heartbeat, read once the loop runs again, counts from there. */
	nodes_seen(&ns, b, 15260);
	/* a's silence is 5350 ms of wall time, 450 ms of it ours to answer for: not yet. */
	assert_int_equal(nodes_expire(&ns, 15350, 3000, count_down, NULL), 0);
	/* Silent for 3000 ms of a running loop: down; b, seen since, stays. */
	assert_int_equal(nodes_expire(&ns, 10000 + 4900 + 3001, 3000, count_down, NULL), 1);
	assert_int_equal(a->status, NODE_DOWN);
	assert_int_equal(b->status, NODE_READY);
	assert_int_equal(nodes_expire(&ns, 15260 + 3001, 3000, count_down, NULL), 1);
	assert_int_equal(b->status, NODE_DOWN);
	assert_int_equal(downs, 2);
	close_table(&st, &ns);
}

/* A node that registers again unchanged (every node after a scheduler restart) writes no row:
 * with the store refusing writes, that Register still succeeds; a changed one does not. */
static void
test_register_unchanged_no_write(void **state)
{
	struct fixture *f = *state;
	uint8_t k[NODEKEY_PK_BYTES];
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	struct node *n;

	randombytes_buf(k, sizeof(k));
	open_table(f, &st, &ns);
	n = nodes_register(&ns, &st, "n1", "10.0.0.1", "zone=a", 1000, 1 << 30, k, &err);
	assert_non_null(n);
	assert_int_equal(sqlite3_exec(st.db, "PRAGMA query_only=1", NULL, NULL, NULL), SQLITE_OK);
	assert_ptr_equal(
	    nodes_register(&ns, &st, "n1", "10.0.0.1", "zone=a", 1000, 1 << 30, k, &err), n);
	assert_null(nodes_register(&ns, &st, "n1", "10.0.0.9", "zone=a", 1000, 1 << 30, k, &err));
	assert_null(nodes_register(&ns, &st, "n1", "10.0.0.1", "zone=b", 1000, 1 << 30, k, &err));
	assert_null(nodes_register(&ns, &st, "n1", "10.0.0.1", "zone=a", 2000, 1 << 30, k, &err));
	/* A record of an older store without a key: binding it is a write. */
	n->has_key = false;
	assert_null(nodes_register(&ns, &st, "n1", "10.0.0.1", "zone=a", 1000, 1 << 30, k, &err));
	close_table(&st, &ns);
}

/* A name comes back only with its key; an impostor's Register changes nothing. */
static void
test_key_binding(void **state)
{
	struct fixture *f = *state;
	uint8_t ka[NODEKEY_PK_BYTES], kb[NODEKEY_PK_BYTES];
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	struct node *n;
	char sub[32];

	randombytes_buf(ka, sizeof(ka));
	randombytes_buf(kb, sizeof(kb));
	open_table(f, &st, &ns);
	assert_int_equal(nodes_check_key(&ns, "node2", ka), NODES_KEY_NEW);
	n = nodes_register(&ns, &st, "node2", "192.168.56.12", "", 2000, 1 << 30, ka, &err);
	assert_non_null(n);
	assert_true(n->has_key);
	assert_int_equal(nodes_check_key(&ns, "node2", ka), NODES_KEY_MATCH);
	assert_int_equal(nodes_check_key(&ns, "node2", kb), NODES_KEY_MISMATCH);
	/* The real node comes back from a new address: fine. */
	assert_ptr_equal(
	    nodes_register(&ns, &st, "node2", "192.168.56.22", "", 2000, 1 << 30, ka, &err), n);
	/* Another key: refused, and nothing of the record moved. */
	assert_null(
	    nodes_register(&ns, &st, "node2", "10.6.6.6", "evil=1", 999000, 1LL << 40, kb, &err));
	assert_non_null(strstr(err.msg, "bound to another key"));
	assert_string_equal(n->address, "192.168.56.22");
	assert_string_equal(n->labels, "");
	assert_int_equal(n->cpu_millis, 2000);
	close_table(&st, &ns);

	/* The binding is durable. */
	open_table(f, &st, &ns);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	n = nodes_find(&ns, "node2");
	assert_non_null(n);
	assert_string_equal(n->address, "192.168.56.22");
	assert_int_equal(nodes_check_key(&ns, "node2", ka), NODES_KEY_MATCH);
	assert_int_equal(nodes_check_key(&ns, "node2", kb), NODES_KEY_MISMATCH);
	assert_string_equal(nodes_subnet(&ns, n, sub, sizeof(sub)), "10.244.1.0/24");
	close_table(&st, &ns);
}

/* A store written before node keys existed: opened (migrated) as is, and each node gets the key
 * it next registers with (trust on first use), then keeps it. */
static void
test_old_store_trust_on_first_use(void **state)
{
	struct fixture *f = *state;
	uint8_t ka[NODEKEY_PK_BYTES], kb[NODEKEY_PK_BYTES];
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	sqlite3 *db;

	randombytes_buf(ka, sizeof(ka));
	randombytes_buf(kb, sizeof(kb));
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db,
	                 "CREATE TABLE nodes (id TEXT PRIMARY KEY, name TEXT NOT NULL "
	                 "UNIQUE, address TEXT NOT NULL, labels TEXT NOT NULL DEFAULT "
	                 "'', availability TEXT NOT NULL DEFAULT 'active', cpu_millis "
	                 "INTEGER NOT NULL DEFAULT 0, memory_bytes INTEGER NOT NULL "
	                 "DEFAULT 0, subnet_index INTEGER NOT NULL UNIQUE, created_ms "
	                 "INTEGER NOT NULL);"
	                 "INSERT INTO nodes VALUES('aaaaaaaaaaaa', 'old1', '10.1.1.1', "
	                 "'', 'active', 1000, 1000, 1, 5);",
	                 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	open_table(f, &st, &ns);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	assert_int_equal(ns.n, 1);
	assert_false(nodes_find(&ns, "old1")->has_key);
	assert_int_equal(nodes_check_key(&ns, "old1", ka), NODES_KEY_UNBOUND);
	assert_non_null(nodes_register(&ns, &st, "old1", "10.1.1.1", "", 1000, 1000, ka, &err));
	assert_null(nodes_register(&ns, &st, "old1", "10.1.1.9", "", 1000, 1000, kb, &err));
	close_table(&st, &ns);

	/* Opening a migrated store again changes nothing; the key stayed. */
	open_table(f, &st, &ns);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	assert_string_equal(nodes_find(&ns, "old1")->id, "aaaaaaaaaaaa");
	assert_int_equal(nodes_check_key(&ns, "old1", ka), NODES_KEY_MATCH);
	assert_int_equal(nodes_check_key(&ns, "old1", kb), NODES_KEY_MISMATCH);
	close_table(&st, &ns);
}

static void
test_join_rate(void **state)
{
	struct nodes_join_limit l = {.rate = 5, .burst = 3, .per_conn = 4, .tokens = 3};
	uint32_t c1 = 0, c2 = 0, c3 = 0;
	struct shoal_err err;

	(void)state;
	/* The burst, then nothing until the bucket refills at 5 a second. */
	assert_int_equal(nodes_join_admit(&l, 1000, &c1, &err), 0);
	assert_int_equal(nodes_join_admit(&l, 1000, &c1, &err), 0);
	assert_int_equal(nodes_join_admit(&l, 1000, &c2, &err), 0);
	assert_int_equal(nodes_join_admit(&l, 1000, &c2, &err), -1);
	assert_non_null(strstr(err.msg, "too many new node names"));
	assert_int_equal(nodes_join_admit(&l, 1100, &c3, &err), -1);
	assert_int_equal(nodes_join_admit(&l, 1200, &c3, &err), 0);
	/* One connection may try 4 unknown names, accepted or not, and no more. */
	assert_int_equal(nodes_join_admit(&l, 1300, &c1, &err), -1); /* global again */
	assert_int_equal(c1, 3);
	assert_int_equal(nodes_join_admit(&l, 9000, &c1, &err), 0);
	assert_int_equal(nodes_join_admit(&l, 9000, &c1, &err), -1);
	assert_non_null(strstr(err.msg, "this connection already tried 4"));
	/* A full bucket holds no more than its burst. */
	assert_int_equal(nodes_join_admit(&l, 1000000, &c3, &err), 0);
	assert_true(l.tokens <= 3.0);
}

static void
test_capacity_bounds(void **state)
{
	struct shoal_err err;

	(void)state;
	assert_int_equal(nodes_check_capacity(0, 0, &err), 0);
	assert_int_equal(nodes_check_capacity(64000, 512LL << 30, &err), 0);
	assert_int_equal(nodes_check_capacity(8192000, 64LL << 40, &err), 0);
	assert_int_equal(nodes_check_capacity(8192001, 1, &err), -1);
	assert_non_null(strstr(err.msg, "beyond any host"));
	assert_int_equal(nodes_check_capacity(1000, (64ULL << 40) + 1, &err), -1);
	assert_int_equal(nodes_check_capacity(UINT64_MAX, UINT64_MAX, &err), -1);
}

/* `shoal node rm`: the name, its subnet and its key go; a fresh key can join as that name. */
static void
test_remove(void **state)
{
	struct fixture *f = *state;
	uint8_t ka[NODEKEY_PK_BYTES], kb[NODEKEY_PK_BYTES];
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	struct node *a, *n;
	char sub[32];

	randombytes_buf(ka, sizeof(ka));
	randombytes_buf(kb, sizeof(kb));
	open_table(f, &st, &ns);
	a = nodes_register(&ns, &st, "a", "10.0.0.1", "", 1000, 1, ka, &err);
	assert_non_null(nodes_register(&ns, &st, "b", "10.0.0.2", "", 1000, 1, NULL, &err));
	assert_non_null(a);
	assert_int_equal(nodes_remove(&ns, &st, a, &err), 0);
	assert_null(nodes_find(&ns, "a"));
	assert_int_equal(ns.n, 1);
	assert_int_equal(nodes_check_key(&ns, "a", kb), NODES_KEY_NEW);
	n = nodes_register(&ns, &st, "a", "10.0.0.3", "", 1000, 1, kb, &err);
	assert_non_null(n);
	/* Its old /24 was free again. */
	assert_string_equal(nodes_subnet(&ns, n, sub, sizeof(sub)), "10.244.1.0/24");
	close_table(&st, &ns);

	open_table(f, &st, &ns);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	assert_int_equal(ns.n, 2);
	assert_int_equal(nodes_check_key(&ns, "a", kb), NODES_KEY_MATCH);
	assert_string_equal(nodes_find(&ns, "a")->address, "10.0.0.3");
	close_table(&st, &ns);
}

/* `shoal node update`: admin labels over the agent's, all or nothing, kept across a restart
 * and across the agent's next Register. */
static void
test_admin_labels(void **state)
{
	struct fixture *f = *state;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	struct node *n;
	char *add1[] = {"tier=gold", "zone=z"}, *rm_zone[] = {"zone"}, *rm_no[] = {"nosuch"};
	char *bad[] = {"ok=1", "bad key=x"}, *noeq[] = {"novalue"}, *rm_tier[] = {"tier"};
	char *m;

	m = nodes_labels_merge("zone=a,disk=ssd", "zone=b,tier=gold");
	assert_string_equal(m, "disk=ssd,zone=b,tier=gold");
	free(m);
	m = nodes_labels_merge("", "");
	assert_string_equal(m, "");
	free(m);

	open_table(f, &st, &ns);
	n = nodes_register(&ns, &st, "node1", "192.168.56.11", "zone=a", 2000, 1 << 30, NULL, &err);
	assert_non_null(n);
	assert_int_equal(nodes_update_labels(&st, n, add1, 2, NULL, 0, &err), 0);
	assert_string_equal(n->labels, "tier=gold,zone=z");
	/* A bad one refuses all: nothing changes. */
	assert_int_equal(nodes_update_labels(&st, n, bad, 2, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "bad key"));
	assert_int_equal(nodes_update_labels(&st, n, noeq, 1, NULL, 0, &err), -1);
	assert_int_equal(nodes_update_labels(&st, n, NULL, 0, rm_no, 1, &err), -1);
	assert_non_null(strstr(err.msg, "no label nosuch"));
	assert_string_equal(n->labels, "tier=gold,zone=z");
	/* The admin's zone goes: the agent's shows again; the agent's own cannot go here. */
	assert_int_equal(nodes_update_labels(&st, n, NULL, 0, rm_zone, 1, &err), 0);
	assert_string_equal(n->labels, "zone=a,tier=gold");
	assert_int_equal(nodes_update_labels(&st, n, NULL, 0, rm_zone, 1, &err), -1);
	assert_non_null(strstr(err.msg, "agent"));
	/* The agent registers again with other labels: the admin's stay over them. */
	n = nodes_register(&ns, &st, "node1", "192.168.56.11", "zone=c", 2000, 1 << 30, NULL, &err);
	assert_string_equal(n->labels, "zone=c,tier=gold");
	close_table(&st, &ns);

	/* A restart: both sets come back from the store. */
	open_table(f, &st, &ns);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	n = nodes_find(&ns, "node1");
	assert_non_null(n);
	assert_string_equal(n->labels, "zone=c,tier=gold");
	assert_string_equal(n->admin_labels, "tier=gold");
	assert_int_equal(nodes_update_labels(&st, n, NULL, 0, rm_tier, 1, &err), 0);
	assert_string_equal(n->labels, "zone=c");
	close_table(&st, &ns);
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
	    cmocka_unit_test_setup_teardown(test_expire_restart_grace, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_binding, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_old_store_trust_on_first_use, setup, teardown),
	    cmocka_unit_test(test_join_rate),
	    cmocka_unit_test(test_capacity_bounds),
	    cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin_labels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expire_not_our_stall, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_register_unchanged_no_write, setup, teardown),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("nodes", tests, NULL, NULL);
}
