#include "place.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest_spec.h"
#include "nodes.h"
#include "service.h"
#include "task.h"
#include "util.h"

struct place_batch {
	struct nodes *ns;
	struct service *svc;
	struct node **heap; /* min-heap by spread key */
	size_t n;
	/* Filter statistics for the reason. */
	size_t checked, down, drained, constrained, full_per_node, lack_cpu, lack_mem;
	char reason[384]; /* what (128) + detail (160) + the counts: never truncated */
};

static int64_t
free_mem(const struct node *n)
{
	return n->memory_bytes - n->reserved_memory_bytes;
}

static int64_t
free_cpu(const struct node *n)
{
	return n->cpu_millis - n->reserved_cpu_millis;
}

/* The spread order: fewer tasks of this service, more free memory, then name. */
static bool
before(const struct node *a, const struct node *b)
{
	if (a->scratch != b->scratch)
		return a->scratch < b->scratch;
	if (free_mem(a) != free_mem(b))
		return free_mem(a) > free_mem(b);
	return a->name_rank < b->name_rank; /* the order of their names (place_begin) */
}

static void
sift_down(struct place_batch *b, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < b->n && before(b->heap[l], b->heap[m]))
			m = l;
		if (r < b->n && before(b->heap[r], b->heap[m]))
			m = r;
		if (m == i)
			return;
		struct node *t = b->heap[i];
		b->heap[i] = b->heap[m];
		b->heap[m] = t;
		i = m;
	}
}

static void
heap_pop(struct place_batch *b)
{
	b->heap[0] = b->heap[--b->n];
	sift_down(b, 0);
}

bool
place_constraint_ok(const struct node *n, const struct manifest_constraint *c)
{
	const char *have = NULL;
	char buf[256];

	switch (c->field) {
	case MANIFEST_NODE_NAME:
		have = n->name;
		break;
	case MANIFEST_NODE_ID:
		have = n->id;
		break;
	case MANIFEST_NODE_LABEL: {
		/* labels read "k=v,k=v"; find the key exactly. */
		size_t klen = strlen(c->label);
		for (const char *p = n->labels; p && *p;) {
			const char *comma = strchr(p, ',');
			size_t len = comma ? (size_t)(comma - p) : strlen(p);
			if (len > klen && strncmp(p, c->label, klen) == 0 && p[klen] == '=' &&
			    len - klen - 1 < sizeof(buf)) {
				memcpy(buf, p + klen + 1, len - klen - 1);
				buf[len - klen - 1] = '\0';
				have = buf;
				break;
			}
			p = comma ? comma + 1 : p + len;
		}
		break;
	}
	}
	/* A node without the label satisfies "!=" and fails "==", as in Swarm. */
	if (have == NULL)
		return !c->equal;
	return (strcmp(have, c->value) == 0) == c->equal;
}

/* Can n take one more task of svc? Counts why not into b. */
static bool
fits(struct place_batch *b, const struct node *n, bool count)
{
	const struct service_spec *sp = &b->svc->spec;

	if (n->status != NODE_READY) {
		b->down += count;
		return false;
	}
	if (n->drain) {
		b->drained += count;
		return false;
	}
	for (size_t i = 0; i < sp->placement.n_constraints; i++) {
		if (!place_constraint_ok(n, &sp->placement.constraints[i])) {
			b->constrained += count;
			return false;
		}
	}
	if (sp->placement.max_per_node && n->scratch >= sp->placement.max_per_node) {
		b->full_per_node += count;
		return false;
	}
	if (sp->resources.cpu_millis && free_cpu(n) < (int64_t)sp->resources.cpu_millis) {
		b->lack_cpu += count;
		return false;
	}
	if (sp->resources.memory_bytes && free_mem(n) < sp->resources.memory_bytes) {
		b->lack_mem += count;
		return false;
	}
	return true;
}

const struct task *
place_slot_keeps(const struct slot *sl)
{
	const struct task *t;

	if (sl->removed)
		return NULL;
	/* A live replacement supersedes cur: cur stops once it is healthy. */
	t = sl->next && task_live(sl->next) ? sl->next : sl->cur;
	return t && task_live(t) ? t : NULL;
}

struct place_batch *
place_begin(struct nodes *ns, struct service *svc)
{
	struct place_batch *b = xcalloc(1, sizeof(*b));

	b->ns = ns;
	b->svc = svc;
	for (size_t i = 0; i < ns->n; i++) {
		ns->v[i]->scratch = 0;
		ns->v[i]->name_rank = (uint32_t)i;
	}
	/* Count this service's tasks per node, one per slot: the task the slot will keep. A
	 * slot being replaced counts its replacement only (nowhere until it is placed), never
	 * the task on its way out: counting both made a rolling update drift (3 replicas on 3
	 * nodes ended 2/1/0, the new task going where the old one of another slot still ran). */
	for (size_t i = 0; i < svc->nslots; i++) {
		const struct slot *sl = &svc->slots[i];
		const struct task *t = place_slot_keeps(sl);
		if (t && t->node)
			t->node->scratch++;
	}
	b->heap = xmalloc((ns->n ? ns->n : 1) * sizeof(*b->heap));
	for (size_t i = 0; i < ns->n; i++) {
		b->checked++;
		if (fits(b, ns->v[i], true))
			b->heap[b->n++] = ns->v[i];
	}
	for (size_t i = b->n / 2; i-- > 0;)
		sift_down(b, i);
	return b;
}

struct slot *
place_rebalance(struct nodes *ns, struct service *svc)
{
	struct place_batch *b;
	struct node *target, *most = NULL;
	struct slot *pick = NULL;

	/* Only a steady service: every slot's task runs healthy at the current version, and
	 * nothing is pending, moving or updating. */
	for (size_t i = 0; i < svc->nslots; i++) {
		const struct slot *sl = &svc->slots[i];
		if (sl->removed)
			continue;
		if (sl->next || sl->cur == NULL || sl->cur->node == NULL || !task_live(sl->cur) ||
		    !task_healthy(sl->cur) || sl->cur->version != svc->version)
			return NULL;
	}
	b = place_begin(ns, svc);
	target = place_next(b); /* the node one more task would go to: the emptiest that fits */
	for (size_t i = 0; target && i < ns->n; i++) {
		struct node *n = ns->v[i];
		if (n->status == NODE_READY && !n->drain &&
		    (most == NULL || n->scratch > most->scratch))
			most = n;
	}
	/* Move one task (the highest slot there) only if that evens the spread: max - min >= 2. */
	if (most && most->scratch >= target->scratch + 2)
		for (size_t i = svc->nslots; i-- > 0 && pick == NULL;)
			if (!svc->slots[i].removed && svc->slots[i].cur->node == most)
				pick = &svc->slots[i];
	place_end(b);
	return pick;
}

struct node *
place_next(struct place_batch *b)
{
	/* The top may have stopped fitting since it was pushed (its free resources shrank). */
	while (b->n > 0 && !fits(b, b->heap[0], true))
		heap_pop(b);
	return b->n > 0 ? b->heap[0] : NULL;
}

void
place_commit(struct place_batch *b, struct node *n)
{
	SHOAL_ASSERT(b->n > 0 && b->heap[0] == n);
	n->scratch++;
	sift_down(b, 0);
}

const char *
place_reason(struct place_batch *b)
{
	const struct service_spec *sp = &b->svc->spec;
	char what[128], mem[32], detail[160] = "";
	size_t len = 0;
	struct {
		size_t n;
		const char *text;
	} parts[] = {
	    {b->lack_cpu, "lack CPU"},
	    {b->lack_mem, "lack memory"},
	    {b->constrained, "fail constraints"},
	    {b->full_per_node, "at max_per_node"},
	    {b->drained, "drained"},
	    {b->down, "not ready"},
	};

	if (b->checked == 0) {
		snprintf(b->reason, sizeof(b->reason), "no nodes in the cluster");
		return b->reason;
	}
	if (b->lack_cpu)
		snprintf(what, sizeof(what), "no node has %.2f CPUs free",
		         (double)sp->resources.cpu_millis / 1000.0);
	else if (b->lack_mem)
		snprintf(what, sizeof(what), "no node has %s of memory free",
		         util_format_bytes(sp->resources.memory_bytes, mem, sizeof(mem)));
	else if (b->full_per_node)
		snprintf(what, sizeof(what), "every eligible node has max_per_node=%u tasks",
		         sp->placement.max_per_node);
	else if (b->constrained)
		snprintf(what, sizeof(what), "no node satisfies the placement constraints");
	else
		snprintf(what, sizeof(what), "no ready and active node");
	for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
		if (parts[i].n == 0)
			continue;
		len += (size_t)snprintf(detail + len, sizeof(detail) - len, "%s%zu %s",
		                        len ? ", " : "", parts[i].n, parts[i].text);
		if (len >= sizeof(detail))
			break;
	}
	snprintf(b->reason, sizeof(b->reason), "%s (%zu node%s checked: %s)", what, b->checked,
	         b->checked == 1 ? "" : "s", detail);
	return b->reason;
}

void
place_end(struct place_batch *b)
{
	if (b == NULL)
		return;
	free(b->heap);
	free(b);
}
