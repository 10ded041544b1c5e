/* Unit tests for scheduler/place: spread, filters, determinism and the pending reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "manifest_spec.h"
#include "scheduler/nodes.h"
#include "scheduler/place.h"
#include "scheduler/service.h"
#include "scheduler/task.h"
#include "util.h"

static struct node *
mknode(struct nodes *ns, const char *name, const char *labels, int64_t cpu, int64_t mem)
{
	struct node *n = xcalloc(1, sizeof(*n));

	snprintf(n->id, sizeof(n->id), "id-%s", name);
	n->name = xstrdup(name);
	n->address = xstrdup("10.0.0.1");
	n->labels = xstrdup(labels);
	n->cpu_millis = cpu;
	n->memory_bytes = mem;
	n->status = NODE_READY;
	ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
	ns->v[ns->n++] = n; /* callers add in name order */
	return n;
}

static void
free_nodes(struct nodes *ns)
{
	for (size_t i = 0; i < ns->n; i++) {
		free(ns->v[i]->name);
		free(ns->v[i]->address);
		free(ns->v[i]->labels);
		free(ns->v[i]);
	}
	free(ns->v);
}

static struct service *
mkservice(uint32_t replicas, uint32_t cpu_millis, int64_t mem)
{
	struct service *s = service_new("web", 0);

	s->spec.replicas = replicas;
	s->spec.resources.cpu_millis = cpu_millis;
	s->spec.resources.memory_bytes = mem;
	return s;
}

/* Place n tasks of svc the way the reconciler does: bind (reserve), then commit. */
static size_t
place_n(struct nodes *ns, struct service *svc, size_t n, struct node **out, char *reason,
        size_t rlen)
{
	struct place_batch *b = place_begin(ns, svc);
	size_t placed = 0;

	for (; placed < n; placed++) {
		struct node *nd = place_next(b);
		if (nd == NULL) {
			snprintf(reason, rlen, "%s", place_reason(b));
			break;
		}
		nd->reserved_cpu_millis += svc->spec.resources.cpu_millis;
		nd->reserved_memory_bytes += svc->spec.resources.memory_bytes;
		place_commit(b, nd);
		out[placed] = nd;
	}
	place_end(b);
	return placed;
}

static void
test_spread_even(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(6, 0, 0);
	struct node *out[6] = {NULL};
	char reason[256] = "";
	int count[3] = {0};

	(void)state;
	mknode(&ns, "node1", "zone=a", 2000, 1 << 30);
	mknode(&ns, "node2", "zone=b", 2000, 1 << 30);
	mknode(&ns, "node3", "zone=a", 2000, 1 << 30);
	assert_int_equal(place_n(&ns, svc, 6, out, reason, sizeof(reason)), 6);
	for (int i = 0; i < 6; i++)
		count[out[i]->name[4] - '1']++;
	assert_int_equal(count[0], 2);
	assert_int_equal(count[1], 2);
	assert_int_equal(count[2], 2);
	/* Equal nodes: ties go by name, so the first three land on node1, node2, node3. */
	assert_string_equal(out[0]->name, "node1");
	assert_string_equal(out[1]->name, "node2");
	assert_string_equal(out[2]->name, "node3");
	service_free(svc);
	free_nodes(&ns);
}

static void
test_most_free_memory_first(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(1, 0, 0);
	struct node *out[1] = {NULL};
	char reason[256];

	(void)state;
	mknode(&ns, "a", "", 2000, 1 << 30);
	mknode(&ns, "b", "", 2000, 2LL << 30);
	assert_int_equal(place_n(&ns, svc, 1, out, reason, sizeof(reason)), 1);
	assert_string_equal(out[0]->name, "b");
	service_free(svc);
	free_nodes(&ns);
}

static void
test_constraints(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(4, 0, 0);
	struct node *out[4] = {NULL};
	char reason[256] = "";
	struct shoal_err err;

	(void)state;
	mknode(&ns, "node1", "zone=a", 2000, 1 << 30);
	mknode(&ns, "node2", "zone=b", 2000, 1 << 30);
	mknode(&ns, "node3", "zone=a", 2000, 1 << 30);
	svc->spec.placement.constraints = xcalloc(2, sizeof(struct manifest_constraint));
	assert_int_equal(manifest_constraint_parse("node.labels.zone == a",
	                                           &svc->spec.placement.constraints[0], &err),
	                 0);
	assert_int_equal(manifest_constraint_parse("node.name != node3",
	                                           &svc->spec.placement.constraints[1], &err),
	                 0);
	svc->spec.placement.n_constraints = 2;
	assert_int_equal(place_n(&ns, svc, 4, out, reason, sizeof(reason)), 4);
	for (int i = 0; i < 4; i++)
		assert_string_equal(out[i]->name, "node1");
	service_free(svc);
	free_nodes(&ns);
}

static void
test_reservations_and_reason(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(5, 1000, 0);
	struct node *out[5] = {NULL};
	char reason[256] = "";

	(void)state;
	mknode(&ns, "node1", "", 2000, 1 << 30);
	mknode(&ns, "node2", "", 1500, 1 << 30);
	mknode(&ns, "node3", "", 2000, 1 << 30)->drain = true;
	/* node1 fits 2, node2 fits 1, node3 is drained: 3 of 5. */
	assert_int_equal(place_n(&ns, svc, 5, out, reason, sizeof(reason)), 3);
	assert_string_equal(reason,
	                    "no node has 1.00 CPUs free (3 nodes checked: 2 lack CPU, 1 drained)");
	service_free(svc);
	free_nodes(&ns);
}

static void
test_memory_reason(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(1, 0, 2LL << 30);
	struct node *out[1] = {NULL};
	char reason[256] = "";

	(void)state;
	mknode(&ns, "node1", "", 2000, 1 << 30);
	mknode(&ns, "node2", "", 2000, 1 << 30)->status = NODE_DOWN;
	assert_int_equal(place_n(&ns, svc, 1, out, reason, sizeof(reason)), 0);
	assert_string_equal(
	    reason, "no node has 2Gi of memory free (2 nodes checked: 1 lack memory, 1 not ready)");
	service_free(svc);
	free_nodes(&ns);
}

static void
test_max_per_node(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(5, 0, 0);
	struct node *out[5] = {NULL};
	char reason[256] = "";

	(void)state;
	svc->spec.placement.max_per_node = 2;
	mknode(&ns, "node1", "", 2000, 1 << 30);
	mknode(&ns, "node2", "", 2000, 1 << 30);
	assert_int_equal(place_n(&ns, svc, 5, out, reason, sizeof(reason)), 4);
	assert_string_equal(reason,
	                    "every eligible node has max_per_node=2 tasks (2 nodes checked: "
	                    "2 at max_per_node)");
	service_free(svc);
	free_nodes(&ns);
}

static void
test_deterministic(void **state)
{
	struct nodes a = {0}, b = {0};
	struct service *s1 = mkservice(50, 100, 10 << 20), *s2 = mkservice(50, 100, 10 << 20);
	struct node *o1[50], *o2[50];
	char reason[256];
	char name[16];

	(void)state;
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "n%02d", i);
		mknode(&a, name, "", 1000 + 100 * (i % 3), (int64_t)(1 + i % 4) << 28);
		mknode(&b, name, "", 1000 + 100 * (i % 3), (int64_t)(1 + i % 4) << 28);
	}
	assert_int_equal(place_n(&a, s1, 50, o1, reason, sizeof(reason)), 50);
	assert_int_equal(place_n(&b, s2, 50, o2, reason, sizeof(reason)), 50);
	for (int i = 0; i < 50; i++)
		assert_string_equal(o1[i]->name, o2[i]->name);
	service_free(s1);
	service_free(s2);
	free_nodes(&a);
	free_nodes(&b);
}

static void
test_scale_10k_nodes(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(100000, 10, 1 << 20);
	struct node **out = xcalloc(100000, sizeof(*out));
	char reason[256], name[16];

	(void)state;
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "n%05d", i);
		mknode(&ns, name, "", 2000, 8LL << 30);
	}
	/* O(log nodes) per task: 100,000 placements over 10,000 nodes finish at once, evenly. */
	assert_int_equal(place_n(&ns, svc, 100000, out, reason, sizeof(reason)), 100000);
	for (size_t i = 0; i < ns.n; i++)
		assert_int_equal(ns.v[i]->scratch, 10);
	free(out);
	service_free(svc);
	free_nodes(&ns);
}

/* One task of svc in slot num, running on n (NULL: pending). */
static struct task *
mktask(struct service *svc, uint32_t num, uint64_t version, struct node *n)
{
	struct task *t = task_new(svc, num, version, 0);

	t->node = n;
	if (n)
		task_set_state(t, TASK_STATE_RUNNING, 0);
	return t;
}

static void
assert_spread(const struct service *svc, const struct nodes *ns)
{
	uint32_t count[8] = {0}, lo = UINT32_MAX, hi = 0;

	for (size_t i = 0; i < svc->nslots; i++) {
		const struct task *t = svc->slots[i].cur;
		for (size_t k = 0; k < ns->n; k++)
			count[k] += t && t->node == ns->v[k];
	}
	for (size_t k = 0; k < ns->n; k++) {
		lo = count[k] < lo ? count[k] : lo;
		hi = count[k] > hi ? count[k] : hi;
	}
	if (hi - lo > 1)
		fail_msg("spread broken: %u/%u/%u", count[0], count[1], count[2]);
}

/*
 * A start-first rolling update, `parallelism` slots at a time, the way the reconciler does it:
 * each slot gets a replacement (next) placed while its old task still runs, then the old one
 * goes. The old tasks of the slots being replaced must not count, or the replicas drift
 * (3 on 3 nodes ended 2/1/0 after an update, 2/0/1 after the rollback).
 */
static void
roll(struct nodes *ns, struct service *svc, uint64_t version, size_t parallelism)
{
	for (size_t first = 0; first < svc->nslots; first += parallelism) {
		size_t end = first + parallelism < svc->nslots ? first + parallelism : svc->nslots;
		struct place_batch *b;

		for (size_t i = first; i < end; i++)
			svc->slots[i].next = mktask(svc, svc->slots[i].num, version, NULL);
		b = place_begin(ns, svc);
		for (size_t i = first; i < end; i++) {
			struct node *n = place_next(b);
			assert_non_null(n);
			place_commit(b, n);
			svc->slots[i].next->node = n;
			task_set_state(svc->slots[i].next, TASK_STATE_RUNNING, 0);
		}
		place_end(b);
		for (size_t i = first; i < end; i++) {
			task_free(svc->slots[i].cur);
			svc->slots[i].cur = svc->slots[i].next;
			svc->slots[i].next = NULL;
		}
		assert_spread(svc, ns);
	}
}

static void
test_spread_holds_across_updates(void **state)
{
	size_t par[] = {1, 2, 3};

	(void)state;
	for (size_t p = 0; p < ARRAY_SIZE(par); p++) {
		struct nodes ns = {0};
		struct service *svc = mkservice(3, 0, 0);
		mknode(&ns, "node1", "", 2000, 1 << 30);
		mknode(&ns, "node2", "", 2000, 1 << 30);
		mknode(&ns, "node3", "", 2000, 1 << 30);
		for (uint32_t i = 0; i < 3; i++)
			service_slot(svc, i + 1)->cur = mktask(svc, i + 1, 1, ns.v[i]);
		/* An update, its rollback, and again: spread holds after every step. */
		for (uint64_t v = 2; v <= 5; v++)
			roll(&ns, svc, v, par[p]);
		/* The slots stayed where they were: nothing moved for nothing. */
		for (uint32_t i = 0; i < 3; i++)
			assert_ptr_equal(service_slot(svc, i + 1)->cur->node, ns.v[i]);
		service_free(svc);
		free_nodes(&ns);
	}
}

/* counts of svc's current tasks on node1..3 as "a/b/c" */
static const char *
counts(const struct service *svc, const struct nodes *ns, char *buf, size_t len)
{
	uint32_t c[3] = {0};

	for (size_t i = 0; i < svc->nslots; i++)
		for (size_t k = 0; k < 3 && k < ns->n; k++)
			c[k] += svc->slots[i].cur && svc->slots[i].cur->node == ns->v[k];
	snprintf(buf, len, "%u/%u/%u", c[0], c[1], c[2]);
	return buf;
}

/* Move slot sl the way the reconciler does: a replacement placed, then it takes over. */
static void
move(struct nodes *ns, struct service *svc, struct slot *sl)
{
	struct place_batch *b;
	struct node *n;

	sl->next = mktask(svc, sl->num, svc->version, NULL);
	b = place_begin(ns, svc);
	n = place_next(b);
	assert_non_null(n);
	place_commit(b, n);
	place_end(b);
	sl->next->node = n;
	task_set_state(sl->next, TASK_STATE_RUNNING, 0);
	task_free(sl->cur);
	sl->cur = sl->next;
	sl->next = NULL;
}

/* A node came back after its tasks were replaced elsewhere: moves even the spread, one at a
 * time, and stop once it holds; constraints and unsteady services move nothing. */
static void
test_rebalance_after_node_return(void **state)
{
	struct nodes ns = {0};
	struct service *svc = mkservice(6, 0, 0);
	struct manifest_constraint c = {.field = MANIFEST_NODE_LABEL, .equal = true};
	struct slot *sl;
	char buf[32];
	int moves = 0;

	(void)state;
	svc->version = 1;
	mknode(&ns, "node1", "zone=a", 2000, 1 << 30);
	mknode(&ns, "node2", "zone=b", 2000, 1 << 30);
	mknode(&ns, "node3", "zone=a", 2000, 1 << 30);
	/* node3 was down: its two replicas went to node1 and node2. */
	for (uint32_t i = 1; i <= 6; i++)
		service_slot(svc, i)->cur = mktask(svc, i, 1, ns.v[(i - 1) % 2]);
	assert_string_equal(counts(svc, &ns, buf, sizeof(buf)), "3/3/0");
	/* Not steady while a slot has a replacement starting. */
	service_slot(svc, 2)->next = mktask(svc, 2, 1, NULL);
	assert_null(place_rebalance(&ns, svc));
	task_free(service_slot(svc, 2)->next);
	service_slot(svc, 2)->next = NULL;
	/* Nor while a task is not running yet. */
	task_set_state(service_slot(svc, 3)->cur, TASK_STATE_STARTING, 0);
	assert_null(place_rebalance(&ns, svc));
	task_set_state(service_slot(svc, 3)->cur, TASK_STATE_RUNNING, 0);
	/* A constraint that keeps it off node3 (zone=b only): nothing to gain, nothing moves. */
	c.label = xstrdup("zone");
	c.value = xstrdup("b");
	svc->spec.placement.constraints = &c;
	svc->spec.placement.n_constraints = 1;
	assert_null(place_rebalance(&ns, svc));
	svc->spec.placement.constraints = NULL;
	svc->spec.placement.n_constraints = 0;
	free(c.label);
	free(c.value);
	/* Steady and free to move: two moves, onto node3, then the spread holds. */
	while ((sl = place_rebalance(&ns, svc)) != NULL && moves < 10) {
		move(&ns, svc, sl);
		moves++;
	}
	assert_int_equal(moves, 2);
	assert_string_equal(counts(svc, &ns, buf, sizeof(buf)), "2/2/2");
	/* A node down counts for nothing: 3 replicas on 2 live nodes, 2/1, is even. */
	ns.v[2]->status = NODE_DOWN;
	for (uint32_t i = 4; i <= 6; i++) {
		task_free(service_slot(svc, i)->cur);
		service_slot(svc, i)->cur = NULL;
		service_slot_remove(svc, service_slot(svc, i));
	}
	assert_null(place_rebalance(&ns, svc));
	service_free(svc);
	free_nodes(&ns);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spread_even),
	    cmocka_unit_test(test_most_free_memory_first),
	    cmocka_unit_test(test_constraints),
	    cmocka_unit_test(test_reservations_and_reason),
	    cmocka_unit_test(test_memory_reason),
	    cmocka_unit_test(test_max_per_node),
	    cmocka_unit_test(test_deterministic),
	    cmocka_unit_test(test_scale_10k_nodes),
	    cmocka_unit_test(test_spread_holds_across_updates),
	    cmocka_unit_test(test_rebalance_after_node_return),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("place", tests, NULL, NULL);
}
