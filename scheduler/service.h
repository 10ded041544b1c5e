#ifndef SHOAL_SCHEDULER_SERVICE_H
#define SHOAL_SCHEDULER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "update.h"

struct task;

/*
 * A replica slot: its current task, the replacement being started for it (drain, update),
 * and the last few finished tasks for `shoal ps -a`.
 */
#define SLOT_HISTORY 3

struct slot {
	uint32_t num;
	bool removed;      /* scaled away: goes once its tasks have stopped */
	struct task *cur;  /* NULL only transiently */
	struct task *next; /* replacement being started; becomes cur once running */
	struct task *history[SLOT_HISTORY]; /* newest first; owned */
	struct task **stopping;             /* replaced tasks still shutting down; owned */
	size_t nstopping;
};

struct service {
	char *name;
	struct service_spec spec; /* desired state */
	char *spec_json;          /* canonical JSON of spec (store and wire) */
	char *prev_spec_json;     /* the spec before the last update, NULL if none */
	uint64_t version;         /* bumped by every changing apply */
	uint64_t prev_version;    /* version of prev_spec_json (a rollback returns to it) */
	struct update update;     /* the rolling update, if any */
	int64_t created_ms, updated_ms;
	bool removed;       /* `shoal rm`: goes once every task has stopped */
	bool dirty;         /* needs a reconcile pass */
	bool waiting;       /* something waits on time (back-off, pending): tick it */
	struct slot *slots; /* sorted by num */
	size_t nslots, capslots;
	char *pending_reason; /* why tasks are pending, NULL when none are */
};

struct service *service_new(const char *name, int64_t now_wall);
void service_free(struct service *s);

/* Set spec (takes its contents) and spec_json from it. */
void service_set_spec(struct service *s, struct service_spec *spec);

/* Find or add slot num (kept sorted). */
struct slot *service_slot(struct service *s, uint32_t num);
struct slot *service_slot_find(struct service *s, uint32_t num);
void service_slot_remove(struct service *s, struct slot *sl);
/* The lowest slot number >= 1 that no slot uses. */
uint32_t service_free_slot(const struct service *s);
/* The same, given that every number below from is in use: scaling up by n costs O(n log n),
 * not O(n^2). */
uint32_t service_free_slot_from(const struct service *s, uint32_t from);

/* Move t into sl's history (newest first), freeing the oldest; returns the evicted task (caller
 * drops it from maps) or NULL. */
struct task *slot_push_history(struct slot *sl, struct task *t);

/* Keep a replaced task until its node reports it stopped. */
void slot_add_stopping(struct slot *sl, struct task *t);
/* Forget t from the stopping list (not freed). */
void slot_del_stopping(struct slot *sl, struct task *t);

/* Tasks of s that count as replicas (live). */
uint32_t service_running(const struct service *s);

/* The registry of services, sorted by name. */
struct services {
	struct service **v;
	size_t n, cap;
};

struct service *services_find(struct services *ss, const char *name);
void services_add(struct services *ss, struct service *s);
void services_del(struct services *ss, struct service *s);
void services_free(struct services *ss);

#endif
