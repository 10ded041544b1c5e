/*
 * The ingress proxy (see proxy.h for the model). Layout of this file:
 *   objects      px_backend, px_service (refcounted, outlive tables), px_table (immutable)
 *   workers      one thread + event base each; commands from the main thread via an eventfd
 *   connections  accept, connect with retry, the pump, timers, close
 *   main thread  proxy_create/destroy, proxy_set_services, stats
 *
 * No bufferevents: each socket is registered once, edge-triggered, and bytes move from recv()
 * to send() through a per-thread scratch buffer; only what the receiver could not take is
 * copied, and while that is non-empty the sender is not read (docs/facts.md, "The proxy").
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "err.h"
#include "lb_ops.h"
#include "lb_rr.h"
#include "log.h"
#include "proxy_http.h"
#include "proxy_pp.h"
#include "util.h"

#define PX_DEFAULT_IDLE_MS (10 * 60 * 1000)
/* How soon a backend's reset that came with its last bytes is seen when nothing else shows it
 * (px_pump). */
#define PX_UNSURE_MS          50
#define PX_DEFAULT_CONNECT_MS 1000
#define PX_DEFAULT_BENCH_MS   2000
#define PX_DEFAULT_BUF        (64 * 1024)
#define PX_MAX_BUF            (256 * 1024)
/* A connection on which neither side said anything for this long is closed: an idle client
 * holds two fds (client and backend) and nothing else bounds how long. Generous, because some
 * protocols are server-speaks-first (SMTP, MySQL, SSH): only a connection whose backend sent
 * nothing either counts as quiet. */
#define PX_DEFAULT_FIRST_BYTE_MS (30 * 1000)
/* Default max_conns: what the fd limit leaves after a reserve for the rest of the agent
 * (containers' pipes and shims, the scheduler connection, the store), two fds per client,
 * and at most PX_DEFAULT_MAX_CONNS_CAP. */
#define PX_FD_RESERVE_MIN        256
#define PX_DEFAULT_MAX_CONNS_CAP 65536
/* How long a listener pauses when accept() finds the fd table full. */
#define PX_ACCEPT_PAUSE_MS 200
/* How many such pauses an accepted client waits through for an fd of its own (10 s). */
#define PX_FD_WAITS 50
/* Accepts per wakeup: the workers share one accept queue, and a worker that took a whole
 * burst would serve it alone while the others idle. */
#define PX_ACCEPT_BATCH 4
/* A worker hands a new connection to another one that carries this many fewer. */
#define PX_STEER_MARGIN 2
#define PX_STEER_PEERS  4
/* Byte counters of a connection reach the shared stats at close or every this many bytes:
 * an atomic add per recv on a line every thread writes would cost more than the copy. */
#define PX_STATS_FLUSH (64 * 1024)
/* A connect that times out on a backend that completed one this recently is busy (its accept
 * queue is full), not down: it is not benched. */
#define PX_BUSY_WINDOW_MS (10 * 1000)
/* Connects per client: the first and HAProxy's default retries 3. */
#define PX_MAX_ATTEMPTS     4
#define PX_DEFAULT_QUEUE_MS (30 * 1000)

/* ---- objects ------------------------------------------------------------------------ */

struct px_counters {
	_Atomic uint64_t conns;
	_Atomic int64_t active;
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t connect_failures;
	_Atomic uint64_t retries;
	_Atomic uint64_t rejected;
	_Atomic uint64_t busy_timeouts;
	_Atomic uint64_t queued;
	_Atomic uint64_t queue_wait_ms;
	_Atomic uint64_t queue_timeouts;
};

/* One backend of one service. Shared by every table that lists it (same id, ip and port) and
 * by its connections, so stats and the bench survive swaps. */
struct px_backend {
	_Atomic int refs;
	char *id;
	char addr_str[64]; /* "IP:PORT" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	_Atomic int64_t bench_until_ms; /* monotonic; skipped before this time */
	_Atomic int64_t last_ok_ms;     /* monotonic: its last completed connect (0 = never) */
	/* Slots taken: connections connecting to it or open, from every worker, against the
	 * service's max_per_be. Counted even when unlimited. */
	_Atomic int inflight;
	/* A limit discovered, not configured: a connect that timed out while the backend was
	 * answering means its accept queue is full at the connections it had (HAProxy's
	 * maxconn, learned). 0 = none. It grows by one per learned_max connects completed
	 * (learned_ok counts them), so a backend that speeds up gets its slots back; the next
	 * busy timeout sets it again. */
	_Atomic int learned_max;
	_Atomic int learned_ok;
	_Atomic int64_t learned_at_ms; /* the busy timeout that set it: forgotten after
	                                * PX_BUSY_WINDOW_MS without another */
	struct px_counters c;
};

struct px_conn;

/* One published service: its listening socket (a duplicate per worker), rotation state and
 * stats. Shared by tables, worker listeners and connections. */
struct px_service {
	_Atomic int refs;
	char *name;
	char *listen_spec; /* as given (NULL = 0.0.0.0): the identity along with spec_port */
	uint16_t spec_port;
	uint16_t port; /* bound */
	size_t slot;   /* index in px_table.by_slot; stable while the service lives */
	int *fds;      /* [nthreads] listening sockets, handed to the workers */
	const struct lb_ops *lb;
	void *lb_state;
	struct px_counters c;
	_Atomic uint32_t max_per_be; /* 0 = unlimited; set by each proxy_set_services */
	_Atomic int64_t queue_ms;
	/* Clients waiting for a slot, oldest first (px_conn.qprev/qnext). Any worker (and the
	 * main thread) may pop the head, so the list is under qlock; qlen mirrors its length for
	 * lock-free "anyone waiting?" checks. */
	pthread_mutex_t qlock;
	struct px_conn *qhead, *qtail;
	_Atomic int qlen;
	_Atomic int protocol; /* enum proxy_protocol: read at each backend connect */
	_Atomic bool http;    /* new clients go to proxy_http (per request), not the pump */
};

struct px_tsvc {
	struct px_service *svc;
	size_t nbe;
	struct px_backend **be;
};

/* The endpoint table: immutable once published. refs counts the worker threads that may
 * still read it after it was replaced; the last one to pass a quiescent point frees it. */
struct px_table {
	_Atomic int refs;
	size_t nsvc;
	struct px_tsvc *svcs;
	size_t nslots;
	struct px_tsvc **by_slot; /* slot -> entry, NULL for free slots */
};

static void
px_backend_unref(struct px_backend *b)
{
	if (b == NULL || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(b->id);
	free(b);
}

static void
px_service_unref(struct px_service *s)
{
	if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	s->lb->free(s->lb_state);
	pthread_mutex_destroy(&s->qlock);
	free(s->fds);
	free(s->listen_spec);
	free(s->name);
	free(s);
}

static void
px_table_free(struct px_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nsvc; i++) {
		for (size_t j = 0; j < t->svcs[i].nbe; j++)
			px_backend_unref(t->svcs[i].be[j]);
		free(t->svcs[i].be);
		px_service_unref(t->svcs[i].svc);
	}
	free(t->svcs);
	free(t->by_slot);
	free(t);
}

/* The entry for svc in t, or NULL when t no longer lists it (a slot may have been reused). */
static struct px_tsvc *
px_table_find(const struct px_table *t, const struct px_service *svc)
{
	struct px_tsvc *e;

	if (t == NULL || svc->slot >= t->nslots)
		return NULL;
	e = t->by_slot[svc->slot];
	return e != NULL && e->svc == svc ? e : NULL;
}

static int
px_parse_addr(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

static int64_t
px_now_ms(void)
{
	struct timespec ts;

	/* Coarse: a vDSO read of the last tick, good to a few ms, which is all benches and
	 * idle timeouts need. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- workers ------------------------------------------------------------------------ */

enum px_cmd_kind {
	PX_CMD_ADD_LISTENER, /* svc (a ref), fd */
	PX_CMD_DEL_LISTENER, /* svc */
	PX_CMD_RETIRE,       /* table */
	PX_CMD_STOP,
	PX_CMD_CONN, /* svc (a ref), fd: a client connection accepted by another worker */
	PX_CMD_SLOT, /* conn (this worker's, out of its queue), be (a ref and a slot; NULL: none) */
};

struct px_cmd {
	struct px_cmd *next;
	enum px_cmd_kind kind;
	struct px_service *svc;
	int fd;
	struct px_table *table;
	struct px_conn *conn;
	struct px_backend *be;
};

struct px_listener {
	struct px_listener *next;
	struct px_worker *w;
	struct px_service *svc; /* a ref */
	int fd;
	struct event ev;
	struct event pause; /* re-adds ev after an EMFILE pause */
	bool paused;
};

struct px_conn;

struct px_worker {
	struct proxy *p;
	int index;
	pthread_t thread;
	struct event_base *base;
	int cmd_fd; /* eventfd: commands are waiting */
	struct event *cmd_ev;
	pthread_mutex_t cmd_lock;
	struct px_cmd *cmd_head, *cmd_tail;
	struct px_listener *listeners;
	struct px_conn *conns;         /* every open connection, for destroy */
	char *scratch;                 /* buf_size bytes: recv lands here, send leaves from here */
	int64_t now_ms;                /* at the start of the current callback */
	const struct timeval *idle_tv; /* libevent common timeouts: O(1) add/remove */
	const struct timeval *connect_tv;
	/* first_byte_ms, when it comes before idle_ms (else NULL) */
	const struct timeval *first_byte_tv;
	_Atomic int64_t buffered; /* bytes in this worker's connection buffers */
	/* Connections this worker owns, plus those handed to it and not yet taken: what the
	 * accepting worker compares to steer a new connection (see px_steer). */
	_Atomic int load;
	unsigned steer_next; /* which other worker px_steer compares with next */
	bool *kick;          /* [nthreads]: handed a connection in this accept batch */
	bool stopped;        /* its loop is over: commands left are only freed */
};

struct px_failure_msg {
	struct px_failure_msg *next;
	char *service, *backend_id;
	char addr[64];
	int code;
};

struct proxy {
	int nthreads;
	int max_conns;
	int64_t idle_ms, connect_ms, bench_ms, first_byte_ms;
	size_t buf_size;
	const struct lb_ops *lb;
	struct px_worker *workers;
	/* The published table. Written by the main thread only; read by workers. */
	_Atomic(struct px_table *) table;
	_Atomic bool stopping;       /* workers are stopping: no more slot hand-offs */
	_Atomic int nconns;          /* client connections open, for max_conns */
	_Atomic bool limit_logged;   /* the "max connections reached" line was written */
	_Atomic uint64_t limit_hits; /* connections refused since that line */
	proxy_failure_fn on_failure;
	void *failure_arg;
	/* Failures on their way to the main thread, when main_base is set. */
	int fail_fd;
	struct event *fail_ev;
	pthread_mutex_t fail_lock;
	struct px_failure_msg *fail_head;
	/* Listening sockets handed over by a previous ingress process (proxy_adopt_listener),
	 * taken by the first service on their address; and the services of the last
	 * proxy_set_services that could not listen (proxy_bind_errors). Main thread only. */
	int *adopted;
	size_t nadopted;
	struct proxy_bind_error *bind_errs;
	size_t nbind_errs;
};

/* Queue cmd for w; true when the queue was empty, so w needs a px_worker_wake (a non-empty
 * queue has a wake pending: the worker reads the eventfd before it takes the queue). */
static bool
px_worker_enqueue(struct px_worker *w, struct px_cmd *cmd)
{
	bool was_empty;

	cmd->next = NULL;
	pthread_mutex_lock(&w->cmd_lock);
	was_empty = w->cmd_tail == NULL;
	if (w->cmd_tail)
		w->cmd_tail->next = cmd;
	else
		w->cmd_head = cmd;
	w->cmd_tail = cmd;
	pthread_mutex_unlock(&w->cmd_lock);
	return was_empty;
}

static void
px_worker_wake(struct px_worker *w)
{
	uint64_t one = 1;

	/* An eventfd write cannot fail short of a counter overflow. */
	if (write(w->cmd_fd, &one, sizeof(one)) == -1)
		shoal_log(LOG_ERR, "proxy: wake worker %d: %s", w->index, strerror(errno));
}

static void
px_worker_post(struct px_worker *w, struct px_cmd *cmd)
{
	if (px_worker_enqueue(w, cmd))
		px_worker_wake(w);
}

static void px_accept_cb(evutil_socket_t fd, short what, void *arg);
static void px_accept_resume(evutil_socket_t fd, short what, void *arg);
static void px_conn_close(struct px_conn *c);
static void px_conn_new(struct px_worker *w, struct px_service *svc, int fd);
static void px_conn_slot(struct px_conn *c, struct px_backend *b);
static void px_conn_start(struct px_conn *c, struct px_backend *b);
/* Take c out of its service's queue if it is there. True when c must not be closed yet: a
 * slot was already handed to it and the PX_CMD_SLOT naming it is on its way to its worker. */
static bool px_conn_unqueue(struct px_conn *c);
static void px_worker_close_all(struct px_worker *w);

static void
px_worker_cmd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *w = arg;
	struct px_cmd *cmd, *next;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		shoal_log(LOG_ERR, "proxy: worker %d: read eventfd: %s", w->index, strerror(errno));
	pthread_mutex_lock(&w->cmd_lock);
	cmd = w->cmd_head;
	w->cmd_head = w->cmd_tail = NULL;
	pthread_mutex_unlock(&w->cmd_lock);
	/* This callback runs between other callbacks, so no pointer from a table read in an
	 * accept or connect callback is live here: it is this worker's quiescent point. */
	w->now_ms = px_now_ms();
	for (; cmd; cmd = next) {
		next = cmd->next;
		switch (cmd->kind) {
		case PX_CMD_ADD_LISTENER: {
			struct px_listener *l = xcalloc(1, sizeof(*l));

			l->w = w;
			l->svc = cmd->svc;
			l->fd = cmd->fd;
			event_assign(&l->ev, w->base, l->fd, EV_READ | EV_PERSIST, px_accept_cb, l);
			event_assign(&l->pause, w->base, -1, 0, px_accept_resume, l);
			event_add(&l->ev, NULL);
			l->next = w->listeners;
			w->listeners = l;
			break;
		}
		case PX_CMD_DEL_LISTENER:
			for (struct px_listener **lp = &w->listeners; *lp; lp = &(*lp)->next) {
				struct px_listener *l = *lp;

				if (l->svc != cmd->svc)
					continue;
				*lp = l->next;
				event_del(&l->ev);
				event_del(&l->pause);
				close(l->fd);
				px_service_unref(l->svc);
				free(l);
				break;
			}
			break;
		case PX_CMD_RETIRE:
			if (atomic_fetch_sub_explicit(&cmd->table->refs, 1, memory_order_acq_rel) ==
			    1)
				px_table_free(cmd->table);
			break;
		case PX_CMD_STOP:
			event_base_loopbreak(w->base);
			break;
		case PX_CMD_CONN:
			if (w->stopped) { /* handed over while the workers were stopping */
				close(cmd->fd);
				atomic_fetch_sub_explicit(&w->p->nconns, 1, memory_order_relaxed);
				atomic_fetch_sub_explicit(&w->load, 1, memory_order_relaxed);
			} else {
				px_conn_new(w, cmd->svc, cmd->fd);
			}
			px_service_unref(cmd->svc);
			break;
		case PX_CMD_SLOT:
			px_conn_slot(cmd->conn, cmd->be);
			break;
		}
		free(cmd);
	}
}

static void *
px_worker_main(void *arg)
{
	struct px_worker *w = arg;

	event_base_dispatch(w->base);
	w->stopped = true;
	px_worker_close_all(w);
	while (w->listeners) {
		struct px_listener *l = w->listeners;

		w->listeners = l->next;
		event_del(&l->ev);
		event_del(&l->pause);
		close(l->fd);
		px_service_unref(l->svc);
		free(l);
	}
	return NULL;
}

/* Hand a passive failure to the agent: on the main base when there is one. */
static void
px_report_failure(struct proxy *p, const struct px_service *svc, const struct px_backend *b,
                  int code)
{
	struct px_failure_msg *m;
	uint64_t one = 1;

	if (p->on_failure == NULL)
		return;
	if (p->fail_ev == NULL) {
		struct proxy_failure f = {svc->name, b->id, b->addr_str, code};

		p->on_failure(&f, p->failure_arg);
		return;
	}
	m = xcalloc(1, sizeof(*m));
	m->service = xstrdup(svc->name);
	m->backend_id = xstrdup(b->id);
	snprintf(m->addr, sizeof(m->addr), "%s", b->addr_str);
	m->code = code;
	pthread_mutex_lock(&p->fail_lock);
	m->next = p->fail_head;
	p->fail_head = m;
	pthread_mutex_unlock(&p->fail_lock);
	if (write(p->fail_fd, &one, sizeof(one)) == -1)
		shoal_log(LOG_ERR, "proxy: wake main loop: %s", strerror(errno));
}

static void
px_failures_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *p = arg;
	struct px_failure_msg *m, *rev = NULL, *next;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		shoal_log(LOG_ERR, "proxy: read eventfd: %s", strerror(errno));
	pthread_mutex_lock(&p->fail_lock);
	m = p->fail_head;
	p->fail_head = NULL;
	pthread_mutex_unlock(&p->fail_lock);
	for (; m; m = next) { /* oldest first */
		next = m->next;
		m->next = rev;
		rev = m;
	}
	for (m = rev; m; m = next) {
		struct proxy_failure f = {m->service, m->backend_id, m->addr, m->code};

		next = m->next;
		p->on_failure(&f, p->failure_arg);
		free(m->service);
		free(m->backend_id);
		free(m);
	}
}

/* ---- connections -------------------------------------------------------------------- */

/* A connect to b failed: bench it. Only the failure that starts a bench is reported: the
 * connects already in flight to it when it died fail too, and are not news. */
static void
px_backend_failed(struct proxy *p, const struct px_service *svc, struct px_backend *b, int64_t now,
                  int code)
{
	int64_t was;

	atomic_fetch_add_explicit(&b->c.connect_failures, 1, memory_order_relaxed);
	was = atomic_exchange_explicit(&b->bench_until_ms, now + p->bench_ms, memory_order_relaxed);
	if (was > now)
		return;
	shoal_log(LOG_DEBUG, "proxy: %s: backend %s (%s): %s, benched for %lldms", svc->name, b->id,
	          b->addr_str, strerror(code), (long long)p->bench_ms);
	px_report_failure(p, svc, b, code);
}

/* One direction: bytes read from one socket waiting to be written to the other. */
struct px_half {
	char *buf; /* buf_size bytes, allocated the first time the receiver lags */
	uint32_t off, len;
	bool eof;  /* the source sent FIN */
	bool shut; /* FIN passed on: shutdown(SHUT_WR) on the destination */
};

enum { PX_UP = 0, PX_DOWN = 1 }; /* client -> backend, backend -> client */

struct px_conn {
	struct px_conn *prev, *next;
	struct px_worker *w;
	struct px_service *svc; /* a ref */
	struct px_backend *be;  /* a ref, once a connect was started */
	int cfd, bfd;
	struct event cev, bev, tev;
	struct px_half half[2];
	/* Edge-triggered readiness, cleared when a syscall says EAGAIN (or a send is short). */
	bool c_readable, c_writable, b_readable, b_writable;
	/* The peer sent FIN or RST (EV_CLOSED: EPOLLRDHUP): read on to EOF or the error. */
	bool c_hup, b_hup;
	/* A short read from the backend stopped before EAGAIN: a reset that came with its last
	 * bytes (EPOLLHUP: no EV_CLOSED, no new edge) is unseen until a send to it fails or
	 * px_timer_cb reads it (unsure_timer: that timer is armed). */
	bool b_unsure, unsure_timer;
	bool connecting;
	bool connected_early; /* the connect was done when connect() returned (loopback) */
	bool timer_on;
	bool quiet; /* no byte either way yet: first_byte_ms applies, not idle_ms */
	/* Waiting for a slot: in svc's queue (queued) or popped from it with a PX_CMD_SLOT on
	 * its way (handoff). queued and handoff change under svc->qlock only. */
	bool waiting, queued, handoff;
	struct px_conn *qprev, *qnext;
	int64_t wait_start_ms;
	struct px_backend *avoid; /* a ref: the backend whose connect just failed */
	bool slot;                /* holds a slot of be (from the connect to the backend's FIN) */
	size_t attempts;
	int64_t last_ms;
	uint64_t unflushed_in, unflushed_out;
	/* HTTP mode: the client is proxy_http's (cev and the pump are unused). */
	struct proxy_http_conn *http;
	struct proxy_http_config hcfg;
	bool http_over; /* proxy_http is done with it while a slot was on its way */
	/* The client left while it waited (px_client_gone) and a slot was already on its way:
	 * the slot goes to the next one waiting when it comes. */
	bool gone;
	/* No fd was left for its backend socket: it retries after PX_ACCEPT_PAUSE_MS. */
	bool fdwait;
	unsigned fdwaits;
};

static void px_conn_cb(evutil_socket_t fd, short what, void *arg);
static void px_timer_cb(evutil_socket_t fd, short what, void *arg);
static void px_conn_connected(struct px_conn *c);
static void px_conn_run(struct px_conn *c);
static void px_conn_start(struct px_conn *c, struct px_backend *b);
static void px_worker_pause_accepts(struct px_worker *w, int code);

/* A non-blocking connect() says EINPROGRESS even when the handshake finished before it
 * returned, which is what loopback and a local bridge do: the softirq that carries the SYN
 * runs the whole handshake. */
static bool
px_established(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	       ti.tcpi_state == TCP_ESTABLISHED;
}

/* Which backends a pick may return, strictest first: px_pick relaxes the rule until one is
 * free, so a bench or the last failure orders the choice without ever emptying it. */
enum px_pick_rule {
	PX_PICK_FRESH, /* not benched, not the one that just failed */
	PX_PICK_UP,    /* not benched */
	PX_PICK_OTHER, /* benched too (all look down: keep trying), not the one that failed */
	PX_PICK_ANY,
};

struct px_pick_ctx {
	struct px_tsvc *e;
	int64_t now;
	uint32_t max;
	const struct px_backend *avoid;
	enum px_pick_rule rule;
};

/* b's limit at now: the service's max (0 = none) or the one learned from b, the lower. */
static int
px_backend_max(const struct px_backend *b, uint32_t max, int64_t now)
{
	int learned = atomic_load_explicit(&b->learned_max, memory_order_relaxed);

	if (learned > 0 && (max == 0 || learned < (int)max) &&
	    now - atomic_load_explicit(&b->learned_at_ms, memory_order_relaxed) < PX_BUSY_WINDOW_MS)
		return learned;
	return (int)max;
}

static bool
px_backend_usable(void *ctx, size_t i)
{
	struct px_pick_ctx *pc = ctx;
	struct px_backend *b = pc->e->be[i];
	int max = px_backend_max(b, pc->max, pc->now);

	if (max > 0 && atomic_load(&b->inflight) >= max)
		return false;
	if ((pc->rule == PX_PICK_FRESH || pc->rule == PX_PICK_OTHER) && b == pc->avoid)
		return false;
	return pc->rule >= PX_PICK_OTHER ||
	       atomic_load_explicit(&b->bench_until_ms, memory_order_relaxed) <= pc->now;
}

/* Take a slot of b: false when it is at its limit (px_backend_max; 0 = unlimited). */
static bool
px_slot_take(struct px_backend *b, uint32_t svc_max, int64_t now)
{
	int cur = atomic_load(&b->inflight);
	int max = px_backend_max(b, svc_max, now);

	if (max == 0) {
		atomic_fetch_add(&b->inflight, 1);
		return true;
	}
	while (cur < max)
		if (atomic_compare_exchange_weak(&b->inflight, &cur, cur + 1))
			return true;
	return false;
}

/*
 * The next backend of e in rotation with a free slot, the slot taken; NULL when every one is
 * at its limit (or e has none). avoid (may be NULL) is passed over while another will do.
 */
static struct px_backend *
px_pick(struct px_service *svc, struct px_tsvc *e, int64_t now, const struct px_backend *avoid)
{
	struct px_pick_ctx pc = {e, now, atomic_load(&svc->max_per_be), avoid, PX_PICK_FRESH};

	/* A pick that loses its slot to another thread looks again, a bounded number of times:
	 * after that the backends are as good as full. */
	for (int tries = 0; e != NULL && tries < 8; tries++) {
		ssize_t i = -1;

		for (pc.rule = PX_PICK_FRESH; pc.rule <= PX_PICK_ANY && i < 0; pc.rule++)
			i = svc->lb->next(svc->lb_state, e->nbe, px_backend_usable, &pc);
		if (i < 0)
			return NULL;
		if (px_slot_take(e->be[i], pc.max, now))
			return e->be[i];
	}
	return NULL;
}

/*
 * Hand free slots to the clients waiting in svc's queue, oldest first, until the queue is
 * empty or no backend has a free slot. Runs on any thread (a worker inside a callback, or
 * the main thread, which owns the table): the client's own worker is told by a command, so
 * no loop waits on another's connection.
 */
static void
px_queue_kick(struct proxy *p, struct px_service *svc)
{
	struct px_table *t;
	struct px_tsvc *e;

	if (atomic_load(&svc->qlen) == 0 || atomic_load(&p->stopping))
		return;
	t = atomic_load_explicit(&p->table, memory_order_acquire);
	e = px_table_find(t, svc);
	while (atomic_load(&svc->qlen) > 0) {
		/* A service gone from the table serves no one: its clients are told at once
		 * (a slot of no backend: their worker closes them) rather than at the timeout. */
		struct px_backend *b = e ? px_pick(svc, e, px_now_ms(), NULL) : NULL;
		struct px_conn *c;
		struct px_cmd *cmd;

		if (b == NULL && e != NULL)
			return;
		pthread_mutex_lock(&svc->qlock);
		c = svc->qhead;
		if (c) {
			svc->qhead = c->qnext;
			if (svc->qhead)
				svc->qhead->qprev = NULL;
			else
				svc->qtail = NULL;
			c->qnext = c->qprev = NULL;
			c->queued = false;
			c->handoff = true;
			atomic_fetch_sub(&svc->qlen, 1);
		}
		pthread_mutex_unlock(&svc->qlock);
		if (c == NULL) { /* its last client timed out meanwhile */
			if (b)
				atomic_fetch_sub(&b->inflight, 1);
			continue;
		}
		cmd = xcalloc(1, sizeof(*cmd));
		cmd->kind = PX_CMD_SLOT;
		cmd->conn = c;
		cmd->be = b;
		if (b)
			atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
		px_worker_post(c->w, cmd);
	}
}

/* Give back a slot of b, to the first client waiting for one if any. */
static void
px_slot_release(struct proxy *p, struct px_service *svc, struct px_backend *b)
{
	atomic_fetch_sub(&b->inflight, 1);
	px_queue_kick(p, svc);
}

static bool
px_conn_unqueue(struct px_conn *c)
{
	struct px_service *svc = c->svc;
	bool pending;

	if (!c->waiting)
		return false;
	pthread_mutex_lock(&svc->qlock);
	if (c->queued) {
		if (c->qprev)
			c->qprev->qnext = c->qnext;
		else
			svc->qhead = c->qnext;
		if (c->qnext)
			c->qnext->qprev = c->qprev;
		else
			svc->qtail = c->qprev;
		c->qnext = c->qprev = NULL;
		c->queued = false;
		atomic_fetch_sub(&svc->qlen, 1);
	}
	pending = c->handoff;
	pthread_mutex_unlock(&svc->qlock);
	if (!pending)
		c->waiting = false;
	return pending;
}

static void
px_flush_bytes(struct px_conn *c)
{
	if (c->unflushed_in) {
		atomic_fetch_add_explicit(&c->svc->c.bytes_in, c->unflushed_in,
		                          memory_order_relaxed);
		if (c->be)
			atomic_fetch_add_explicit(&c->be->c.bytes_in, c->unflushed_in,
			                          memory_order_relaxed);
		c->unflushed_in = 0;
	}
	if (c->unflushed_out) {
		atomic_fetch_add_explicit(&c->svc->c.bytes_out, c->unflushed_out,
		                          memory_order_relaxed);
		if (c->be)
			atomic_fetch_add_explicit(&c->be->c.bytes_out, c->unflushed_out,
			                          memory_order_relaxed);
		c->unflushed_out = 0;
	}
}

static void
px_conn_close(struct px_conn *c)
{
	struct px_worker *w = c->w;
	struct proxy *p = w->p;

	if (c->http) {
		proxy_http_conn_free(c->http);
	} else {
		event_del(&c->cev);
		close(c->cfd);
	}
	if (c->bfd != -1) {
		event_del(&c->bev);
		close(c->bfd);
	}
	if (c->timer_on)
		event_del(&c->tev);
	px_flush_bytes(c);
	for (int d = 0; d < 2; d++) {
		if (c->half[d].len)
			atomic_fetch_sub_explicit(&w->buffered, c->half[d].len,
			                          memory_order_relaxed);
		free(c->half[d].buf);
	}
	if (c->be) {
		if (!c->connecting)
			atomic_fetch_sub_explicit(&c->be->c.active, 1, memory_order_relaxed);
		if (c->slot)
			px_slot_release(p, c->svc, c->be);
		px_backend_unref(c->be);
	}
	px_backend_unref(c->avoid);
	atomic_fetch_sub_explicit(&c->svc->c.active, 1, memory_order_relaxed);
	px_service_unref(c->svc);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
	atomic_fetch_sub_explicit(&w->load, 1, memory_order_relaxed);
	/* Re-arm the limit line once well below the limit, so a new episode logs again but a
	 * count hovering at the limit does not log every few connections. */
	if (atomic_fetch_sub_explicit(&p->nconns, 1, memory_order_relaxed) - 1 <=
	        p->max_conns - p->max_conns / 10 - 1 &&
	    atomic_load_explicit(&p->limit_logged, memory_order_relaxed) &&
	    atomic_exchange(&p->limit_logged, false))
		shoal_log(LOG_NOTICE,
		          "proxy: below max connections again (max_conns=%d, %llu "
		          "connections refused meanwhile)",
		          p->max_conns, (unsigned long long)atomic_exchange(&p->limit_hits, 0));
}

static void
px_timer_arm(struct px_conn *c, const struct timeval *tv)
{
	event_add(&c->tev, tv);
	c->timer_on = true;
	c->unsure_timer = false; /* px_pump's look is not what fires now */
}

/*
 * A waiting client that sent FIN with no byte left unread (or whose socket has an error)
 * has left: it has nothing to send, and a waiting client has been sent nothing, so a backend
 * would only get an empty connection. Without this it held its place, and the queue gauge,
 * until queue_timeout (30 s by default) after every client was gone, and a freed slot went
 * to it rather than to a client still there (HAProxy's abortonclose). A client that
 * half-closed after its request (bytes unread here) still waits.
 */
static bool
px_client_gone(struct px_conn *c)
{
	char b;
	ssize_t n;

	if (c->http || !c->c_hup)
		return false;
	n = recv(c->cfd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR);
}

/* Every backend is at its limit: wait in the service's queue (FIFO) for a slot, at most
 * queue_ms from the first wait. A client that waited before (a connect that found its backend
 * busy, a slot whose connect failed) goes to the head: it is older than those behind. */
static void
px_conn_enqueue(struct px_conn *c)
{
	bool front = c->wait_start_ms != 0;

	struct px_service *svc = c->svc;
	struct px_worker *w = c->w;
	int64_t left;

	pthread_mutex_lock(&svc->qlock);
	/* Twice in one queue would corrupt the list (its own qnext) and leave qlen stuck above
	 * 0: a client already queued keeps its place, one with a slot on its way waits for it. */
	if (c->queued || c->handoff) {
		pthread_mutex_unlock(&svc->qlock);
		shoal_log(LOG_ERR, "proxy: %s: a client already waiting asked to wait again",
		          svc->name);
		return;
	}
	if (!c->waiting && c->wait_start_ms == 0)
		c->wait_start_ms = w->now_ms;
	c->waiting = true;
	c->queued = true;
	if (front) {
		c->qprev = NULL;
		c->qnext = svc->qhead;
		if (svc->qhead)
			svc->qhead->qprev = c;
		else
			svc->qtail = c;
		svc->qhead = c;
	} else {
		c->qprev = svc->qtail;
		c->qnext = NULL;
		if (svc->qtail)
			svc->qtail->qnext = c;
		else
			svc->qhead = c;
		svc->qtail = c;
	}
	atomic_fetch_add(&svc->qlen, 1);
	pthread_mutex_unlock(&svc->qlock);
	/* + 5 ms: libevent's timers and now_ms read the coarse monotonic clock (a 4 ms tick
	 * here), so a timer at exactly queue_ms closed clients ~3 ms before their due time. */
	left = atomic_load(&svc->queue_ms) - (w->now_ms - c->wait_start_ms) + 5;
	/* Left before it was queued (its FIN came while it connected): out at the next turn. */
	if (left < 1 || px_client_gone(c))
		left = 1;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	if (c->timer_on)
		event_del(&c->tev);
	/* The deadline counts from the loop's cached time, taken when it woke, which under load
	 * is ms ago: a client would be closed that much before its queue_timeout. */
	event_base_update_cache_time(w->base);
	px_timer_arm(c, &tv);
	/* A slot freed between our pick and the append saw no one waiting: look again. */
	px_queue_kick(w->p, svc);
}

/*
 * Start a connect to b (a slot of it taken by the caller) or, when b is NULL, to the next
 * backend with a free slot in the current table, trying the following ones at once while
 * connect() fails synchronously. 0: connecting, or waiting in the queue (c->waiting); -1
 * when no backend is left or the attempts are used up: the caller closes the client.
 */
static int
px_conn_connect(struct px_conn *c, struct px_backend *b)
{
	struct px_worker *w = c->w;
	struct proxy *p = w->p;
	struct px_service *svc = c->svc;
	int one = 1;

	while (c->attempts < PX_MAX_ATTEMPTS) {
		int fd, rc, code;

		if (b == NULL) {
			struct px_table *t = atomic_load_explicit(&p->table, memory_order_acquire);
			struct px_tsvc *e = px_table_find(t, svc);

			if (e == NULL || e->nbe == 0)
				return -1;
			/* Clients already waiting go first (FIFO), new ones line up behind; one
			 * that waited already is as old as the head. */
			if (atomic_load(&svc->qlen) == 0 || c->wait_start_ms != 0)
				b = px_pick(svc, e, w->now_ms, c->avoid);
			/* Every backend at its limit, configured or learned: wait for a slot. */
			if (b == NULL) {
				px_conn_enqueue(c);
				return 0;
			}
		}
		c->attempts++;
		fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			code = errno;
			px_slot_release(p, svc, b);
			c->attempts--;
			/*
			 * The fd table is full. The client is accepted and has done nothing wrong:
			 * closing it would turn a moment of fd pressure into a refused request.
			 * Stop accepting more, and try again once connections have ended.
			 */
			if ((code == EMFILE || code == ENFILE || code == ENOBUFS ||
			     code == ENOMEM) &&
			    c->fdwaits < PX_FD_WAITS) {
				struct timeval tv = {0, PX_ACCEPT_PAUSE_MS * 1000};

				px_worker_pause_accepts(w, code);
				c->fdwait = true;
				c->fdwaits++;
				c->connected_early = false;
				if (c->timer_on)
					event_del(&c->tev);
				px_timer_arm(c, &tv);
				return 0;
			}
			shoal_log(LOG_ERR, "proxy: %s: socket: %s", svc->name, strerror(code));
			return -1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rc = connect(fd, (struct sockaddr *)&b->addr, b->addrlen);
		if (rc == 0 || errno == EINPROGRESS) {
			atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
			c->be = b;
			c->slot = true;
			c->bfd = fd;
			c->connecting = true;
			c->b_readable = c->b_writable = c->b_hup = false;
			c->connected_early = rc == 0 || px_established(fd);
			event_assign(&c->bev, w->base, fd,
			             EV_READ | EV_WRITE | EV_ET | EV_PERSIST | EV_CLOSED,
			             px_conn_cb, c);
			event_add(&c->bev, NULL);
			if (c->timer_on)
				event_del(&c->tev);
			px_timer_arm(c, w->connect_tv);
			return 0;
		}
		/* Refused at once (loopback does that): bench it and go on. */
		code = errno;
		close(fd);
		px_backend_failed(p, svc, b, w->now_ms, code);
		atomic_fetch_add_explicit(&b->c.retries, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&svc->c.retries, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
		px_backend_unref(c->avoid);
		c->avoid = b;
		px_slot_release(p, svc, b);
		b = NULL;
	}
	if (b)
		px_slot_release(p, svc, b);
	return -1;
}

/*
 * The backend connect failed (code). Refused or reset: the backend is down, bench it, and
 * the client spends one of its 1 + 3 attempts on another. Timed out: busy when it answered
 * within PX_BUSY_WINDOW_MS (a full accept queue drops SYNs), which is no reason to bench it:
 * it is full at the connections it holds besides this one (a learned limit). A timeout with
 * no recent answer benches it (it may be dead, or busy since before this proxy saw it). After
 * a timeout the client spends no attempt: it goes to another backend with a free slot or to
 * the head of the queue, and is closed only once queue_timeout has passed since its first
 * connect that timed out. -1: close it.
 */
static int
px_conn_connect_failed(struct px_conn *c, int code)
{
	struct proxy *p = c->w->p;
	struct px_backend *b = c->be;
	int64_t now = c->w->now_ms;
	int64_t ok = atomic_load_explicit(&b->last_ok_ms, memory_order_relaxed);
	bool busy = code == ETIMEDOUT && ok != 0 && now - ok < PX_BUSY_WINDOW_MS;

	if (busy) {
		int others = atomic_load(&b->inflight) - 1;

		atomic_fetch_add_explicit(&b->c.connect_failures, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&b->c.busy_timeouts, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&c->svc->c.busy_timeouts, 1, memory_order_relaxed);
		/* At least 1: a backend with no slot at all would never be tried again. */
		atomic_store_explicit(&b->learned_max, others > 1 ? others : 1,
		                      memory_order_relaxed);
		atomic_store_explicit(&b->learned_ok, 0, memory_order_relaxed);
		atomic_store_explicit(&b->learned_at_ms, now, memory_order_relaxed);
	} else {
		px_backend_failed(p, c->svc, b, now, code);
	}
	if (code == ETIMEDOUT) {
		c->attempts--;
		if (c->wait_start_ms == 0)
			c->wait_start_ms = now - p->connect_ms;
	}
	event_del(&c->bev);
	close(c->bfd);
	c->bfd = -1;
	c->be = NULL;
	c->slot = false;
	c->connecting = false;
	atomic_fetch_add_explicit(&b->c.retries, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->svc->c.retries, 1, memory_order_relaxed);
	px_backend_unref(c->avoid);
	c->avoid = b; /* takes c->be's ref */
	px_slot_release(p, c->svc, b);
	/* + 5 ms as in px_conn_enqueue: now and wait_start_ms are the coarse clock's (a 4 ms
	 * tick), so without it a client was closed here up to 4 ms before its queue_timeout
	 * (overload.bats saw closed_min_ms=999 under load, when connects time out most). */
	if (code == ETIMEDOUT && now - c->wait_start_ms >= atomic_load(&c->svc->queue_ms) + 5) {
		atomic_fetch_add_explicit(&c->svc->c.queue_timeouts, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&c->svc->c.rejected, 1, memory_order_relaxed);
		return -1;
	}
	if (px_conn_connect(c, NULL) == -1) {
		atomic_fetch_add_explicit(&c->svc->c.rejected, 1, memory_order_relaxed);
		return -1;
	}
	return 0;
}

/*
 * Move bytes one way until a side would block. The receiver's lag is kept in half->buf (at
 * most buf_size); while it holds bytes the source is not read: that is the backpressure.
 * -1 on a socket error: the caller closes the whole connection.
 */
static int
px_pump(struct px_conn *c, int dir)
{
	struct px_worker *w = c->w;
	size_t bufsz = w->p->buf_size;
	struct px_half *h = &c->half[dir];
	int src = dir == PX_UP ? c->cfd : c->bfd;
	int dst = dir == PX_UP ? c->bfd : c->cfd;
	bool *src_r = dir == PX_UP ? &c->c_readable : &c->b_readable;
	bool src_hup = dir == PX_UP ? c->c_hup : c->b_hup;
	bool *dst_w = dir == PX_UP ? &c->b_writable : &c->c_writable;
	ssize_t n, s;

	for (;;) {
		if (h->len) {
			if (!*dst_w)
				return 0;
			s = send(dst, h->buf + h->off, h->len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (s == -1) {
				if (errno == EAGAIN) {
					*dst_w = false;
					return 0;
				}
				return errno == EINTR ? 0 : -1;
			}
			atomic_fetch_sub_explicit(&w->buffered, s, memory_order_relaxed);
			if (dir ==
			    PX_UP) /* it took bytes: no reset was there, a later one is an edge */
				c->b_unsure = false;
			h->off += (uint32_t)s;
			h->len -= (uint32_t)s;
			if (h->len) { /* a short send: the socket buffer is full */
				*dst_w = false;
				return 0;
			}
			h->off = 0;
		}
		if (h->eof) {
			if (!h->shut) {
				/* When the other way is done too, close() follows and sends the
				 * FIN: skip the syscall. */
				if (!c->half[!dir].shut)
					shutdown(dst, SHUT_WR);
				h->shut = true;
			}
			return 0;
		}
		if (!*src_r)
			return 0;
		n = recv(src, w->scratch, bufsz, MSG_DONTWAIT);
		if (n == 0) {
			h->eof = true;
			/* The backend closed its side: its work on this connection is over (an
			 * HTTP/1.0 server's child has exited), so its slot goes to the next client
			 * now rather than once this client has read the answer and closed too. */
			if (dir == PX_DOWN && c->slot) {
				c->slot = false;
				/* It answered: alive (a later timeout on it is busy, not down). */
				atomic_store_explicit(&c->be->last_ok_ms, w->now_ms,
				                      memory_order_relaxed);
				px_slot_release(w->p, c->svc, c->be);
			}
			continue;
		}
		if (n == -1) {
			if (errno == EAGAIN) {
				*src_r = false;
				return 0;
			}
			return errno == EINTR ? 0 : -1;
		}
		c->last_ms = w->now_ms;
		c->quiet = false;
		if (dir == PX_UP)
			c->unflushed_in += (uint64_t)n;
		else
			c->unflushed_out += (uint64_t)n;
		/* A short read from the client drained its socket: its next byte brings a new
		 * edge, so the recv() that would say EAGAIN is skipped (one syscall per
		 * keep-alive request). Not once it sent FIN (EV_CLOSED): that comes with no
		 * new edge. A reset comes as EPOLLHUP, which libevent reports as plain
		 * read+write: a client's reset is then seen at the next send to it, but a
		 * backend's that lands with its last bytes would be seen by no one and the
		 * client would wait for the idle timeout (test_late_handshake): after the
		 * backend's short read, the next send to it fails on that reset, and if none
		 * comes within PX_UNSURE_MS px_timer_cb reads the backend once. Not once we shut
		 * our side to it either: its FIN then comes as EPOLLHUP. */
		if ((size_t)n < bufsz && !src_hup && (dir == PX_UP || !c->half[PX_UP].shut)) {
			*src_r = false;
			if (dir == PX_DOWN) {
				c->b_unsure = true;
				if (!c->unsure_timer) {
					struct timeval tv = {0, PX_UNSURE_MS * 1000};

					px_timer_arm(c, &tv);
					c->unsure_timer = true;
				}
			}
		}
		s = 0;
		if (*dst_w) {
			s = send(dst, w->scratch, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (s == -1) {
				if (errno != EAGAIN)
					return -1;
				s = 0;
			}
			if (s > 0 && dir == PX_UP)
				c->b_unsure = false;
		}
		if (s < n) {
			if (h->buf == NULL)
				h->buf = xmalloc(bufsz);
			memcpy(h->buf, w->scratch + s, (size_t)(n - s));
			h->off = 0;
			h->len = (uint32_t)(n - s);
			atomic_fetch_add_explicit(&w->buffered, n - s, memory_order_relaxed);
			*dst_w = false;
			return 0;
		}
	}
}

/* Run both directions; close when both have passed their FIN on, or on an error. */
static void
px_conn_run(struct px_conn *c)
{
	if (px_pump(c, PX_UP) == -1 || px_pump(c, PX_DOWN) == -1 ||
	    (c->half[PX_UP].shut && c->half[PX_DOWN].shut)) {
		px_conn_close(c);
		return;
	}
	if (c->unflushed_in + c->unflushed_out >= PX_STATS_FLUSH)
		px_flush_bytes(c);
}

/* The PROXY header goes first into the upward buffer: the pump sends it before any client
 * byte (the client is not read while the buffer holds bytes). */
static void
px_conn_proxy_header(struct px_conn *c)
{
	int version = atomic_load_explicit(&c->svc->protocol, memory_order_relaxed);
	struct sockaddr_storage src, dst;
	socklen_t slen = sizeof(src), dlen = sizeof(dst);
	struct px_half *h = &c->half[PX_UP];

	if (version == PROXY_PROTOCOL_NONE)
		return;
	if (getpeername(c->cfd, (struct sockaddr *)&src, &slen) == -1 ||
	    getsockname(c->cfd, (struct sockaddr *)&dst, &dlen) == -1)
		src.ss_family = dst.ss_family = AF_UNSPEC;
	if (h->buf == NULL)
		h->buf = xmalloc(c->w->p->buf_size);
	h->off = 0;
	h->len = (uint32_t)proxy_pp_build(version == PROXY_PROTOCOL_V1 ? 1 : 2,
	                                  (struct sockaddr *)&src, (struct sockaddr *)&dst, h->buf);
	atomic_fetch_add_explicit(&c->w->buffered, h->len, memory_order_relaxed);
}

/* A connect to b completed: a learned limit rises by one per learned_max of them (additive
 * increase, as TCP's congestion window per round trip), and the slot it adds goes to the
 * queue's head. */
static void
px_backend_learn_ok(struct proxy *p, struct px_service *svc, struct px_backend *b)
{
	int lm = atomic_load_explicit(&b->learned_max, memory_order_relaxed);

	if (lm == 0 || atomic_fetch_add_explicit(&b->learned_ok, 1, memory_order_relaxed) + 1 < lm)
		return;
	atomic_store_explicit(&b->learned_ok, 0, memory_order_relaxed);
	if (atomic_compare_exchange_strong(&b->learned_max, &lm, lm + 1))
		px_queue_kick(p, svc);
}

static void
px_conn_connected(struct px_conn *c)
{
	px_conn_proxy_header(c);
	c->connecting = false;
	px_backend_learn_ok(c->w->p, c->svc, c->be);
	atomic_store_explicit(&c->be->last_ok_ms, c->w->now_ms, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->be->c.conns, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->be->c.active, 1, memory_order_relaxed);
	c->last_ms = c->w->now_ms;
	px_timer_arm(c, c->quiet && c->w->first_byte_tv ? c->w->first_byte_tv : c->w->idle_tv);
}

/* A waiting client left (px_client_gone): out of the queue and closed, counted neither as a
 * queue timeout nor as rejected; one with a slot on its way is closed when the slot comes,
 * and the slot goes on to the next waiting client. */
static void
px_conn_leave_queue(struct px_conn *c)
{
	shoal_log(LOG_DEBUG, "proxy: %s: a client left after waiting %lldms for a slot",
	          c->svc->name, (long long)(c->w->now_ms - c->wait_start_ms));
	if (px_conn_unqueue(c)) {
		c->gone = true;
		return;
	}
	px_conn_close(c);
}

static void
px_conn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *c = arg;

	c->w->now_ms = px_now_ms();
	if (fd == c->cfd) {
		c->c_readable |= (what & (EV_READ | EV_CLOSED)) != 0;
		c->c_hup |= (what & EV_CLOSED) != 0;
		c->c_writable |= (what & EV_WRITE) != 0;
		if (c->waiting && px_client_gone(c)) {
			px_conn_leave_queue(c);
			return;
		}
		if (c->connecting || c->be == NULL)
			return; /* the client is read once the backend is up: a retry or a wait in
			         * the queue loses nothing */
	} else {
		c->b_readable |= (what & (EV_READ | EV_CLOSED)) != 0;
		c->b_hup |= (what & EV_CLOSED) != 0;
		c->b_writable |= (what & EV_WRITE) != 0;
		if (c->connecting) {
			int soerr = 0;
			socklen_t len = sizeof(soerr);

			/* Writable alone means connected (an error or a reset comes as
			 * EPOLLERR/EPOLLHUP, which libevent reports as read and write): only
			 * then ask which error. */
			if (what != EV_WRITE &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
				soerr = errno;
			if (soerr == 0 && !(what & EV_WRITE))
				return; /* not connected yet */
			if (soerr != 0) {
				if (px_conn_connect_failed(c, soerr) == -1)
					px_conn_close(c);
				return;
			}
			px_conn_connected(c);
		}
	}
	px_conn_run(c);
}

static void
px_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *c = arg;
	struct px_worker *w = c->w;
	int64_t idle, limit;

	(void)fd;
	(void)what;
	w->now_ms = px_now_ms();
	c->timer_on = false;
	if (c->fdwait) {
		c->fdwait = false;
		px_conn_start(c, NULL);
		return;
	}
	if (c->unsure_timer) { /* armed by px_pump: the idle check is lazy, so it follows */
		px_timer_arm(c, w->idle_tv);
		if (c->b_unsure) {
			c->b_unsure = false;
			c->b_readable = true;
			px_conn_run(c);
		}
		return;
	}
	if (c->waiting) {
		if (px_client_gone(c)) {
			px_conn_leave_queue(c);
			return;
		}
		/* Not in the queue any more: a slot is on its way, the command comes next. */
		if (px_conn_unqueue(c))
			return;
		shoal_log(LOG_DEBUG, "proxy: %s: closing a client that waited %lldms for a slot",
		          c->svc->name, (long long)(w->now_ms - c->wait_start_ms));
		atomic_fetch_add_explicit(&c->svc->c.queue_timeouts, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&c->svc->c.rejected, 1, memory_order_relaxed);
		if (c->http) { /* the request gets a 503; it may close the connection */
			c->waiting = false;
			proxy_http_conn_slot(c->http, NULL);
			return;
		}
		px_conn_close(c);
		return;
	}
	if (c->connecting) {
		if (px_conn_connect_failed(c, ETIMEDOUT) == -1)
			px_conn_close(c);
		return;
	}
	px_flush_bytes(c);
	/* Lazy timer: I/O only stamps last_ms; the timer re-arms for what is left instead of
	 * being pushed back on every read. */
	idle = w->now_ms - c->last_ms;
	limit =
	    c->quiet && w->p->first_byte_ms < w->p->idle_ms ? w->p->first_byte_ms : w->p->idle_ms;
	if (idle >= limit) {
		shoal_log(LOG_DEBUG, "proxy: %s: closing a connection %s for %lldms", c->svc->name,
		          c->quiet ? "silent both ways" : "idle", (long long)idle);
		px_conn_close(c);
		return;
	}
	struct timeval tv = {(limit - idle) / 1000, ((limit - idle) % 1000) * 1000};
	px_timer_arm(c, &tv);
}

/* Admission: false (fd closed, counted) when max_conns is reached. */
static bool
px_admit(struct proxy *p, struct px_service *svc, int fd)
{
	if (p->max_conns > 0 &&
	    atomic_fetch_add_explicit(&p->nconns, 1, memory_order_relaxed) >= p->max_conns) {
		atomic_fetch_sub_explicit(&p->nconns, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&svc->c.rejected, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->limit_hits, 1, memory_order_relaxed);
		if (!atomic_exchange(&p->limit_logged, true))
			shoal_log(LOG_WARNING,
			          "proxy: max connections reached (max_conns=%d): closing new "
			          "connections until some end",
			          p->max_conns);
		close(fd);
		return false;
	}
	if (p->max_conns <= 0)
		atomic_fetch_add_explicit(&p->nconns, 1, memory_order_relaxed);
	return true;
}

/* ---- HTTP mode: proxy_http's view of backends (proxy_http.h) ---- */

static void *
px_http_pick(void *owner, const void *avoid)
{
	struct px_conn *c = owner;
	struct px_table *t = atomic_load_explicit(&c->w->p->table, memory_order_acquire);
	struct px_tsvc *e = px_table_find(t, c->svc);
	struct px_backend *b;

	/* No queue in this mode: a request that finds every backend at max_conns_per_replica
	 * gets a 503 at once. */
	if (e == NULL || e->nbe == 0)
		return NULL;
	b = px_pick(c->svc, e, px_now_ms(), avoid);
	if (b)
		atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

static bool
px_http_wait(void *owner)
{
	struct px_conn *c = owner;
	struct px_table *t = atomic_load_explicit(&c->w->p->table, memory_order_acquire);
	struct px_tsvc *e = px_table_find(t, c->svc);

	if (e == NULL || e->nbe == 0 || atomic_load(&c->svc->max_per_be) == 0)
		return false;
	c->w->now_ms = px_now_ms();
	c->wait_start_ms = 0; /* each request waits at most queue_timeout */
	px_conn_enqueue(c);
	return true;
}

static void
px_http_release(void *owner, void *be)
{
	struct px_conn *c = owner;

	px_slot_release(c->w->p, c->svc, be);
	px_backend_unref(be);
}

static void
px_http_ref(void *be)
{
	atomic_fetch_add_explicit(&((struct px_backend *)be)->refs, 1, memory_order_relaxed);
}

static void
px_http_unref(void *be)
{
	px_backend_unref(be);
}

static const struct sockaddr *
px_http_addr(void *be, socklen_t *len)
{
	struct px_backend *b = be;

	*len = b->addrlen;
	return (const struct sockaddr *)&b->addr;
}

static void
px_http_failed(void *owner, void *be, int code)
{
	struct px_conn *c = owner;
	struct px_backend *b = be;

	px_backend_failed(c->w->p, c->svc, b, px_now_ms(), code);
	atomic_fetch_add_explicit(&b->c.retries, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->svc->c.retries, 1, memory_order_relaxed);
}

static void
px_http_connected(void *owner, void *be)
{
	struct px_backend *b = be;

	(void)owner;
	atomic_store_explicit(&b->last_ok_ms, px_now_ms(), memory_order_relaxed);
	atomic_fetch_add_explicit(&b->c.conns, 1, memory_order_relaxed);
}

static void
px_http_bytes(void *owner, void *be, uint64_t in, uint64_t out)
{
	struct px_conn *c = owner;
	struct px_backend *b = be;

	atomic_fetch_add_explicit(&c->svc->c.bytes_in, in, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->svc->c.bytes_out, out, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->c.bytes_in, in, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->c.bytes_out, out, memory_order_relaxed);
}

static void
px_http_done(void *owner)
{
	struct px_conn *c = owner;

	/* Out of the queue first; a slot already on its way closes it when it comes. */
	if (px_conn_unqueue(c)) {
		c->http_over = true;
		return;
	}
	px_conn_close(c);
}

static const struct proxy_http_ops px_http_ops = {
    .pick = px_http_pick,
    .wait = px_http_wait,
    .release = px_http_release,
    .ref = px_http_ref,
    .unref = px_http_unref,
    .addr = px_http_addr,
    .failed = px_http_failed,
    .connected = px_http_connected,
    .bytes = px_http_bytes,
    .done = px_http_done,
};

/* An admitted client connection becomes w's (w->load already counts it). */
static void
px_conn_new(struct px_worker *w, struct px_service *svc, int fd)
{
	struct px_conn *c;

	/* TCP_NODELAY comes from the listener: Linux clones it into accepted sockets. */
	c = xcalloc(1, sizeof(*c));
	c->w = w;
	c->svc = svc;
	atomic_fetch_add_explicit(&svc->refs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&svc->c.conns, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&svc->c.active, 1, memory_order_relaxed);
	c->cfd = fd;
	c->bfd = -1;
	c->quiet = true;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	event_assign(&c->tev, w->base, -1, 0, px_timer_cb, c);
	if (atomic_load_explicit(&svc->http, memory_order_relaxed)) {
		c->hcfg.idle_ms = w->p->idle_ms;
		c->hcfg.connect_ms = w->p->connect_ms;
		c->hcfg.first_byte_ms = w->p->first_byte_ms;
		c->hcfg.protocol = atomic_load_explicit(&svc->protocol, memory_order_relaxed);
		c->http = proxy_http_conn_new(w->base, fd, &c->hcfg, &px_http_ops, c);
		return;
	}
	event_assign(&c->cev, w->base, fd, EV_READ | EV_WRITE | EV_ET | EV_PERSIST | EV_CLOSED,
	             px_conn_cb, c);
	event_add(&c->cev, NULL);
	px_conn_start(c, NULL);
}

/*
 * Connect c to b (a slot taken) or the next free backend, or queue it. Once connected at
 * once, pass the client's first bytes on now rather than a loop turn later, when the
 * backend's EPOLLOUT comes round (a turn is most of a request's time in the proxy under
 * load). Both sockets are fresh, so writable; the client's bytes are usually there (its
 * request follows the handshake), and a recv says EAGAIN if not. The edge-triggered events
 * still come and find nothing to do.
 */
static void
px_conn_start(struct px_conn *c, struct px_backend *b)
{
	if (px_conn_connect(c, b) == -1) {
		atomic_fetch_add_explicit(&c->svc->c.rejected, 1, memory_order_relaxed);
		px_conn_close(c);
		return;
	}
	if (c->waiting || !c->connected_early)
		return;
	px_conn_connected(c);
	c->c_readable = c->c_writable = c->b_writable = true;
	px_conn_run(c);
}

/* The worker stopped: close its connections. One whose slot hand-off is on its way here
 * stays: the PX_CMD_SLOT that px_workers_stop runs after the join closes it (it names the
 * connection). */
static void
px_worker_close_all(struct px_worker *w)
{
	for (struct px_conn *c = w->conns, *next; c; c = next) {
		next = c->next;
		if (!px_conn_unqueue(c))
			px_conn_close(c);
	}
}

/* PX_CMD_SLOT: a slot of b (and a ref) for c, which waited in the queue; b NULL: its service
 * is gone, close it. */
static void
px_conn_slot(struct px_conn *c, struct px_backend *b)
{
	struct px_worker *w = c->w;
	struct px_service *svc = c->svc;

	w->now_ms = px_now_ms();
	pthread_mutex_lock(&svc->qlock);
	c->handoff = false;
	pthread_mutex_unlock(&svc->qlock);
	c->waiting = false;
	if (!c->gone) {
		atomic_fetch_add_explicit(&svc->c.queued, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&svc->c.queue_wait_ms,
		                          (uint64_t)(w->now_ms - c->wait_start_ms),
		                          memory_order_relaxed);
	}
	if (c->timer_on) {
		event_del(&c->tev);
		c->timer_on = false;
	}
	if (c->http && !w->stopped && !c->http_over) { /* the request that waited; NULL: 503 */
		if (b == NULL)
			atomic_fetch_add_explicit(&svc->c.rejected, 1, memory_order_relaxed);
		proxy_http_conn_slot(c->http, b); /* takes b's slot and reference */
		return;
	}
	/* the workers are stopping, the service went, or its client is over: the slot goes to
	 * the next one waiting (no one while stopping) */
	if (w->stopped || b == NULL || c->http_over || c->gone) {
		if (b)
			px_slot_release(w->p, svc, b);
		px_backend_unref(b);
		if (b == NULL)
			atomic_fetch_add_explicit(&svc->c.rejected, 1, memory_order_relaxed);
		px_conn_close(c);
		return;
	}
	px_conn_start(c, b);
	px_backend_unref(b); /* the slot's ref: px_conn_connect took its own */
}

/*
 * The worker that serves a connection w accepted: w itself unless another worker carries
 * at least PX_STEER_MARGIN fewer connections, so a burst of keep-alive connections does not
 * land unevenly on whichever worker woke first. Up to PX_STEER_PEERS others are looked at,
 * in turn. Why the margin is fixed: docs/facts.md, "The proxy".
 */
static struct px_worker *
px_steer(struct px_worker *w)
{
	struct proxy *p = w->p;
	struct px_worker *best = w;
	int peers = p->nthreads - 1 < PX_STEER_PEERS ? p->nthreads - 1 : PX_STEER_PEERS;
	int least = atomic_load_explicit(&w->load, memory_order_relaxed) - PX_STEER_MARGIN + 1;

	for (int k = 0; k < peers; k++) {
		struct px_worker *o =
		    &p->workers[(w->index + 1 +
		                 (int)(w->steer_next++ % (unsigned)(p->nthreads - 1))) %
		                p->nthreads];
		int l = atomic_load_explicit(&o->load, memory_order_relaxed);

		if (l < least) {
			least = l;
			best = o;
		}
	}
	return best;
}

static void
px_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct px_listener *l = arg;

	(void)fd;
	(void)what;
	l->paused = false;
	event_add(&l->ev, NULL);
}

/*
 * accept() found no fd (or no kernel memory). The listening socket stays readable, so
 * polling it again would fail again at once, forever, at a full core: stop polling it for
 * PX_ACCEPT_PAUSE_MS and serve the connections there are. The waiting clients stay in the
 * kernel's backlog meanwhile.
 */
static void
px_accept_pause(struct px_listener *l, int code)
{
	struct timeval tv = {0, PX_ACCEPT_PAUSE_MS * 1000};

	if (l->paused)
		return;
	l->paused = true;
	event_del(&l->ev);
	event_add(&l->pause, &tv);
	shoal_log(LOG_WARNING, "proxy: %s: accept: %s: pausing accepts for %dms", l->svc->name,
	          strerror(code), PX_ACCEPT_PAUSE_MS);
}

/* No fd for a backend socket: no listener of w takes a client it could not serve. */
static void
px_worker_pause_accepts(struct px_worker *w, int code)
{
	for (struct px_listener *l = w->listeners; l; l = l->next)
		px_accept_pause(l, code);
}

static void
px_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_listener *l = arg;
	struct px_worker *w = l->w;
	struct proxy *p = w->p;
	bool kicked = false;
	int i;

	(void)what;
	w->now_ms = px_now_ms();
	for (i = 0; i < PX_ACCEPT_BATCH; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct px_worker *t;

		if (cfd == -1) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				px_accept_pause(l, errno);
			else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				shoal_log(LOG_WARNING, "proxy: %s: accept: %s", l->svc->name,
				          strerror(errno));
			break;
		}
		if (!px_admit(p, l->svc, cfd))
			continue;
		t = px_steer(w);
		atomic_fetch_add_explicit(&t->load, 1, memory_order_relaxed);
		if (t == w) {
			px_conn_new(w, l->svc, cfd);
			continue;
		}
		struct px_cmd *cmd = xcalloc(1, sizeof(*cmd));

		cmd->kind = PX_CMD_CONN;
		cmd->svc = l->svc;
		atomic_fetch_add_explicit(&l->svc->refs, 1, memory_order_relaxed);
		cmd->fd = cfd;
		/* One wake per worker and batch. */
		if (px_worker_enqueue(t, cmd)) {
			w->kick[t->index] = true;
			kicked = true;
		}
	}
	for (int k = 0; kicked && k < p->nthreads; k++) {
		if (w->kick[k]) {
			w->kick[k] = false;
			px_worker_wake(&p->workers[k]);
		}
	}
	/* A full batch means a backlog: give the CPU up to the node's backends and clients before
	 * taking more (docs/facts.md, "The proxy"). */
	if (i == PX_ACCEPT_BATCH)
		sched_yield();
}

/* ---- main thread -------------------------------------------------------------------- */

static void
px_workers_stop(struct proxy *p, int n)
{
	atomic_store(&p->stopping, true);
	for (int i = 0; i < n; i++) {
		struct px_cmd *cmd = xcalloc(1, sizeof(*cmd));

		cmd->kind = PX_CMD_STOP;
		px_worker_post(&p->workers[i], cmd);
	}
	for (int i = 0; i < n; i++)
		pthread_join(p->workers[i].thread, NULL);
	/* Commands posted after STOP still hold refs (and handed-over connections, an fd):
	 * only once every worker is joined can no more arrive. */
	for (int i = 0; i < n; i++)
		px_worker_cmd_cb(p->workers[i].cmd_fd, 0, &p->workers[i]);
}

static void
px_worker_free(struct px_worker *w)
{
	if (w->cmd_ev)
		event_free(w->cmd_ev);
	if (w->base)
		event_base_free(w->base);
	if (w->cmd_fd != -1)
		close(w->cmd_fd);
	pthread_mutex_destroy(&w->cmd_lock);
	free(w->scratch);
	free(w->kick);
}

int
proxy_default_max_conns(uint64_t nofile)
{
	uint64_t reserve = nofile / 8 > PX_FD_RESERVE_MIN ? nofile / 8 : PX_FD_RESERVE_MIN;
	uint64_t n = nofile > reserve + 2 ? (nofile - reserve) / 2 : 1;

	return n > PX_DEFAULT_MAX_CONNS_CAP ? PX_DEFAULT_MAX_CONNS_CAP : (int)n;
}

struct proxy *
proxy_create(const struct proxy_options *opt, struct shoal_err *err)
{
	struct proxy *p = xcalloc(1, sizeof(*p));
	struct event_config *cfg = NULL;
	int started = 0, inited = 0;

	p->nthreads = opt->threads > 0 ? opt->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (p->nthreads < 1)
		p->nthreads = 1;
	p->max_conns = opt->max_conns > 0 ? opt->max_conns : proxy_default_max_conns(util_nofile());
	p->first_byte_ms =
	    opt->first_byte_timeout_ms > 0 ? opt->first_byte_timeout_ms : PX_DEFAULT_FIRST_BYTE_MS;
	p->idle_ms = opt->idle_timeout_ms > 0 ? opt->idle_timeout_ms : PX_DEFAULT_IDLE_MS;
	p->connect_ms =
	    opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : PX_DEFAULT_CONNECT_MS;
	p->bench_ms = opt->bench_ms > 0 ? opt->bench_ms : PX_DEFAULT_BENCH_MS;
	p->buf_size = opt->buf_size > 0 ? opt->buf_size : PX_DEFAULT_BUF;
	if (p->buf_size > PX_MAX_BUF)
		p->buf_size = PX_MAX_BUF;
	p->lb = opt->lb ? opt->lb : &lb_rr_ops;
	p->on_failure = opt->on_failure;
	p->failure_arg = opt->failure_arg;
	p->fail_fd = -1;
	pthread_mutex_init(&p->fail_lock, NULL);
	atomic_init(&p->table, NULL);
	if (opt->main_base && opt->on_failure) {
		p->fail_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (p->fail_fd == -1) {
			err_set(err, errno, "proxy: eventfd");
			goto fail;
		}
		p->fail_ev =
		    event_new(opt->main_base, p->fail_fd, EV_READ | EV_PERSIST, px_failures_cb, p);
		event_add(p->fail_ev, NULL);
	}

	/* Each base is used by its own thread only: no libevent locks. */
	cfg = event_config_new();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	p->workers = xcalloc((size_t)p->nthreads, sizeof(*p->workers));
	for (int i = 0; i < p->nthreads; i++) {
		struct px_worker *w = &p->workers[i];
		struct timeval idle = {p->idle_ms / 1000, (p->idle_ms % 1000) * 1000};
		struct timeval conn = {p->connect_ms / 1000, (p->connect_ms % 1000) * 1000};

		w->p = p;
		w->index = i;
		w->cmd_fd = -1;
		pthread_mutex_init(&w->cmd_lock, NULL);
		inited++;
		w->scratch = xmalloc(p->buf_size);
		w->kick = xcalloc((size_t)p->nthreads, sizeof(*w->kick));
		w->base = event_base_new_with_config(cfg);
		w->cmd_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->base == NULL || w->cmd_fd == -1) {
			err_set(err, w->base ? errno : 0, "proxy: worker %d: event base", i);
			goto fail;
		}
		w->cmd_ev =
		    event_new(w->base, w->cmd_fd, EV_READ | EV_PERSIST, px_worker_cmd_cb, w);
		event_add(w->cmd_ev, NULL);
		w->idle_tv = event_base_init_common_timeout(w->base, &idle);
		w->connect_tv = event_base_init_common_timeout(w->base, &conn);
		if (p->first_byte_ms < p->idle_ms) {
			struct timeval fb = {p->first_byte_ms / 1000,
			                     (p->first_byte_ms % 1000) * 1000};

			w->first_byte_tv = event_base_init_common_timeout(w->base, &fb);
		}
	}
	for (; started < p->nthreads; started++) {
		int rc = pthread_create(&p->workers[started].thread, NULL, px_worker_main,
		                        &p->workers[started]);
		if (rc != 0) {
			err_set(err, rc, "proxy: start worker thread");
			goto fail;
		}
	}
	event_config_free(cfg);
	return p;
fail:
	px_workers_stop(p, started);
	for (int i = 0; i < inited; i++)
		px_worker_free(&p->workers[i]);
	free(p->workers);
	if (cfg)
		event_config_free(cfg);
	if (p->fail_ev)
		event_free(p->fail_ev);
	if (p->fail_fd != -1)
		close(p->fail_fd);
	pthread_mutex_destroy(&p->fail_lock);
	free(p);
	return NULL;
}

void
proxy_destroy(struct proxy *p)
{
	struct px_failure_msg *m, *next;

	if (p == NULL)
		return;
	px_workers_stop(p, p->nthreads);
	px_table_free(atomic_load(&p->table));
	for (int i = 0; i < p->nthreads; i++)
		px_worker_free(&p->workers[i]);
	free(p->workers);
	for (m = p->fail_head; m; m = next) {
		next = m->next;
		free(m->service);
		free(m->backend_id);
		free(m);
	}
	if (p->fail_ev)
		event_free(p->fail_ev);
	if (p->fail_fd != -1)
		close(p->fail_fd);
	pthread_mutex_destroy(&p->fail_lock);
	for (size_t i = 0; i < p->nadopted; i++)
		close(p->adopted[i]);
	free(p->adopted);
	free(p->bind_errs);
	free(p);
}

/* An adopted listener bound to exactly ss (port 0 never matches: tests' any-port), or -1. */
static int
px_take_adopted(struct proxy *p, const struct sockaddr_storage *ss, socklen_t len)
{
	for (size_t i = 0; i < p->nadopted; i++) {
		struct sockaddr_storage b;
		socklen_t blen = sizeof(b);
		int fd = p->adopted[i];

		if (getsockname(fd, (struct sockaddr *)&b, &blen) == -1 || blen != len ||
		    memcmp(&b, ss, len) != 0 || ((const struct sockaddr_in *)ss)->sin_port == 0)
			continue;
		p->adopted[i] = p->adopted[--p->nadopted];
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		return fd;
	}
	return -1;
}

/*
 * Open the service's listening socket, and one duplicate of it per further worker (each
 * worker closes its own when the service goes; the socket lives until the last one).
 *
 * One accept queue for all workers, not one SO_REUSEPORT socket each: a connection then
 * never waits for a busy worker while another idles (docs/facts.md, "The proxy").
 */
static struct px_service *
px_service_new(struct proxy *p, const struct proxy_service_spec *spec, struct shoal_err *err)
{
	const char *ip = spec->listen_addr ? spec->listen_addr : "0.0.0.0";
	struct sockaddr_storage ss, bound;
	socklen_t len, blen = sizeof(bound);
	struct px_service *s;
	int one = 1, fd, i;
	bool adopted;

	if (px_parse_addr(ip, spec->port, &ss, &len) == -1) {
		err_set(err, 0, "service %s: listen address %s is not an IP address", spec->name,
		        ip);
		return NULL;
	}
	fd = px_take_adopted(p, &ss, len);
	adopted = fd != -1;
	if (adopted)
		shoal_log(LOG_INFO, "proxy: service %s takes over the listener on %s:%u",
		          spec->name, ip, (unsigned)spec->port);
	else
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		err_set(err, errno, "service %s: socket", spec->name);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((!adopted && bind(fd, (struct sockaddr *)&ss, len) == -1) ||
	    listen(fd, SOMAXCONN) == -1) {
		err_set(err, errno, "service %s: listen on %s:%u", spec->name, ip,
		        (unsigned)spec->port);
		close(fd);
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->fds = xmalloc((size_t)p->nthreads * sizeof(int));
	s->fds[0] = fd;
	for (i = 1; i < p->nthreads; i++) {
		s->fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (s->fds[i] == -1) {
			err_set(err, errno, "service %s: dup listener", spec->name);
			while (i-- > 0)
				close(s->fds[i]);
			free(s->fds);
			free(s);
			return NULL;
		}
	}
	getsockname(fd, (struct sockaddr *)&bound, &blen);
	s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port); /* same offset in v6 */
	atomic_init(&s->refs, 1);
	s->name = xstrdup(spec->name);
	s->listen_spec = spec->listen_addr ? xstrdup(spec->listen_addr) : NULL;
	s->spec_port = spec->port;
	s->lb = p->lb;
	s->lb_state = p->lb->init();
	pthread_mutex_init(&s->qlock, NULL);
	return s;
}

static bool
px_same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static struct px_tsvc *
px_table_lookup_spec(const struct px_table *t, const struct proxy_service_spec *spec)
{
	for (size_t i = 0; t && i < t->nsvc; i++) {
		struct px_service *s = t->svcs[i].svc;

		if (strcmp(s->name, spec->name) == 0 && s->spec_port == spec->port &&
		    px_same_str(s->listen_spec, spec->listen_addr))
			return &t->svcs[i];
	}
	return NULL;
}

/* Append "; msg" of one failure to the collected message. */
static void
px_err_add(struct shoal_err *all, int *nerr, const struct shoal_err *one)
{
	size_t len = strlen(all->msg);

	if (*nerr == 0) {
		*all = *one;
	} else if (len + 3 < sizeof(all->msg)) {
		size_t k = strnlen(one->msg, sizeof(all->msg) - len - 3);

		memcpy(all->msg + len, "; ", 2);
		memcpy(all->msg + len + 2, one->msg, k);
		all->msg[len + 2 + k] = '\0';
	}
	(*nerr)++;
}

/*
 * True when t already holds spec's listener: the same name on the same address and port, or
 * (for a fixed port) anything on its address:port. One name on several ports is one service
 * listening on each (a virtual IP per target port, agent/vipproxy.c): its listeners keep
 * apart by address and port, as px_table_lookup_spec does, and their stats sum by name.
 */
static bool
px_table_has_clash(const struct px_table *t, const struct proxy_service_spec *spec)
{
	for (size_t j = 0; j < t->nsvc; j++) {
		const struct px_service *s = t->svcs[j].svc;
		bool addr =
		    s->spec_port == spec->port && px_same_str(s->listen_spec, spec->listen_addr);

		if (addr && (spec->port != 0 || strcmp(s->name, spec->name) == 0))
			return true;
	}
	return false;
}

/* Remember why spec's listener could not be opened, for proxy_bind_errors. */
static void
px_note_bind_error(struct proxy *p, const struct proxy_service_spec *spec,
                   const struct shoal_err *one)
{
	struct proxy_bind_error *be = &p->bind_errs[p->nbind_errs++];

	snprintf(be->service, sizeof(be->service), "%s", spec->name);
	be->port = spec->port;
	be->code = one->code;
	snprintf(be->msg, sizeof(be->msg), "%s", one->msg);
}

/* The backend of prev with bs's id and address (a new ref), or a new one. NULL: bad address. */
static struct px_backend *
px_backend_get(const struct px_tsvc *prev, const struct proxy_backend_spec *bs)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct px_backend *b;

	if (px_parse_addr(bs->ip, bs->port, &ss, &len) == -1 || bs->port == 0)
		return NULL;
	for (size_t m = 0; prev && m < prev->nbe; m++) {
		b = prev->be[m];
		if (px_same_str(b->id, bs->id) && b->addrlen == len &&
		    memcmp(&b->addr, &ss, len) == 0) {
			atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
			return b;
		}
	}
	b = xcalloc(1, sizeof(*b));
	atomic_init(&b->refs, 1);
	b->id = xstrdup(bs->id ? bs->id : "");
	b->addr = ss;
	b->addrlen = len;
	snprintf(b->addr_str, sizeof(b->addr_str), ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
	         bs->ip, (unsigned)bs->port);
	return b;
}

/* Fill entry e of the new table from spec: its settings on the (kept or new) service and its
 * backends, keeping those of prev that did not change. A bad backend is left out and added to
 * err. */
static void
px_tsvc_fill(struct px_tsvc *e, const struct px_tsvc *prev, const struct proxy_service_spec *spec,
             struct shoal_err *err, int *nerr)
{
	atomic_store(&e->svc->max_per_be, spec->max_conns_per_backend);
	atomic_store(&e->svc->protocol, (int)spec->protocol);
	atomic_store(&e->svc->http, spec->http);
	atomic_store(&e->svc->queue_ms,
	             spec->queue_timeout_ms > 0 ? spec->queue_timeout_ms : PX_DEFAULT_QUEUE_MS);
	e->be = xcalloc(spec->nbackends ? spec->nbackends : 1, sizeof(*e->be));
	for (size_t k = 0; k < spec->nbackends; k++) {
		const struct proxy_backend_spec *bs = &spec->backends[k];
		struct px_backend *b = px_backend_get(prev, bs);

		if (b == NULL) {
			struct shoal_err one;

			err_set(&one, 0, "service %s: backend %s: bad address %s:%u", spec->name,
			        bs->id ? bs->id : "?", bs->ip, (unsigned)bs->port);
			px_err_add(err, nerr, &one);
			continue;
		}
		e->be[e->nbe++] = b;
	}
}

/* Slots: a kept service keeps its own; new ones (is_new) take the lowest free. */
static void
px_table_assign_slots(struct px_table *t, const bool *is_new)
{
	t->nslots = t->nsvc;
	for (size_t i = 0; i < t->nsvc; i++)
		if (!is_new[i] && t->svcs[i].svc->slot + 1 > t->nslots)
			t->nslots = t->svcs[i].svc->slot + 1;
	t->by_slot = xcalloc(t->nslots ? t->nslots : 1, sizeof(*t->by_slot));
	for (size_t i = 0; i < t->nsvc; i++)
		if (!is_new[i])
			t->by_slot[t->svcs[i].svc->slot] = &t->svcs[i];
	for (size_t i = 0, slot = 0; i < t->nsvc; i++) {
		if (!is_new[i])
			continue;
		while (t->by_slot[slot])
			slot++;
		t->svcs[i].svc->slot = slot;
		t->by_slot[slot] = &t->svcs[i];
	}
}

/* Post one command of this kind to every worker: ADD_LISTENER gives each worker its own
 * duplicate of svc's socket and a ref of svc; DEL_LISTENER names svc; RETIRE names table. */
static void
px_post_all(struct proxy *p, enum px_cmd_kind kind, struct px_service *svc, struct px_table *table)
{
	for (int w = 0; w < p->nthreads; w++) {
		struct px_cmd *cmd = xcalloc(1, sizeof(*cmd));

		cmd->kind = kind;
		cmd->svc = svc;
		cmd->table = table;
		if (kind == PX_CMD_ADD_LISTENER) {
			cmd->fd = svc->fds[w];
			atomic_fetch_add_explicit(&svc->refs, 1, memory_order_relaxed);
		}
		px_worker_post(&p->workers[w], cmd);
	}
}

/* Publish t, then hand new listeners to the workers (so the first accept finds its service),
 * close listeners of services gone, wake queued clients, and retire the old table. */
static void
px_table_publish(struct proxy *p, struct px_table *t, struct px_table *old, const bool *is_new)
{
	atomic_init(&t->refs, p->nthreads);
	atomic_store_explicit(&p->table, t, memory_order_release);
	for (size_t i = 0; i < t->nsvc; i++) {
		struct px_service *s = t->svcs[i].svc;

		if (!is_new[i])
			continue;
		shoal_log(LOG_INFO, "proxy: service %s listening on %s:%u", s->name,
		          s->listen_spec ? s->listen_spec : "0.0.0.0", (unsigned)s->port);
		px_post_all(p, PX_CMD_ADD_LISTENER, s, NULL);
	}
	for (size_t i = 0; old && i < old->nsvc; i++) {
		struct px_service *s = old->svcs[i].svc;

		if (px_table_find(t, s))
			continue;
		shoal_log(LOG_INFO, "proxy: service %s no longer listening on port %u", s->name,
		          (unsigned)s->port);
		px_post_all(p, PX_CMD_DEL_LISTENER, s, NULL);
	}
	/* A raised limit or a new backend frees slots for clients already waiting; the clients
	 * of a service gone are closed. */
	for (size_t i = 0; i < t->nsvc; i++)
		px_queue_kick(p, t->svcs[i].svc);
	for (size_t i = 0; old && i < old->nsvc; i++)
		if (px_table_find(t, old->svcs[i].svc) == NULL)
			px_queue_kick(p, old->svcs[i].svc);
	if (old)
		px_post_all(p, PX_CMD_RETIRE, NULL, old);
}

int
proxy_set_services(struct proxy *p, const struct proxy_service_spec *svcs, size_t n,
                   struct shoal_err *err)
{
	struct px_table *old = atomic_load_explicit(&p->table, memory_order_relaxed);
	struct px_table *t = xcalloc(1, sizeof(*t));
	struct shoal_err one;
	bool *is_new = xcalloc(n ? n : 1, sizeof(bool));
	int nerr = 0;

	err_clear(err);
	p->nbind_errs = 0;
	p->bind_errs = xrealloc(p->bind_errs, (n ? n : 1) * sizeof(*p->bind_errs));
	t->svcs = xcalloc(n ? n : 1, sizeof(*t->svcs));
	for (size_t i = 0; i < n; i++) {
		const struct proxy_service_spec *spec = &svcs[i];
		struct px_tsvc *prev, *e;

		if (px_table_has_clash(t, spec)) {
			err_set(&one, 0, "service %s: name or address:port given twice",
			        spec->name);
			px_err_add(err, &nerr, &one);
			continue;
		}
		prev = px_table_lookup_spec(old, spec);
		e = &t->svcs[t->nsvc];
		if (prev) {
			e->svc = prev->svc;
			atomic_fetch_add_explicit(&e->svc->refs, 1, memory_order_relaxed);
		} else {
			e->svc = px_service_new(p, spec, &one);
			if (e->svc == NULL) {
				px_note_bind_error(p, spec, &one);
				px_err_add(err, &nerr, &one);
				continue;
			}
			is_new[t->nsvc] = true;
		}
		px_tsvc_fill(e, prev, spec, err, &nerr);
		t->nsvc++;
	}
	px_table_assign_slots(t, is_new);
	px_table_publish(p, t, old, is_new);
	free(is_new);
	return nerr ? -1 : 0;
}

uint16_t
proxy_listen_port(struct proxy *p, const char *service)
{
	const struct px_table *t = atomic_load_explicit(&p->table, memory_order_relaxed);

	for (size_t i = 0; t && i < t->nsvc; i++)
		if (strcmp(t->svcs[i].svc->name, service) == 0)
			return t->svcs[i].svc->port;
	return 0;
}

static void
px_counters_read(const struct px_counters *in, struct proxy_counters *out)
{
	out->conns = atomic_load_explicit(&in->conns, memory_order_relaxed);
	out->active = atomic_load_explicit(&in->active, memory_order_relaxed);
	out->bytes_in = atomic_load_explicit(&in->bytes_in, memory_order_relaxed);
	out->bytes_out = atomic_load_explicit(&in->bytes_out, memory_order_relaxed);
	out->connect_failures = atomic_load_explicit(&in->connect_failures, memory_order_relaxed);
	out->retries = atomic_load_explicit(&in->retries, memory_order_relaxed);
	out->rejected = atomic_load_explicit(&in->rejected, memory_order_relaxed);
	out->busy_timeouts = atomic_load_explicit(&in->busy_timeouts, memory_order_relaxed);
	out->queued = atomic_load_explicit(&in->queued, memory_order_relaxed);
	out->queue_wait_ms = atomic_load_explicit(&in->queue_wait_ms, memory_order_relaxed);
	out->queue_timeouts = atomic_load_explicit(&in->queue_timeouts, memory_order_relaxed);
}

void
proxy_stats(struct proxy *p, struct proxy_stats *out)
{
	const struct px_table *t = atomic_load_explicit(&p->table, memory_order_relaxed);
	int64_t now = px_now_ms();

	memset(out, 0, sizeof(*out));
	if (t == NULL)
		return;
	out->nservices = t->nsvc;
	out->services = xcalloc(t->nsvc ? t->nsvc : 1, sizeof(*out->services));
	for (size_t i = 0; i < t->nsvc; i++) {
		const struct px_tsvc *e = &t->svcs[i];
		struct proxy_service_stats *ss = &out->services[i];

		snprintf(ss->name, sizeof(ss->name), "%s", e->svc->name);
		ss->port = e->svc->port;
		px_counters_read(&e->svc->c, &ss->c);
		pthread_mutex_lock(&e->svc->qlock);
		ss->queue_len = atomic_load(&e->svc->qlen);
		if (e->svc->qhead)
			ss->queue_max_wait = now - e->svc->qhead->wait_start_ms;
		pthread_mutex_unlock(&e->svc->qlock);
		ss->nbackends = e->nbe;
		ss->backends = xcalloc(e->nbe ? e->nbe : 1, sizeof(*ss->backends));
		for (size_t j = 0; j < e->nbe; j++) {
			struct proxy_backend_stats *bs = &ss->backends[j];

			snprintf(bs->id, sizeof(bs->id), "%s", e->be[j]->id);
			snprintf(bs->addr, sizeof(bs->addr), "%s", e->be[j]->addr_str);
			bs->benched = atomic_load(&e->be[j]->bench_until_ms) > now;
			px_counters_read(&e->be[j]->c, &bs->c);
		}
	}
}

void
proxy_stats_free(struct proxy_stats *s)
{
	for (size_t i = 0; i < s->nservices; i++)
		free(s->services[i].backends);
	free(s->services);
	s->services = NULL;
	s->nservices = 0;
}

int64_t
proxy_buffered_bytes(struct proxy *p)
{
	int64_t sum = 0;

	for (int i = 0; i < p->nthreads; i++)
		sum += atomic_load_explicit(&p->workers[i].buffered, memory_order_relaxed);
	return sum;
}

size_t
proxy_worker_conns(struct proxy *p, int64_t *out, size_t max)
{
	for (size_t i = 0; i < max && i < (size_t)p->nthreads; i++)
		out[i] = atomic_load_explicit(&p->workers[i].load, memory_order_relaxed);
	return (size_t)p->nthreads;
}

void
proxy_adopt_listener(struct proxy *p, int fd)
{
	p->adopted = xrealloc(p->adopted, (p->nadopted + 1) * sizeof(*p->adopted));
	p->adopted[p->nadopted++] = fd;
}

size_t
proxy_drop_adopted(struct proxy *p)
{
	size_t n = p->nadopted;

	for (size_t i = 0; i < p->nadopted; i++)
		close(p->adopted[i]);
	p->nadopted = 0;
	return n;
}

size_t
proxy_bind_errors(struct proxy *p, const struct proxy_bind_error **out)
{
	*out = p->bind_errs;
	return p->nbind_errs;
}

size_t
proxy_listener_fds(struct proxy *p, int *out, size_t max)
{
	const struct px_table *t = atomic_load_explicit(&p->table, memory_order_relaxed);
	size_t n = 0;

	for (size_t i = 0; t && i < t->nsvc; i++)
		if (n < max)
			out[n++] = t->svcs[i].svc->fds[0];
	return t ? t->nsvc : 0;
}
