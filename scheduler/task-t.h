#ifndef SHOAL_SCHEDULER_TASK_T_H
#define SHOAL_SCHEDULER_TASK_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct node;
struct service;

/*
 * A task is one replica slot of one service version (README.md "Concepts", docs/state-machines.md).
 * A slot keeps its number for life; each (re)start of the slot is a new task with a new id, so a
 * task's history never changes meaning. Observed states are the wire's TaskState values.
 */

enum task_desired {
	TASK_DESIRED_RUNNING = 0,
	TASK_DESIRED_SHUTDOWN = 1,
};

/* Same numbering as Shoal__TaskState on the wire. */
enum task_state {
	TASK_STATE_PENDING = 0,
	TASK_STATE_ASSIGNED = 1,
	TASK_STATE_PREPARING = 2,
	TASK_STATE_STARTING = 3,
	TASK_STATE_RUNNING = 4,
	TASK_STATE_STOPPING = 5,
	TASK_STATE_STOPPED = 6,
	TASK_STATE_FAILED = 7,
};

/* A task's health check verdict, as its agent reports it (numbered as the wire's HealthState):
 * decisions read this, never the text. */
enum task_health {
	TASK_HEALTH_UNKNOWN = 0, /* nothing reported yet */
	TASK_HEALTH_NONE = 1,    /* no check configured */
	TASK_HEALTH_STARTING = 2,
	TASK_HEALTH_HEALTHY = 3,
	TASK_HEALTH_UNHEALTHY = 4,
};

struct task {
	char id[13];         /* 12 hex, random */
	char *name;          /* service.slot.shortid */
	struct service *svc; /* owner */
	uint32_t slot;
	uint64_t version;  /* the service spec version it runs */
	struct node *node; /* NULL while pending */
	enum task_desired desired;
	enum task_state state;
	int64_t state_since;   /* wall ms of the last state change */
	int64_t created_ms;    /* wall ms */
	int64_t started_at;    /* wall ms the container started, 0 if never */
	int64_t running_since; /* monotonic ms it was last seen running, 0 if not */
	int64_t finished_mono; /* monotonic ms it reached a terminal state */
	int64_t not_before;    /* monotonic ms: a restart waits for its back-off */
	int32_t exit_code;
	bool oom_killed;
	bool lost;              /* its node went down: it no longer counts as live */
	bool persisted;         /* a row exists in the store, or is queued to be written */
	bool stored;            /* the row is written (persisted, not just queued) */
	bool queued;            /* on the server's list of rows to write at the end of the pass */
	bool bound;             /* on node's task list, holding its reservation */
	bool draining;          /* leaving Endpoints before it stops: still assigned */
	uint64_t drain_gen;     /* Endpoints generation without it: stop once all acked */
	int64_t drain_deadline; /* monotonic ms: stop anyway (an agent that never acks) */
	uint32_t restarts;      /* consecutive restarts of the slot before this task */
	uint32_t queue_idx;     /* index on that list while queued */
	uint64_t cpu_millis;    /* reservation held on node while bound */
	int64_t memory_bytes;
	char ip[16];
	enum task_health health_state;
	char *health;     /* its text as listed: "" (no check), starting, healthy, unhealthy: why */
	bool from_update; /* started by a rolling update, not yet healthy */
	bool hold;        /* stop-first: not placed until its slot's old task stopped */
	char *message;    /* why it is pending, failed, ...; NULL if nothing to say */
	char *last_output; /* its last lines of output once it ended (agent's report), or NULL */
	struct task *node_prev, *node_next; /* node's list of bound tasks */
};

/* The id -> task map: every task the scheduler knows, for status reports from agents. */
struct task_map {
	struct task **slots; /* open addressing, NULL = empty, TOMBSTONE = deleted */
	size_t cap, n, used;
};

#endif
