#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "admit.h"
#include "endpoints.h"
#include "service.h"
#include "task.h"
#include "store.h"
#include "api.h"
#include "evstream.h"
#include "ha.h"
#include "http.h"
#include "logs.h"
#include "reconcile.h"
#include "shoal.pb-c.h"
#include "reconcile_load.h"
#include "reconcile_pass.h"
#include "reconcile_report.h"
#include "err.h"
#include "identity.h"
#include "log.h"
#include "util.h"

#define CRON_MS 100
/* fds kept out of the connections' reach: the store (db, WAL, shm), the listener, epoll,
 * signals, log relays. */
#define SCHED_FD_RESERVE 64
/* How long accepting pauses when accept() finds the fd table full. */
#define SCHED_ACCEPT_PAUSE_MS 200

/* The peer's handshake is done: it no longer counts against the unauthenticated caps. */
static void
conn_authenticated(struct sched_conn *sc)
{
	if (sc->unauth) {
		sc->unauth = false;
		admit_release(sc->srv->admit, (struct sockaddr *)&sc->src);
	}
}

void
sched_conn_unlink(struct sched_conn *sc)
{
	struct sched_server *srv = sc->srv;

	conn_authenticated(sc);
	srv->nconns--;

	if (sc->node && sc->node->conn == sc->rpc)
		sc->node->conn = NULL;
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		srv->conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
}

void
sched_conn_drop(struct sched_conn *sc)
{
	logs_conn_closed(sc->srv, sc);
	evstream_conn_closed(sc->srv, sc);
	sched_conn_unlink(sc);
	rpc_free(sc->rpc);
	free(sc);
}

/*
 * etcd: an agent's writes (a Register's node record) join the loop's batch, which the pass
 * scheduled here commits, as they do in SQLite when a batch is open. One synchronous etcd
 * transaction per Register would hold the loop for a round trip each: 256 registering at once
 * kept it busy past the lease TTL and the leader stepped down. CLI writes stay immediate.
 * SQLite: a Register's row joins the batch too. Alone it cost a commit and its fsync each
 * (synchronous=FULL), ~1 ms here: 10,000 agents registering held the loop for 10 s, no
 * heartbeat was answered, and every agent dropped the silent scheduler and came back. The
 * pass commits in this same loop iteration (event_active), before the loop polls again; a
 * crash in between loses only rows the agents write again when they re-register.
 */
static void
batch_agent_writes(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	struct shoal_err err;

	if (srv->store.in_tx)
		return;
	if (srv->ha == NULL ? env->body_case != SHOAL__ENVELOPE__BODY_REGISTER
	                    : sc->node == NULL && env->body_case != SHOAL__ENVELOPE__BODY_REGISTER)
		return;
	if (store_tx_begin(&srv->store, &err) == -1)
		return;
	srv->tx_since = util_now_ms();
	reconcile_schedule(srv);
}

static void
on_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	(void)c;
	if (ha_refuse(arg, env))
		return;
	batch_agent_writes(arg, env);
	api_handle(arg, env);
}

static void
on_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct sched_conn *sc = arg;

	(void)c;
	logs_conn_closed(sc->srv, sc);
	evstream_conn_closed(sc->srv, sc);
	if (sc->node)
		shoal_log(LOG_INFO, "node %s disconnected: %s", sc->node->name, reason);
	sched_conn_unlink(sc);
	free(sc);
}

static void
on_ready(struct rpc_conn *c, void *arg)
{
	(void)c;
	conn_authenticated(arg);
}

static const struct rpc_callbacks conn_cbs = {
    .ready = on_ready,
    .message = on_message,
    .closed = on_closed,
};

/*
 * Refuse c before any work is spent on it: past the fds held in reserve (the store, log
 * relays and the agents' connections need some), or over an admission limit. Closed at
 * once, no handshake: one rate-limited line says why.
 */
static bool
accept_refused(struct sched_server *srv, const struct sockaddr *sa, const char *peer)
{
	enum admit_verdict v;

	if (srv->nconns + SCHED_FD_RESERVE >= srv->nofile) {
		shoal_log(LOG_WARNING,
		          "refusing connection from %s: open connections at the fd limit "
		          "(%zu of %llu, %d held in reserve)",
		          peer, srv->nconns, (unsigned long long)srv->nofile, SCHED_FD_RESERVE);
		return true;
	}
	v = admit_take(srv->admit, sa, util_now_ms());
	if (v == ADMIT_OK)
		return false;
	shoal_log(LOG_WARNING, "refusing connection from %s: %s (unauthenticated now: %u)", peer,
	          admit_verdict_str(v), admit_unauth(srv->admit));
	return true;
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct sched_server *srv = arg;
	struct sockaddr_in *sin = (struct sockaddr_in *)sa;
	struct sched_conn *sc;
	char addr[INET_ADDRSTRLEN] = "?", peer[64];

	(void)l;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
	snprintf(peer, sizeof(peer), "%s:%u", addr,
	         sa->sa_family == AF_INET ? ntohs(sin->sin_port) : 0);
	if (accept_refused(srv, sa, peer)) {
		evutil_closesocket(fd);
		return;
	}
	sc = xcalloc(1, sizeof(*sc));
	sc->srv = srv;
	if (salen > 0 && (size_t)salen <= sizeof(sc->src))
		memcpy(&sc->src, sa, (size_t)salen);
	sc->rpc = rpc_accept(srv->base, fd, peer, &srv->id, &srv->limits, &conn_cbs, sc);
	if (sc->rpc == NULL) {
		admit_release(srv->admit, sa);
		free(sc);
		return;
	}
	sc->unauth = true;
	srv->nconns++;
	sc->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = sc;
	srv->conns = sc;
}

static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct sched_server *srv = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(srv->listener);
}

/*
 * accept() failed. On a full fd table (EMFILE, ENFILE) or no kernel memory the listening
 * socket stays readable, and libevent would call accept() again at once, forever: 584,504
 * failures (and log lines) in 4 s were measured that way. Instead shed one waiting
 * connection with the fd held in reserve (its client sees a close, not a hang), and pause
 * accepting for SCHED_ACCEPT_PAUSE_MS so the loop serves the connections it has.
 */
static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	struct sched_server *srv = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, SCHED_ACCEPT_PAUSE_MS * 1000};

	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		shoal_log(LOG_WARNING, "accept: %s", evutil_socket_error_to_string(e));
		return;
	}
	if (srv->reserve_fd != -1) {
		int fd;

		close(srv->reserve_fd);
		fd = accept4(evconnlistener_get_fd(l), NULL, NULL, SOCK_CLOEXEC);
		if (fd != -1)
			close(fd);
		srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	evconnlistener_disable(l);
	event_add(srv->accept_pause, &tv);
	shoal_log(LOG_WARNING, "accept: %s: pausing accepts for %dms (%zu connections open)",
	          evutil_socket_error_to_string(e), SCHED_ACCEPT_PAUSE_MS, srv->nconns);
}

static void
node_went_down(struct node *n, void *arg)
{
	struct sched_server *srv = arg;

	shoal_log(LOG_WARNING, "node %s down (no heartbeat for %.1fs)", n->name,
	          (double)(util_now_ms() - n->last_seen) / 1000.0);
	reconcile_node_down(srv, n);
}

/* The heartbeat interval agents are told now (--heartbeat-interval, stretched by
 * --max-heartbeats for the nodes known). */
static uint32_t
sched_heartbeat_ms(const struct sched_server *srv)
{
	return nodes_heartbeat_ms(&srv->nodes, srv->heartbeat_ms, srv->max_heartbeats);
}

static void
cron(evutil_socket_t fd, short what, void *arg)
{
	struct sched_server *srv = arg;
	int64_t now = util_now_ms();

	(void)fd;
	(void)what;
	if (!ha_acting(srv))
		return;
	nodes_tick(&srv->nodes, now, CRON_MS);
	nodes_expire(&srv->nodes, now, 3 * (int64_t)sched_heartbeat_ms(srv), node_went_down, srv);
	if (now >= srv->next_tick) {
		srv->next_tick = now + 1000;
		reconcile_tick(srv);
		log_tick();
		if (now >= srv->next_expire) {
			srv->next_expire = now + 10000;
			admit_expire(srv->admit, now);
		}
		endpoints_check_drains(srv);
		/* A node-list change held back by the throttle goes out when it is due. */
		if (srv->endpoints.nodes_waiting && now >= srv->endpoints.next_nodes)
			endpoints_mark(srv);
	}
}

static void
on_pass(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (ha_acting(arg))
		reconcile_flush(arg);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sched_server *srv = arg;

	(void)what;
	shoal_log(LOG_INFO, "%s: shutting down", strsignal((int)sig));
	event_base_loopexit(srv->base, NULL);
}

static int
listen_on(struct sched_server *srv, const char *spec, struct shoal_err *err)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	char host[64];
	uint16_t port;

	if (util_parse_hostport(spec, host, sizeof(host), &port, err) == -1)
		return err_prefix(err, "--listen");
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		return err_set(err, 0, "--listen %s: host must be an IPv4 address", spec);
	sin.sin_port = htons(port);
	srv->listener = evconnlistener_new_bind(srv->base, on_accept, srv,
	                                        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
	                                            LEV_OPT_CLOSE_ON_EXEC,
	                                        1024, (struct sockaddr *)&sin, sizeof(sin));
	if (srv->listener == NULL)
		return err_set(err, errno, "listen on %s", spec);
	evconnlistener_set_error_cb(srv->listener, on_accept_error);
	return 0;
}

/* The address clients are sent to: --advertise, else --listen's (the host name for a wildcard
 * host). */
static int
advertise_address(struct sched_server *srv, const struct sched_options *opt, struct shoal_err *err)
{
	const char *listen = opt->listen ? opt->listen : ":7100";
	char host[256];
	uint16_t port;

	if (opt->advertise) {
		if (util_parse_hostport(opt->advertise, host, sizeof(host), &port, err) == -1)
			return err_prefix(err, "--advertise");
		if (host[0] == '\0')
			return err_set(err, 0, "--advertise %s: want HOST:PORT", opt->advertise);
		srv->advertise = xstrdup(opt->advertise);
		return 0;
	}
	if (util_parse_hostport(listen, host, sizeof(host), &port, err) == -1)
		return err_prefix(err, "--listen");
	if (host[0] == '\0' || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
		if (gethostname(host, sizeof(host) - 1) == -1)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
	}
	srv->advertise = xasprintf("%s:%u", host, port);
	return 0;
}

int
sched_server_init(struct sched_server *srv, const struct sched_options *opt, struct shoal_err *err)
{
	struct timeval tv = {0, CRON_MS * 1000};
	cleanup_free char *dbpath = NULL;
	bool etcd = opt->store && strcmp(opt->store, "sqlite") != 0;

	memset(srv, 0, sizeof(*srv));
	srv->reserve_fd = -1;
	{
		struct admit_limits al = {0};
		struct shoal_err nerr;

		if (util_raise_nofile(&srv->nofile, &nerr) == -1)
			shoal_log(LOG_WARNING, "%s: serving at most ~%llu connections", nerr.msg,
			          (unsigned long long)srv->nofile);
		/* Idle unauthenticated sockets may take at most a quarter of the fds. */
		al.max_unauth = srv->nofile / 4 < 1024 ? (unsigned)(srv->nofile / 4) : 1024;
		srv->admit = admit_new(&al);
	}
	events_init(&srv->events, 0);
	srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	srv->data_dir = xstrdup(opt->data_dir);
	srv->heartbeat_ms = opt->heartbeat_ms ? opt->heartbeat_ms : 1000;
	srv->max_heartbeats = opt->no_heartbeat_cap ? 0
	                      : opt->max_heartbeats ? opt->max_heartbeats
	                                            : NODES_MAX_HEARTBEATS;
	srv->no_routes = opt->no_routes;
	if (identity_load(opt->data_dir, &srv->id, err) == -1)
		goto fail;
	srv->leader_id = "";
	if (advertise_address(srv, opt, err) == -1)
		goto fail;
	dbpath = xasprintf("%s/state.db", opt->data_dir);
	if (!etcd && store_open(&srv->store, dbpath, err) == -1)
		goto fail;
	if (nodes_init(&srv->nodes, opt->cluster_cidr ? opt->cluster_cidr : "10.244.0.0/16", err) ==
	    -1)
		goto fail;
	if (opt->join_rate > 0) {
		srv->nodes.join.rate = opt->join_rate;
		srv->nodes.join.burst =
		    opt->join_rate * 10 > NODES_JOIN_BURST ? opt->join_rate * 10 : NODES_JOIN_BURST;
		srv->nodes.join.tokens = srv->nodes.join.burst;
	}
	/* With etcd, the state is loaded when this scheduler is elected (ha.c). */
	if (!etcd && nodes_load(&srv->nodes, &srv->store, err) == -1)
		goto fail;
	/* A slow heartbeat makes agents notice a lost scheduler later (5 silent beats): the
	 * grace grows with it, as told to the nodes known now. */
	if (8 * (int64_t)sched_heartbeat_ms(srv) > srv->nodes.restart_grace_ms)
		srv->nodes.restart_grace_ms = 8 * (int64_t)sched_heartbeat_ms(srv);
	srv->base = event_base_new();
	if (srv->base == NULL) {
		err_set(err, 0, "cannot create event base");
		goto fail;
	}
	if (etcd && ha_init(srv, opt, err) == -1)
		goto fail;
	/* The reconcile pass runs after the callbacks of an iteration (lowest priority is not
	 * needed: event_active queues it behind what is already active). */
	srv->pass = event_new(srv->base, -1, 0, on_pass, srv);
	srv->started = util_now_ms();
	task_map_init(&srv->tasks);
	if (!etcd && reconcile_load(srv, err) == -1)
		goto fail;
	if (listen_on(srv, opt->listen ? opt->listen : ":7100", err) == -1)
		goto fail;
	{
		static const double pass_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
		                                     0.05,   0.1,   0.25,   0.5,   1,    2.5};
		prom_hist_init(&srv->pass_seconds, pass_bounds, ARRAY_SIZE(pass_bounds));
	}
	if (opt->http && http_start(srv, opt->http, err) == -1)
		goto fail;
	srv->cron = event_new(srv->base, -1, EV_PERSIST, cron, srv);
	srv->accept_pause = evtimer_new(srv->base, on_accept_resume, srv);
	srv->sig_term = evsignal_new(srv->base, SIGTERM, on_signal, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, on_signal, srv);
	event_add(srv->cron, &tv);
	event_add(srv->sig_term, NULL);
	event_add(srv->sig_int, NULL);
	ha_start(srv);
	return 0;
fail:
	sched_server_free(srv);
	return -1;
}

int
sched_server_run(struct sched_server *srv)
{
	signal(SIGPIPE, SIG_IGN);
	shoal_log(LOG_INFO,
	          "scheduler ready: %zu known nodes (%.0fs to register again), heartbeat %ums",
	          srv->nodes.n, (double)srv->nodes.restart_grace_ms / 1000.0, srv->heartbeat_ms);
	return event_base_dispatch(srv->base) == -1 ? -1 : 0;
}

void
sched_server_free(struct sched_server *srv)
{
	while (srv->conns)
		sched_conn_drop(srv->conns);
	http_free(srv);
	if (srv->listener)
		evconnlistener_free(srv->listener);
	if (srv->cron)
		event_free(srv->cron);
	if (srv->accept_pause)
		event_free(srv->accept_pause);
	admit_free(srv->admit);
	if (srv->reserve_fd != -1)
		close(srv->reserve_fd);
	if (srv->pass)
		event_free(srv->pass);
	logs_free(srv);
	evstream_free(srv);
	events_free(&srv->events);
	endpoints_free(&srv->endpoints);
	services_free(&srv->services);
	task_map_free(&srv->tasks);
	free(srv->dirty_svcs);
	free(srv->dirty_nodes);
	free(srv->dirty_tasks);
	if (srv->sig_term)
		event_free(srv->sig_term);
	if (srv->sig_int)
		event_free(srv->sig_int);
	ha_free(srv);
	if (srv->base)
		event_base_free(srv->base);
	nodes_free(&srv->nodes);
	store_close(&srv->store);
	identity_wipe(&srv->id);
	free(srv->data_dir);
	free(srv->advertise);
	memset(srv, 0, sizeof(*srv));
	srv->reserve_fd = -1;
}
