#ifndef SHOAL_SCHEDULER_UPDATE_T_H
#define SHOAL_SCHEDULER_UPDATE_T_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Rolling updates (the manifest's `update`): when a service's spec changes, its slots move to
 * the new version `parallelism` at a time (0 = all), with `delay` after each one finishes;
 * start-first starts the new task and stops the old one once the new one is healthy and in
 * Endpoints, stop-first does the reverse. A new task that exits, or is not healthy within
 * `monitor`, is a failure: `pause` stops the rollout and says why, `rollback` returns every
 * slot to the previous spec the same careful way, `continue` carries on.
 *
 * The state is durable (the services row), so a scheduler restarted mid-update resumes it.
 */
enum update_state {
	UPDATE_NONE = 0, /* never updated */
	UPDATE_UPDATING,
	UPDATE_PAUSED,
	UPDATE_ROLLING_BACK,
	UPDATE_ROLLED_BACK,
	UPDATE_COMPLETED,
};

struct update {
	enum update_state state;
	char *message;      /* why it paused or rolled back, NULL if nothing to say */
	int64_t next_start; /* monotonic ms: no new slot starts before (delay) */
	uint32_t budget;    /* slots that may start updating in this pass */
	uint32_t done, total;
	uint32_t reported; /* done as last told in a progress event (memory only) */
};

#endif
