#ifndef SHOAL_AGENT_TASKS_H
#define SHOAL_AGENT_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "manifest_spec.h"
#include "tasks-t.h"

struct agent_server;
struct event;
typedef struct Shoal__Assignments Shoal__Assignments;
typedef struct Shoal__TaskStatus Shoal__TaskStatus;

/*
 * The task supervisor: makes this node run exactly the set the scheduler assigned. Starting
 * (image import, container create and start) and stopping (SIGTERM, grace, SIGKILL, remove)
 * block, so each runs in a worker thread whose completion is an event on the agent's loop;
 * container exits arrive as events too (the shim's sync socket, or a pidfd for containers
 * re-adopted after an agent restart).
 *
 * Each task's record lives in DATA_DIR/tasks/<id>.json, so a restarted agent knows which
 * container is which task and reports them to the scheduler without restarting anything.
 */

int tasks_init(struct tasks *ts, struct agent_server *a, const char *root, const char *image_dir,
               struct shoal_err *err);
/* Where missing images come from besides --image-dir: a registry named in the reference,
 * with credentials from auth_file (NULL: anonymous) and plain HTTP to the insecure
 * HOST:PORTs (NULL-terminated, copied). */
void tasks_set_registry(struct tasks *ts, const char *auth_file, char *const *insecure);
/* Prune images no container uses once they are after_ms old (0: never), checked every
 * minute (or every after_ms when shorter) in a worker. */
void tasks_set_image_gc(struct tasks *ts, int64_t after_ms);
/* Re-adopt the tasks recorded in the data dir (their containers keep running). */
void tasks_load(struct tasks *ts);
void tasks_free(struct tasks *ts);

/* Make the node's set equal to as: start what is missing, stop what is not listed. */
void tasks_apply(struct tasks *ts, const Shoal__Assignments *as);

/* Fill statuses of every task (for Register); returns the count. Caller frees with
 * tasks_status_free. */
size_t tasks_status_all(struct tasks *ts, Shoal__TaskStatus ***out);
void tasks_status_free(Shoal__TaskStatus **v, size_t n);

struct agent_task *tasks_find(struct tasks *ts, const char *id_or_name);

/*
 * `shoal-agent cleanup`: remove every container under root (stopping what runs) and the task
 * records. Images stay. *removed counts the containers removed that had not ended (an ended
 * task's container, kept for its logs, goes uncounted).
 */
int tasks_cleanup(const char *root, size_t *removed, struct shoal_err *err);

/* The image directory name of a reference: shoal/web:1 -> web_1 (images/README.md). */
char *tasks_image_dirname(const char *ref);

#endif
