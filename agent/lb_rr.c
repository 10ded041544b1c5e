/*
 * Round-robin (HAProxy's map_get_server_rr): a cursor that wraps, skips unusable backends and
 * returns none when none is usable.
 *
 * The cursor is one atomic counter per service shared by every worker thread rather than one
 * per thread: per-thread cursors would each start at backend 0, so with N threads the first
 * connections of every thread pile onto the same backend and "30 connections -> 10 each" only
 * holds on average. A compare-and-swap per connection on a shared cache line costs ~20-100 ns,
 * noise next to the ~100 us a proxied connection costs.
 */
#include "lb_rr.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "util.h"

struct lb_rr {
	/* Position of the next pick, unbounded: taken modulo the set size at each pick, so a
	 * set that grows or shrinks keeps rotating from about where it was. Alone on its cache
	 * line: every worker writes it. */
	_Alignas(64) _Atomic uint64_t cursor;
};

static void *
lb_rr_init(void)
{
	void *mem = NULL;
	struct lb_rr *rr;

	/* Allocation failure aborts, as in xmalloc; malloc does not honour the alignment. */
	SHOAL_ASSERT(posix_memalign(&mem, 64, sizeof(*rr)) == 0);
	rr = mem;
	atomic_init(&rr->cursor, 0);
	return rr;
}

static ssize_t
lb_rr_next(void *state, size_t n, lb_usable_fn usable, void *ctx)
{
	struct lb_rr *rr = state;
	uint64_t cur = atomic_load_explicit(&rr->cursor, memory_order_relaxed);

	if (n == 0)
		return -1;
	for (;;) {
		size_t start = (size_t)(cur % n), k;

		for (k = 0; k < n; k++)
			if (usable(ctx, (start + k) % n))
				break;
		if (k == n)
			return -1;
		/* Move past the pick, not just one step: a benched backend's turn goes to the
		 * next usable one once, instead of that one getting two turns in a row. */
		if (atomic_compare_exchange_weak_explicit(
		        &rr->cursor, &cur, cur + k + 1, memory_order_relaxed, memory_order_relaxed))
			return (ssize_t)((start + k) % n);
	}
}

static void
lb_rr_free(void *state)
{
	free(state);
}

const struct lb_ops lb_rr_ops = {
    .name = "roundrobin",
    .init = lb_rr_init,
    .next = lb_rr_next,
    .free = lb_rr_free,
};
