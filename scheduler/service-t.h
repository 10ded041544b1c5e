#ifndef SHOAL_SCHEDULER_SERVICE_T_H
#define SHOAL_SCHEDULER_SERVICE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest_spec.h"
#include "update-t.h"

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
	/* spec_json and prev_spec_json as Assignments carry them (manifest_spec_json_wire),
	 * each with the text it was made from: made again when that text changes. */
	struct {
		char *from;
		char *json;
	} wire[2];
	/* reconcile_dispatch's: the index of its entry in the Assignments being packed (valid
	 * while pack_stamp is that packing's), so finding it is not a scan of all of them. */
	uint64_t pack_stamp;
	size_t pack_idx;
	bool removed;       /* `shoal rm`: goes once every task has stopped */
	bool dirty;         /* needs a reconcile pass */
	bool waiting;       /* something waits on time (back-off, pending): tick it */
	struct slot *slots; /* sorted by num */
	size_t nslots, capslots;
	char *pending_reason; /* why tasks are pending, NULL when none are */
	/* Manifest digests pinned to versions (the current and the previous one; version 0:
	 * free): the first digest a task of a version reports, so every replica of one version
	 * runs the same bits even if the tag moves (service_pin_set). */
	struct service_pin {
		uint64_t version;
		char digest[80];
	} pins[2];
	/* Evening the spread (reconcile.c): the task of the move in flight, and when a move
	 * may start after failed ones (memory only). */
	char rebalance_task[13];
	uint32_t rebalance_fails;
	int64_t rebalance_after; /* monotonic ms */
	/* Watching the rollout (memory only; reconcile.c): every slot runs healthy at the
	 * current version (the `converged` event went out); the slots that do, plus those of
	 * them already stable (the progress score); when that score last grew (monotonic ms);
	 * whether update.timeout already fired for this rollout. */
	bool converged;
	bool watch_due; /* a task of it became healthy: check at the next tick */
	uint32_t steady;
	int64_t progress_at;
	bool stuck;
};

/* The registry of services, sorted by name. */
struct services {
	struct service **v;
	size_t n, cap;
};

/* What an Apply did to one service. */
struct service_change {
	char *name;         /* owned */
	const char *action; /* "created", "updated", "scaled" or "unchanged" (static) */
};

struct service_changes {
	struct service_change *v; /* in request order */
	size_t n;
};

/* One replica count to set. */
struct service_scale {
	const char *name;
	uint32_t replicas;
};

#endif
