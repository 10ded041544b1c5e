#ifndef SHOAL_AGENT_TASKS_INTERNAL_H
#define SHOAL_AGENT_TASKS_INTERNAL_H

/*
 * What the task supervisor's files share: tasks.c (the task list, its records and reports,
 * applying Assignments), tasks_op.c (the start and stop jobs run in worker threads),
 * tasks_image.c (finding, importing or pulling a start's image; image GC), tasks_watch.c
 * (a running container's exit and health) and tasks_load.c (re-adoption when the agent
 * starts; cleanup). Not for use outside them: everything else goes through tasks.h.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "manifest_spec.h"
#include "tasks-t.h"

struct image_store;

enum op_kind { OP_START, OP_STOP };

/* One blocking job. The worker reads only the op's own copies, never the task. */
struct op {
	enum op_kind kind;
	struct tasks *ts;
	struct agent_task *t; /* touched on the loop only */
	char *root, *image_dir, *node, *name;
	char *pin;               /* pinned manifest digest, or NULL */
	char *address, *gateway; /* bridge network: "a.b.c.d/len" and the gateway; else NULL */
	struct service_spec spec;
	char container_id[65];
	int64_t grace_ms;
	char *forget_service; /* stop: the service is being removed, keep none of its containers */
	/* results */
	int rc;
	struct shoal_err err;
	int exit_code;
	int sync_fd;
	pid_t pid;
	int64_t started_at;
	char image_digest[80]; /* the manifest digest of the image started */
	int64_t queued_ms;     /* monotonic ms it was queued (start latency for /metrics) */
};

/* What a worker writes to the done pipe: its op finished, or progress to show. One write of
 * at most PIPE_BUF bytes is atomic, so messages never interleave, and a worker's progress
 * always comes before its completion. */
struct op_msg {
	struct op *op;
	int done;
	char text[116]; /* progress: the task's message while it prepares */
};

/* ---- tasks.c ---- */

/* A new task on the list; takes spec (and zeroes it). */
struct agent_task *tasks_add(struct tasks *ts, const char *id, const char *name,
                             const char *service, uint32_t slot, uint64_t version,
                             const char *spec_json, struct service_spec *spec);
/* Send t's state to the scheduler now (if the session is up). */
void tasks_report(struct tasks *ts, struct agent_task *t);
/* Set t's state and message (msg may be NULL), logging and reporting a change. */
void tasks_set_state(struct tasks *ts, struct agent_task *t, enum agent_task_state st,
                     const char *msg);

/* ---- tasks_op.c ---- */

/* From a worker: the op finished (done), or progress text to show while it prepares. */
void tasks_op_post(struct op *op, int done, const char *text);
/* Run a start or stop of t in a worker thread (t is busy until its completion is read).
 * address, gateway: the bridge network of a start (NULL otherwise), copied. */
void tasks_op_run(struct tasks *ts, struct agent_task *t, enum op_kind kind, const char *address,
                  const char *gateway);
void tasks_op_free(struct op *op);

/* ---- tasks_image.c ---- */

/* The reference to run: the spec's image, or its name at the pinned digest. */
char *tasks_image_run_ref(const char *image, const char *pin, struct shoal_err *err);
/*
 * Make sure the image ref (tasks_image_run_ref) is in the store: there already, else
 * imported from --image-dir (the offline path), else pulled from the registry the reference
 * names. With a pinned digest only that manifest will do. Blocks (a worker's job). 0, or -1
 * with op->err.
 */
int tasks_image_ensure(struct op *op, struct image_store *st, const char *ref);

/* ---- tasks_watch.c ---- */

/* Watch a fresh container's exit on its shim's sync socket fd (taken). */
void tasks_watch_sync(struct tasks *ts, struct agent_task *t, int fd);
/* Watch a re-adopted container's init through a pidfd; false when it cannot be opened. */
bool tasks_watch_pid(struct tasks *ts, struct agent_task *t, pid_t pid);
/* Start t's health check; its verdicts are reported, an unhealthy task killed. */
void tasks_watch_health(struct agent_task *t);
/* Stop watching t: its health check, exit events and descriptors. */
void tasks_watch_stop(struct agent_task *t);

#endif
