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
 * task's history never changes meaning.
 *
 * Its lifecycle has two axes, each one enum: the scheduler's phase (what it wants of the task,
 * changed only through task_phase_set, which refuses a transition its table does not list) and
 * the observed state its agent reports (the wire's TaskState). They are independent: a task
 * draining is still running, a lost one may report it stopped when its node returns.
 */

/* What the wire and the store say the scheduler wants: derived from the phase (task_desired). */
enum task_desired {
	TASK_DESIRED_RUNNING = 0,
	TASK_DESIRED_SHUTDOWN = 1,
};

/*
 * The scheduler's phase of a task (the table of transitions is in task.c and
 * docs/state-machines.md): held -> run; run -> held (not yet placed), lost, draining;
 * held, run, lost, draining -> shutdown. held, run and lost want it running; draining and
 * shutdown want it stopped. Nothing comes back from lost or shutdown.
 */
enum task_phase {
	TASK_PHASE_RUN = 0,  /* wanted running: waiting for a node, or placed on one */
	TASK_PHASE_HELD,     /* stop-first: not placed until its slot's old task stopped */
	TASK_PHASE_LOST,     /* its node went down: no longer a replica, its slot replaces it */
	TASK_PHASE_DRAINING, /* wanted stopped, leaving Endpoints first: still assigned */
	TASK_PHASE_SHUTDOWN, /* wanted stopped: out of its node's Assignments (final) */
};
#define TASK_PHASE_COUNT (TASK_PHASE_SHUTDOWN + 1)

/* The store's bookkeeping of the task's row (reconcile_pass.c), not a phase of the task. */
struct task_row {
	bool queued;        /* on the server's list of rows to write at the end of the pass */
	bool written;       /* the row is in the store (it exists when queued or written) */
	uint32_t queue_idx; /* index on that list while queued */
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
	/* Pointers and 8-byte fields first, then the small ones packed: 216 bytes, one 224-byte
	 * malloc chunk (in declaration order it was 240 with padding, a 256-byte chunk: 32 bytes
	 * more for each of a million tasks). task_test checks the size. */
	char *name;             /* service.slot.shortid */
	struct service *svc;    /* owner */
	uint64_t version;       /* the service spec version it runs */
	struct node *node;      /* NULL while pending */
	int64_t state_since;    /* wall ms of the last state change */
	int64_t created_ms;     /* wall ms */
	int64_t started_at;     /* wall ms the container started, 0 if never */
	int64_t running_since;  /* monotonic ms it was last seen running, 0 if not */
	int64_t finished_mono;  /* monotonic ms it reached a terminal state */
	int64_t not_before;     /* monotonic ms: a restart waits for its back-off */
	uint64_t drain_gen;     /* draining: Endpoints generation without it, stop once all acked */
	int64_t drain_deadline; /* draining: monotonic ms, stop anyway (an agent that never acks) */
	uint64_t cpu_millis;    /* reservation held on node while bound */
	int64_t memory_bytes;
	/* Its text as listed: "" (no check), starting, healthy, unhealthy: why. Only an
	 * unhealthy text (it carries the reason) is allocated; the others are constants
	 * (task_set_health), so a million tasks hold no copy of "". NULL until reported. */
	const char *health;
	char *message;     /* why it is pending, failed, ...; NULL if nothing to say */
	char *last_output; /* its last lines of output once it ended (agent's report), or NULL */
	struct task *node_prev, *node_next; /* node's list of bound tasks */
	char ip[16];
	char id[13]; /* 12 hex, random */
	/* Bit-fields: a fourth bool would have cost 8 bytes of padding (a 240-byte chunk). */
	bool oom_killed : 1; /* how it ended, with exit_code: a fact, not a phase */
	bool bound : 1;      /* node's bookkeeping: on its task list, holding its reservation */
	/* Started by a rolling update and not yet counted by it (healthy, or a failure): a fact
	 * about its origin beside any phase (a held task, a lost one may be the update's). */
	bool from_update : 1;
	/* Listed in an Assignments of its node's current session: the agent holds it, and with
	 * it its version's spec (reconcile_dispatch). Cleared when the node registers. */
	bool sent : 1;
	uint32_t slot;
	enum task_phase phase; /* the scheduler's: only through task_phase_set */
	enum task_state state; /* the agent's */
	int32_t exit_code;
	uint32_t restarts; /* consecutive restarts of the slot before this task */
	enum task_health health_state;
	struct task_row row; /* the store's bookkeeping */
};

/* The id -> task map: every task the scheduler knows, for status reports from agents. */
struct task_map {
	struct task **slots; /* open addressing, NULL = empty, TOMBSTONE = deleted */
	size_t cap, n, used;
};

#endif
