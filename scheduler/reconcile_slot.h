#ifndef SHOAL_SCHEDULER_RECONCILE_SLOT_H
#define SHOAL_SCHEDULER_RECONCILE_SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct service;
struct slot;
struct task;

/*
 * The rules of one replica slot (docs/state-machines.md), as pure functions: given the
 * service, the slot and the time, what is the next thing to do? Nothing here changes
 * anything; reconcile.c applies the action and asks again, so every rule is tested without a
 * loop, a store or a lab (tests/unit/reconcile_slot_test.c).
 *
 * First the replacement (slot->next), at most one action, then the current task (slot->cur):
 * actions marked "then ask again" change the slot and the next question is about the
 * current task; the others end the slot's turn in this pass.
 */
enum reconcile_slot_act {
	RS_NONE = 0, /* nothing to do */
	/* The replacement: */
	RS_NEXT_ENDED,    /* it ended: to history (an update's task: a failure) */
	RS_NEXT_LOST,     /* its node went down: stop it */
	RS_NEXT_TAKEOVER, /* it is healthy: it becomes the current task, the old one stops */
	RS_NEXT_MONITOR,  /* an update's task not healthy within monitor: failure, stop it */
	/* The current task (RS_UNHOLD and RS_UPDATE_*: then ask again): */
	RS_START,              /* no task: start one */
	RS_REPLACE_LOST,       /* its node went down: a new task, same restart count */
	RS_UNHOLD,             /* stop-first: the old task stopped, the new one may be placed */
	RS_UPDATE_ENDED,       /* an update's task ended: a failure of the update */
	RS_UPDATE_DONE,        /* an update's task is healthy: its slot is done */
	RS_UPDATE_MONITOR,     /* an update's task not healthy within monitor: a failure */
	RS_WAIT,               /* wait on time (monitor, back-off): look again at the tick */
	RS_GIVE_UP,            /* it ended and restart.max_attempts is reached: stays ended */
	RS_RESTART,            /* it ended and its back-off passed: a new task (restarts) */
	RS_UPDATE_START_FIRST, /* new version: a new task as replacement, the old one runs on */
	RS_UPDATE_STOP_FIRST,  /* new version: a new task replaces it, held until it stopped */
	RS_DRAIN,              /* its node drains: a replacement elsewhere */
};

struct reconcile_slot_action {
	enum reconcile_slot_act act;
	bool wait;         /* the slot waits on time: the service needs the tick */
	uint32_t restarts; /* RS_RESTART: the new task's count of consecutive restarts */
	bool from_update;  /* RS_UPDATE_START_FIRST, RS_UPDATE_STOP_FIRST: an update's task */
};

#define RECONCILE_BACKOFF_MAX_MS   60000
#define RECONCILE_BACKOFF_RESET_MS 10000 /* a task that ran this long resets the back-off */

/* What to do about sl->next (RS_NONE: nothing). now: monotonic ms; now_wall: wall ms. */
struct reconcile_slot_action reconcile_slot_next(const struct service *svc, const struct slot *sl,
                                                 int64_t now, int64_t now_wall);
/* What to do about sl->cur, once sl->next was seen to. */
struct reconcile_slot_action reconcile_slot_cur(const struct service *svc, const struct slot *sl,
                                                int64_t now, int64_t now_wall);

/* Is an act one after which reconcile_slot_cur is asked again? */
bool reconcile_slot_again(enum reconcile_slot_act act);
const char *reconcile_slot_act_name(enum reconcile_slot_act act);

/* The restart back-off before the restarts'th consecutive restart: delay doubling to 60 s. */
int64_t reconcile_slot_backoff_ms(const struct service *svc, uint32_t restarts);
/* Has an update's task t had its chance to become healthy? */
bool reconcile_slot_monitor_expired(const struct service *svc, const struct task *t, int64_t now,
                                    int64_t now_wall);
/* Is any replaced task of sl still shutting down somewhere we hear from? */
bool reconcile_slot_stopping(const struct slot *sl);
/* Why t counts as a failed update task ("unhealthy: ...", "failed: ...", "exited ..."). */
void reconcile_slot_failure_text(const struct task *t, char *buf, size_t len);

#endif
