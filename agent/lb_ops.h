#ifndef SHOAL_AGENT_LB_OPS_H
#define SHOAL_AGENT_LB_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * A load-balancing algorithm behind a small ops table, one per file, as HAProxy's lb_*.c:
 * the proxy ships round-robin (lb_rr.c) alone, but through this table so others (least
 * connections, consistent hash) can be added without touching the proxy.
 *
 * State is per service and lives as long as the service, across backend-set swaps, so a swap
 * does not restart the rotation. next() runs on every worker thread at once: it must be
 * thread-safe and should not take locks.
 */

/* Says whether backend i of the set passed to next() may get a connection (under the rule of
 * the pick: not benched, not the one that just failed, a free slot). */
typedef bool (*lb_usable_fn)(void *ctx, size_t i);

struct lb_ops {
	const char *name;
	/* Allocate the state of one service; aborts on allocation failure. */
	void *(*init)(void);
	/* Index in [0, n) of the backend for the next connection, skipping those usable()
	 * rejects; -1 when none is usable (or n is 0). */
	ssize_t (*next)(void *state, size_t n, lb_usable_fn usable, void *ctx);
	/* Free what init() returned; NULL is a no-op. */
	void (*free)(void *state);
};

#endif
