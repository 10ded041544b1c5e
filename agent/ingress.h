#ifndef SHOAL_AGENT_INGRESS_H
#define SHOAL_AGENT_INGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bufferevent;
struct event;
struct event_base;
struct shoal_err;
typedef struct Shoal__Endpoints Shoal__Endpoints;
typedef struct Shoal__IngressFrame Shoal__IngressFrame;
typedef struct Shoal__IngressReport Shoal__IngressReport;
typedef struct Shoal__ProxyHint Shoal__ProxyHint;

/*
 * The node's ingress: the proxy that serves every published port runs in its own process,
 * `shoal-agent ingress` (agent/ingress_host.c), so that it outlives the agent the way a
 * container outlives it through its shim: started detached (double fork, its own session),
 * found again by a restarted agent on the unix socket DATA_DIR/ingress.sock, and fed the
 * scheduler's Endpoints over it. While no agent is connected it keeps serving the last table
 * it was given.
 *
 * Both ways every frame is a u32 big-endian length and one packed IngressFrame; the ingress
 * writes its hello first. The agent pushes an IngressApply per Endpoints (and its last one
 * again on every reconnection), asks for a report (stats, the table generation applied,
 * ports that cannot listen) on every heartbeat, and hears of backend failures.
 *
 * Upgrade: the hello names the ingress binary (size, mtime, inode of its executable). An
 * agent that finds an ingress of another binary starts its own with --take-over; the new
 * process asks the old one to retire, receives its listening sockets over SCM_RIGHTS and its
 * last table, and serves them at once, while the old one drains its established connections
 * and exits. A listener never closes in between, so no client is refused.
 */

/* The frame cap: far above any Endpoints a scheduler sends (one service ~100 bytes). */
#define INGRESS_MAX_FRAME (16u << 20)

/* The socket and pid file of DATA_DIR's ingress (free the strings). */
char *ingress_socket_path(const char *data_dir);
char *ingress_pid_path(const char *data_dir);

/* This binary's identity, as the hello carries it ("SIZE-MTIME_NS-INODE"). */
const char *ingress_version(void);

/* Queue f on bev, framed. */
void ingress_frame_send(struct bufferevent *bev, const Shoal__IngressFrame *f);

/* Take one whole frame from bev's input: 1 and *out (free with
 * shoal__ingress_frame__free_unpacked), 0 while incomplete, -1 on a bad frame. */
int ingress_frame_take(struct bufferevent *bev, Shoal__IngressFrame **out);

/* Blocking twins for a plain fd (the hello, the hand-over): 0 or -1 with *err. */
int ingress_frame_write_fd(int fd, const Shoal__IngressFrame *f, struct shoal_err *err);
Shoal__IngressFrame *ingress_frame_read_fd(int fd, struct shoal_err *err);

/* What the agent does with what its ingress says (borrowed for the call). */
struct ingress_ops {
	void (*on_report)(const Shoal__IngressReport *r, void *arg);
	void (*on_failure)(const Shoal__ProxyHint *h, void *arg);
};

/* The agent's end. */
struct ingress {
	struct event_base *base;
	char *sock_path;
	char *data_dir;
	char **host_args; /* the ingress's options, NULL-terminated (owned) */
	struct ingress_ops ops;
	void *arg;
	struct bufferevent *bev; /* the connection, NULL while none */
	struct event *retry;     /* reconnect (and restart the ingress) after a loss */
	int failures;            /* consecutive failed (re)connections */
	uint8_t *apply;          /* the last IngressApply frame, packed, pushed on connect */
	size_t apply_len;
	Shoal__IngressReport *report; /* the last report (owned), NULL before the first */
	bool report_pending;          /* a request is out and unanswered */
	int64_t report_asked_ms;      /* when that request went (util_now_ms) */
	pid_t pid;                    /* of the ingress, from its hello */
};

/* Options the agent starts its ingress with (what `shoal-agent ingress --help` lists). */
struct ingress_spawn_opts {
	int threads;
	int max_conns;
	int64_t idle_timeout_ms;
	int64_t first_byte_timeout_ms;
};

/* Find the node's ingress, or start one, and connect (a failure is retried on the loop, so
 * this fails only on bad arguments). */
int ingress_init(struct ingress *g, struct event_base *base, const char *data_dir,
                 const struct ingress_spawn_opts *o, const struct ingress_ops *ops, void *arg,
                 struct shoal_err *err);

/* Disconnect; the ingress keeps running. */
void ingress_free(struct ingress *g);

/* Serve ep on address (kept, and pushed again after any reconnection); a report follows. */
void ingress_apply(struct ingress *g, const Shoal__Endpoints *ep, const char *address);

/* Ask for a report; false when none can come (not connected, or the last one is still
 * unanswered): then the caller goes on with ingress_report's last one, whose gauges read 0
 * once the connection is lost or a request has gone unanswered for 3 s. */
bool ingress_request_report(struct ingress *g);

/* The last report, or NULL. */
const Shoal__IngressReport *ingress_report(const struct ingress *g);

/* Stop DATA_DIR's ingress (cleanup): SIGTERM, SIGKILL after 5 s. 1 when one ran, 0 when
 * none did, -1 with *err. */
int ingress_stop(const char *data_dir, struct shoal_err *err);

#endif
