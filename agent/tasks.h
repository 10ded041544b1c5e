#ifndef SHOAL_AGENT_TASKS_H
#define SHOAL_AGENT_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "health.h"
#include "manifest_spec.h"

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

enum agent_task_state {
	ATASK_PREPARING = 2, /* same numbers as the wire's TaskState */
	ATASK_STARTING = 3,
	ATASK_RUNNING = 4,
	ATASK_STOPPING = 5,
	ATASK_STOPPED = 6,
	ATASK_FAILED = 7,
};

struct agent_task {
	char id[16];
	char *name;
	char *service;
	uint32_t slot;
	uint64_t version;
	char *spec_json;
	struct service_spec spec;
	char container_id[65]; /* "" until created */
	enum agent_task_state state;
	int64_t state_since; /* wall ms */
	int64_t started_at;  /* wall ms */
	int exit_code;
	bool oom_killed;
	char *message;
	char *pin; /* the manifest digest the scheduler pinned the version to, or NULL */
	char image_digest[80]; /* the manifest digest of the image it runs, "" until known */
	char ip[16];
	bool wanted;          /* listed in the latest Assignments */
	bool busy;            /* a worker is starting or stopping it */
	bool removing;        /* being stopped for good; the record goes when done */
	int sync_fd;          /* shim's socket (fresh containers), or -1 */
	int pid_fd;           /* pidfd of the container init (re-adopted ones), or -1 */
	pid_t pid;            /* the container's init, 0 when not running */
	struct health health; /* its health check */
	char *kill_reason;    /* why the agent killed it (unhealthy), for the exit report */
	char *last_output;    /* its last lines of output once it exited, or NULL */
	bool forget;          /* its service is being removed: its container goes whole */
	char health_buf[200]; /* health_text for reports */
	struct event *exit_ev;
	struct event *unhealthy_ev; /* the kill of an unhealthy task, once proxies let it go */
	int exit_polls;             /* on_pidfd's looks at state.json after the init exited */
	struct tasks *owner;
};

struct tasks {
	struct agent_server *agent;
	char *root;          /* runtime root: the agent's data dir */
	char *image_dir;     /* --image-dir: OCI layouts named NAME_TAG/ */
	char *registry_auth; /* --registry-auth: auth.json, or NULL */
	char **insecure;     /* --insecure-registry HOST:PORT, NULL-terminated */
	/* References being pulled (one pull per reference: the others wait for it); workers
	 * touch them under pull_mu, broadcasting pull_cv when one finishes. */
	pthread_mutex_t pull_mu;
	pthread_cond_t pull_cv;
	char **pulling;
	size_t npulling;
	/* Unused images go after this long in the store (0: never); a worker prunes them every
	 * minute. Starts hold image_lock for reading from finding their image until their
	 * container records its layers; the prune holds it for writing. */
	int64_t image_gc_after_ms;
	pthread_rwlock_t image_lock;
	struct event *gc_ev;
	int gc_running; /* a prune worker runs (atomic) */
	struct agent_task **v;
	size_t n, cap;
	int done_pipe[2]; /* workers write finished ops here */
	struct event *done_ev;
	uint64_t generation; /* last Assignments applied */
	size_t workers;      /* ops in flight */
};

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
