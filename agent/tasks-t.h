#ifndef SHOAL_AGENT_TASKS_T_H
#define SHOAL_AGENT_TASKS_T_H

/* The types of tasks.h (a types header: the structs others embed). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "health-t.h"
#include "manifest_spec.h"

struct agent_server;
struct event;

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

#endif
