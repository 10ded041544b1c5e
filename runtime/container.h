#ifndef SHOAL_RUNTIME_CONTAINER_H
#define SHOAL_RUNTIME_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "err.h"
#include "netns.h"

struct image;
struct image_store;

/*
 * Containers on one host, under ROOT/containers/<id>/:
 *   state.json  this file's struct container, replaced atomically by whoever changes it
 *               (create, then the container's shim: it is the only writer while it lives)
 *   layers      the image's layer hex digests, one per line: the image store keeps them
 *   upper/ work/ rootfs/   the overlay's dirs (mounted only inside the container)
 *   log, log.1  the container's stdout+stderr, written by the shim, rotated at 10 MiB
 * and ROOT/names/<name> -> <id>, a symlink whose creation reserves the name atomically.
 *
 * A container is owned by its shim (shoal-shim), a daemon detached from whoever started it:
 * any process re-reads state.json and reaches the container by pid, checking the pid's start
 * time against the one recorded so a reused pid is never signalled.
 */

enum container_status {
	CONTAINER_CREATED = 0,
	CONTAINER_RUNNING,
	CONTAINER_EXITED,
};

/* What to run. Every string and array is owned (freed by container_spec_clear). */
struct container_spec {
	char *name;
	char *image;        /* reference as the user gave it */
	char *image_digest; /* "sha256:..." of the manifest, may be NULL */
	size_t nlayers;
	char **layers;        /* unpacked layer dirs, base first */
	char **layer_digests; /* their hex digests, same order */
	char **argv;          /* entrypoint + cmd */
	/* Set (even empty): replaces the image's entrypoint and drops its cmd (docker run
	 * --entrypoint): argv is then this + the cmd given. Read by container_spec_apply_image. */
	char **entrypoint;
	char **env; /* KEY=VALUE */
	char *cwd, *user, *hostname;
	struct cgroup_limits limits;
	enum netns_mode net;
	char *netns_path; /* NETNS_JOIN */
	char *bridge;     /* NETNS_BRIDGE: the bridge to plug into (must exist) */
	char *address;    /* NETNS_BRIDGE: the container's "a.b.c.d/len" */
	char *gateway;    /* NETNS_BRIDGE: its default route, the bridge's address */
	bool autoremove;  /* --rm: the shim removes everything after the exit */
	/* --no-new-privileges: set no_new_privs on the init and every exec (Docker's default:
	 * off, so setuid binaries and file capabilities in the image work). */
	bool no_new_privs;
	/* resolv.conf of the container (NULL-terminated lists, NULL: the host's lines minus
	 * loopback nameservers, which its own network namespace cannot reach). Only used by
	 * container_create, which writes the files; not kept in state.json. */
	char **dns;
	char **dns_search;
	char **dns_options;
};

struct container {
	char *root;  /* ROOT */
	char id[65]; /* 64 hex digits */
	char *dir;   /* ROOT/containers/<id> */
	struct container_spec spec;
	enum container_status status;
	pid_t pid;          /* the container's init, in our pid namespace */
	uint64_t pid_start; /* its start time (clock ticks since boot) */
	pid_t shim_pid;
	uint64_t shim_start;
	int exit_code;   /* -1 when unknown */
	int exit_signal; /* the signal that killed init, 0 if none */
	bool oom_killed;
	int64_t created_ms, started_ms, finished_ms; /* wall clock, 0 when not yet */
	char *cgroup;                                /* "shoal/<id>" relative to the cgroupfs */
	char *cgroup_manager;                        /* "v1" / "v2" */
	char *ip;    /* the container's address (bridge network), NULL without one */
	char *error; /* why the start failed, NULL if it did not */
};

/* Messages from the shim to whoever started it (SOCK_SEQPACKET: one struct per message). */
enum container_msg_type {
	CONTAINER_MSG_STARTED = 1, /* exec happened: pid */
	CONTAINER_MSG_ERROR,       /* start failed: err, exit_code */
	CONTAINER_MSG_EXITED,      /* exit_code, signal, oom */
};
struct container_msg {
	int type;
	int exit_code;
	int signal;
	int oom;
	pid_t pid;
	struct shoal_err err;
};

/* Options for starting: where a foreground caller wants the output, besides the log. */
struct container_attach {
	int stdout_fd; /* -1: none */
	int stderr_fd;
};

#define CONTAINER_LOG_MAX (10 * 1024 * 1024)

const char *container_status_name(enum container_status s);

void container_spec_clear(struct container_spec *s);

/* Fill spec's image part from img: layers, digests, and entrypoint/cmd/env/workdir/user unless
 * the spec already overrides them (cmd replaces the image's cmd, s->entrypoint the image's
 * entrypoint and cmd, env entries replace the image's same keys). cmd/env are borrowed
 * NULL-terminated arrays, may be NULL. */
void container_spec_apply_image(struct container_spec *s, const struct image *img, char **cmd,
                                char **env);

/* Validate and create a container in state "created": reserves the name (EEXIST -> "name in
 * use"), writes state.json and layers. Takes spec's contents (spec is zeroed). */
struct container *container_create(const char *root, struct container_spec *spec,
                                   struct shoal_err *err);

/* Resolve ref in the image store at root, apply it to spec (container_spec_apply_image) and
 * create the container, holding the store's lock from image_get until the container's layers
 * file is written, so rmi cannot delete a layer in between. Takes spec's contents (zeroed,
 * also on failure). cmd/env are borrowed, may be NULL. */
struct container *container_create_from_image(const char *root, struct container_spec *spec,
                                              const char *ref, char **cmd, char **env,
                                              struct shoal_err *err);

/*
 * Start c through a new shim and return once its process has exec'd (0) or failed (-1, with
 * *exit_code 125/126/127 and the reason in err). *sync_fd receives the shim's end of the
 * conversation: read the exit with container_wait_exit, or close it to detach. Safe for a
 * large or threaded caller (the agent): the shim is a fork of this process's shim server
 * (shoal-shim --server, runtime/shim.h, spawned at the first start and again when
 * container_shim_path's binary changes; it exits with us), else shoal-shim exec'd.
 */
int container_start(struct container *c, const struct container_attach *a, int *sync_fd,
                    int *exit_code, struct shoal_err *err);

/*
 * How a shim comes to be: start a process that serves c (runtime/shim.h) over sync, the
 * shim's end of the conversation (borrowed: the launcher gives the shim its own copy), with
 * a's outputs (may be NULL), detached from the caller; return 0 once it is on its way, or -1.
 */
typedef int (*container_shim_launcher)(struct container *c, int sync,
                                       const struct container_attach *a, struct shoal_err *err);

/* container_start with the shim started by launch (shim_fork: a fork of a small caller). */
int container_start_via(struct container *c, const struct container_attach *a,
                        container_shim_launcher launch, int *sync_fd, int *exit_code,
                        struct shoal_err *err);

/*
 * Run argv inside the running container id under root, confined exactly as its init (its
 * cgroups, namespaces, capabilities, no_new_privs if the init has it, seccomp filter, user,
 * rlimits, env, cwd: see spawn_exec), through a `shoal-shim exec` child of ours. stdio[i]
 * (borrowed; -1 or a NULL stdio: /dev/null) become its stdin, stdout, stderr. Returns that child's
 * pid at once: its exit status is the command's (death by a signal as the command died), or 125
 * when the container cannot be entered (126/127: the command cannot be run / does not exist), with
 * the reason on its stderr. SIGTERM ends it with the command and all it started. Safe to call
 * from a threaded process. The caller reaps it.
 */
pid_t container_exec_start(const char *root, const char *id, char *const *argv, const int stdio[3],
                           struct shoal_err *err);
/*
 * The same with a terminal (-t): console >= 0 (borrowed) is a unix stream socket down which
 * the command, once in the container, sends the master of the pseudo-terminal it runs on
 * (SCM_RIGHTS, one byte): it is allocated from the container's own devpts and is the
 * command's controlling terminal, stdin, stdout and stderr. stdio then carries the shim's own
 * messages only. EOF on console without a descriptor: the command never ran (see the status).
 */
pid_t container_exec_start_tty(const char *root, const char *id, char *const *argv,
                               const int stdio[3], int console, struct shoal_err *err);
/* Receive the master sent down console (blocking unless console is non-blocking): the fd
 * (close-on-exec), or -1 with errno (0 at EOF: the command never ran; EAGAIN: not yet). */
int container_exec_recv_tty(int console);

/* Block until the shim reports the exit. Returns the shell-style status (code, or 128+signal). */
int container_wait_exit(int sync_fd, struct container_msg *m, struct shoal_err *err);

/* Load by id, id prefix or name, and refresh the status from the live processes. */
struct container *container_load(const char *root, const char *ref, struct shoal_err *err);

/* Every container under root (sorted by creation time). */
struct container **container_list(const char *root, size_t *n, struct shoal_err *err);
void container_list_free(struct container **v, size_t n);

int container_save(const struct container *c, struct shoal_err *err);
void container_free(struct container *c);

/* Is the container's init alive (pid and start time both match)? */
bool container_alive(const struct container *c);

int container_kill(struct container *c, int sig, struct shoal_err *err);

/* SIGTERM, then SIGKILL after timeout_s; returns once the shim has recorded the exit. */
int container_stop(struct container *c, int timeout_s, struct shoal_err *err);

/* Remove everything: cgroup, state dir, name. A running container needs force (SIGKILL). */
int container_remove(struct container *c, bool force, struct shoal_err *err);

/* Bridge network: delete the host end of the container's veth if it is still there (in the
 * caller's namespace). The pair dies with the container's namespace anyway; this does it now. */
int container_unplug(const struct container *c, struct shoal_err *err);

/* Remove what a stopped container left; the shim calls this for --rm. */
int container_remove_files(struct container *c, struct shoal_err *err);

/*
 * --rm without making the starter wait for a tree walk: the state dir moves out of
 * ROOT/containers to ROOT/trash/<id> (one rename: nothing lists or loads the container any
 * more) and the name is freed. Returns that dir, for container_remove_tree once the starter
 * knows (caller frees); NULL when the container was removed in place instead (the rename
 * failed) or could not be (err). The cgroup is the caller's to have removed already.
 */
char *container_trash(struct container *c, struct shoal_err *err);

/* rm -rf dir without following symlinks or crossing mounts; a missing dir is fine. */
int container_remove_tree(const char *dir, struct shoal_err *err);

/* Keep only what tells an exited container's story (state.json, log, log.1): its overlay and
 * layer list go, so it holds no disk and no image. Refused while it runs. */
int container_strip(struct container *c, struct shoal_err *err);

/* JSON (jansson) of the whole state, as in state.json. Caller json_decref's. */
struct json_t *container_to_json(const struct container *c);
struct container *container_from_json(const char *root, struct json_t *j, struct shoal_err *err);

/* Path of the shoal-shim binary: $SHOAL_SHIM, else next to the running executable. */
char *container_shim_path(void);

#endif
