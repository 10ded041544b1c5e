#include "ingress_host.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "addr.h"
#include "backoff.h"
#include "err.h"
#include "ingress.h"
#include "log.h"
#include "runtime/spawn.h"
#include "shoal.pb-c.h"
#include "timer.h"
#include "util.h"

/* A port that cannot listen is retried from 500 ms, doubling to 5 s. */
static const struct backoff bind_backoff = {.base_ms = 500, .cap_ms = 5000};
/* Listening sockets per hand-over message (SCM_MAX_FD is 253). */
#define HANDOVER_BATCH 200
/* A retired ingress waits at most this long for its last connections. */
#define DRAIN_MAX_MS (10 * 60 * 1000)

struct host_client {
	struct host *h;
	struct bufferevent *bev;
	struct host_client *next;
};

/* The ingress process's state: the only mutable global, owner of everything below. */
struct host {
	struct event_base *base;
	struct proxy *proxy;
	const char *data_dir;
	char *sock_path;
	char *pid_path;
	int lfd; /* the unix socket agents connect to, -1 once retired */
	struct event *accept_ev;
	struct host_client *clients; /* connected agents (one, but a new one may overlap) */
	Shoal__IngressFrame *cur;    /* the apply frame being served (owned), NULL before one */
	uint64_t gen;                /* its Endpoints generation */
	struct event *bind_retry;    /* re-applies cur while some port cannot listen */
	int bind_attempts;           /* retries since the set of failures last changed */
	char *bind_sig;              /* that set, "service:port:code ...", for logging changes */
	struct event *sig_term, *sig_int;
	struct event *drain_tick; /* retired: exits once no client connection is left */
	int64_t drain_deadline;
	int nthreads;
};

int64_t
ingress_bind_backoff_ms(int attempts)
{
	return backoff_ms(&bind_backoff, attempts);
}

/* ---- Endpoints -> proxy services ---- */

void
ingress_specs_build(const Shoal__Endpoints *ep, const char *address, struct ingress_specs *out)
{
	struct proxy_service_spec *svcs = xcalloc(ep->n_services + 1, sizeof(*svcs));
	struct proxy_backend_spec **bes = xcalloc(ep->n_services + 1, sizeof(*bes));
	const Shoal__Backend *first_bad = NULL;
	const char *first_why = NULL;
	size_t refused = 0;

	for (size_t i = 0; i < ep->n_services; i++) {
		const Shoal__ServiceEndpoints *se = ep->services[i];
		size_t nb = 0;
		bes[i] = xcalloc(se->n_backends + 1, sizeof(**bes));
		for (size_t k = 0; k < se->n_backends; k++) {
			/* The scheduler checks what agents report, but this proxy dials from this
			 * host: it never takes a backend on itself, the link or a group, whoever
			 * sent it. */
			const char *why = addr_backend_refusal_text(se->backends[k]->ip);
			if (why) {
				if (refused++ == 0) {
					first_bad = se->backends[k];
					first_why = why;
				}
				continue;
			}
			bes[i][nb].id = se->backends[k]->task_id;
			bes[i][nb].ip = se->backends[k]->ip;
			bes[i][nb].port = (uint16_t)se->backends[k]->port;
			nb++;
		}
		svcs[i].name = se->name;
		svcs[i].listen_addr = address && address[0] ? address : NULL;
		svcs[i].port = (uint16_t)se->published_port;
		svcs[i].backends = bes[i];
		svcs[i].nbackends = nb;
		svcs[i].max_conns_per_backend = se->max_conns_per_replica;
		svcs[i].queue_timeout_ms = se->queue_timeout_ms;
		svcs[i].protocol = se->proxy_protocol <= PROXY_PROTOCOL_V2
		                       ? (enum proxy_protocol)se->proxy_protocol
		                       : PROXY_PROTOCOL_NONE;
		svcs[i].http = se->proxy_mode == 1;
	}
	/* One line per table, however many it held. */
	if (refused)
		shoal_log(LOG_WARNING,
		          "endpoints generation %llu: refused %zu backend%s, e.g. %.32s:%u (task "
		          "%.16s): %s address",
		          (unsigned long long)ep->generation, refused, refused == 1 ? "" : "s",
		          first_bad->ip, first_bad->port, first_bad->task_id, first_why);
	out->bes = bes;
	out->n = ep->n_services;
	/* Services' virtual IPs: listeners of the same proxy (agent/vipproxy.h). */
	out->total = ep->n_services;
	vipproxy_append(&out->vip, ep, &svcs, &out->total, addr_backend_refusal_text);
	out->svcs = svcs;
}

void
ingress_specs_free(struct ingress_specs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->bes[i]);
	free(s->bes);
	free(s->svcs);
	vipproxy_specs_free(&s->vip);
	memset(s, 0, sizeof(*s));
}

/* ---- serving the table ---- */

/* Serve h->cur; log the ports that cannot listen when that set changes, and retry them. */
static void
host_apply(struct host *h)
{
	const Shoal__IngressApply *ap = h->cur ? h->cur->apply : NULL;
	struct ingress_specs specs = {0};
	const struct proxy_bind_error *be;
	struct shoal_err err;
	char *sig = xstrdup("");
	size_t n;

	if (ap && ap->endpoints)
		ingress_specs_build(ap->endpoints, ap->listen_address, &specs);
	(void)proxy_set_services(h->proxy, specs.svcs, specs.total, &err);
	ingress_specs_free(&specs);
	/* Sockets handed over that the table no longer names would only hold their ports. */
	if (proxy_drop_adopted(h->proxy))
		shoal_log(LOG_INFO, "closed listeners handed over for services gone");
	n = proxy_bind_errors(h->proxy, &be);
	for (size_t i = 0; i < n; i++) {
		char *next =
		    xasprintf("%s%s:%u:%d ", sig, be[i].service, (unsigned)be[i].port, be[i].code);
		free(sig);
		sig = next;
	}
	if (strcmp(sig, h->bind_sig ? h->bind_sig : "") != 0) {
		for (size_t i = 0; i < n; i++)
			shoal_log(LOG_ERR, "proxy: %s (retrying until it is free)", be[i].msg);
		if (n == 0 && h->bind_sig && h->bind_sig[0])
			shoal_log(LOG_INFO, "proxy: every published port listens again");
		h->bind_attempts = 0;
	}
	free(h->bind_sig);
	h->bind_sig = sig;
	event_del(h->bind_retry);
	if (n > 0)
		timer_add_ms(h->bind_retry, ingress_bind_backoff_ms(h->bind_attempts++));
}

static void
on_bind_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	host_apply(arg);
}

/* ---- talking to agents ---- */

static void
client_free(struct host_client *c)
{
	struct host_client **pp;

	for (pp = &c->h->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (c->bev)
		bufferevent_free(c->bev);
	free(c);
}

static void
send_report(struct host_client *c)
{
	Shoal__IngressFrame f = SHOAL__INGRESS_FRAME__INIT;
	Shoal__IngressReport r = SHOAL__INGRESS_REPORT__INIT;
	struct proxy_stats st = {0};
	const struct proxy_bind_error *be;
	Shoal__ServiceStats *ss;
	Shoal__PortStatus *ps;
	size_t n = 0, nb;

	proxy_stats(c->h->proxy, &st);
	for (size_t i = 0; i < st.nservices; i++)
		n += 1 + st.services[i].nbackends;
	ss = xcalloc(n + 1, sizeof(*ss));
	r.stats = xcalloc(n + 1, sizeof(*r.stats));
	for (size_t i = 0; i < st.nservices; i++) {
		const struct proxy_service_stats *sv = &st.services[i];
		for (size_t k = 0; k <= sv->nbackends; k++) {
			const struct proxy_counters *ct = k == 0 ? &sv->c : &sv->backends[k - 1].c;
			Shoal__ServiceStats *o = &ss[r.n_stats];

			shoal__service_stats__init(o);
			o->service = (char *)sv->name;
			o->backend = k == 0 ? "" : (char *)sv->backends[k - 1].addr;
			o->task_id = k == 0 ? "" : (char *)sv->backends[k - 1].id;
			o->connections = ct->conns;
			o->active = ct->active > 0 ? (uint64_t)ct->active : 0;
			o->bytes_in = ct->bytes_in;
			o->bytes_out = ct->bytes_out;
			o->connect_failures = ct->connect_failures;
			o->retries = ct->retries;
			o->busy_timeouts = ct->busy_timeouts;
			o->benched = k > 0 && sv->backends[k - 1].benched;
			if (k == 0) {
				o->rejected = ct->rejected;
				o->queue_max_wait_ms =
				    sv->queue_max_wait > 0 ? (uint64_t)sv->queue_max_wait : 0;
				o->queue_len = sv->queue_len > 0 ? (uint64_t)sv->queue_len : 0;
				o->queued = ct->queued;
				o->queue_wait_ms = ct->queue_wait_ms;
				o->queue_timeouts = ct->queue_timeouts;
			}
			r.stats[r.n_stats++] = o;
		}
	}
	nb = proxy_bind_errors(c->h->proxy, &be);
	ps = xcalloc(nb + 1, sizeof(*ps));
	r.ports = xcalloc(nb + 1, sizeof(*r.ports));
	for (size_t i = 0; i < nb; i++) {
		shoal__port_status__init(&ps[i]);
		ps[i].service = (char *)be[i].service;
		ps[i].port = be[i].port;
		ps[i].code = be[i].code;
		ps[i].error = be[i].code ? strerror(be[i].code) : (char *)be[i].msg;
		r.ports[r.n_ports++] = &ps[i];
	}
	r.endpoints_generation = c->h->gen;
	f.body_case = SHOAL__INGRESS_FRAME__BODY_REPORT;
	f.report = &r;
	ingress_frame_send(c->bev, &f);
	free(r.ports);
	free(ps);
	free(r.stats);
	free(ss);
	proxy_stats_free(&st);
}

static void host_retire(struct host *h, struct host_client *c);

/* One line per table an agent sends: what a node serves is in its log, not only in memory. */
static void
host_log_table(const struct host *h)
{
	const Shoal__Endpoints *ep = h->cur->apply->endpoints;
	size_t nb = 0, ns = ep ? ep->n_services : 0;

	for (size_t i = 0; i < ns; i++)
		nb += ep->services[i]->n_backends;
	shoal_log(LOG_INFO, "table generation %llu: %zu service%s, %zu backend%s",
	          (unsigned long long)h->gen, ns, ns == 1 ? "" : "s", nb, nb == 1 ? "" : "s");
}

static void
client_read(struct bufferevent *bev, void *arg)
{
	struct host_client *c = arg;
	struct host *h = c->h;
	Shoal__IngressFrame *f;
	int rc;

	while ((rc = ingress_frame_take(bev, &f)) == 1) {
		switch (f->body_case) {
		case SHOAL__INGRESS_FRAME__BODY_APPLY:
			shoal__ingress_frame__free_unpacked(h->cur, NULL);
			h->cur = f;
			h->gen = f->apply->endpoints ? f->apply->endpoints->generation : 0;
			host_apply(h);
			host_log_table(h);
			continue; /* kept as h->cur */
		case SHOAL__INGRESS_FRAME__BODY_REPORT_REQUEST:
			send_report(c);
			break;
		case SHOAL__INGRESS_FRAME__BODY_RETIRE:
			shoal__ingress_frame__free_unpacked(f, NULL);
			host_retire(h, c); /* frees c */
			return;
		default:
			break;
		}
		shoal__ingress_frame__free_unpacked(f, NULL);
	}
	if (rc == -1) {
		shoal_log(LOG_WARNING, "bad frame from the agent; closing its connection");
		client_free(c);
	}
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		shoal_log(LOG_INFO, "agent disconnected; serving the last table");
		client_free(arg);
	}
}

static void
on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct host *h = arg;
	Shoal__IngressFrame f = SHOAL__INGRESS_FRAME__INIT;
	Shoal__IngressHello hello = SHOAL__INGRESS_HELLO__INIT;
	struct host_client *c;
	struct shoal_err err;
	int fd;

	(void)what;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd == -1)
		return;
	/* The hello goes out before anything is queued, written at once: the agent reads it
	 * blocking, and a hand-over may follow on this very socket. */
	hello.version = (char *)ingress_version();
	hello.pid = (int32_t)getpid();
	f.body_case = SHOAL__INGRESS_FRAME__BODY_HELLO;
	f.hello = &hello;
	if (ingress_frame_write_fd(fd, &f, &err) == -1) {
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	c = xcalloc(1, sizeof(*c));
	c->h = h;
	c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, client_read, NULL, client_event, c);
	bufferevent_enable(c->bev, EV_READ);
	c->next = h->clients;
	h->clients = c;
	shoal_log(LOG_INFO, "agent connected");
}

static void
on_failure(const struct proxy_failure *pf, void *arg)
{
	struct host *h = arg;
	Shoal__IngressFrame f = SHOAL__INGRESS_FRAME__INIT;
	Shoal__ProxyHint hint = SHOAL__PROXY_HINT__INIT;

	hint.service = (char *)pf->service;
	hint.task_id = (char *)pf->backend_id;
	hint.backend = (char *)pf->backend_addr;
	hint.reason = strerror(pf->code);
	f.body_case = SHOAL__INGRESS_FRAME__BODY_FAILURE;
	f.failure = &hint;
	if (h->clients == NULL)
		shoal_log(LOG_INFO, "proxy: %s backend %s (task %s) failed: %s; benched",
		          pf->service, pf->backend_addr, pf->backend_id, strerror(pf->code));
	for (struct host_client *c = h->clients; c; c = c->next)
		ingress_frame_send(c->bev, &f);
}

/* ---- hand-over (upgrade) ---- */

/* Send fds over sock in batches, each with one byte 'F'; then one 'E' without. */
static int
send_fds(int sock, const int *fds, size_t n, struct shoal_err *err)
{
	for (size_t off = 0;; off += HANDOVER_BATCH) {
		size_t k = off < n ? (n - off < HANDOVER_BATCH ? n - off : HANDOVER_BATCH) : 0;
		char tag = k ? 'F' : 'E';
		struct iovec iov = {&tag, 1};
		union {
			char buf[CMSG_SPACE(sizeof(int) * HANDOVER_BATCH)];
			struct cmsghdr align;
		} u;
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

		if (k) {
			struct cmsghdr *cm;

			mh.msg_control = u.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * k);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * k);
			memcpy(CMSG_DATA(cm), fds + off, sizeof(int) * k);
		}
		if (sendmsg(sock, &mh, MSG_NOSIGNAL) == -1)
			return err_set(err, errno, "sendmsg");
		if (!k)
			return 0;
	}
}

static void
on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct host *h = arg;
	int64_t conns[256];
	size_t n;
	int64_t sum = 0;

	(void)fd;
	(void)what;
	n = proxy_worker_conns(h->proxy, conns, 256);
	for (size_t i = 0; i < n && i < 256; i++)
		sum += conns[i];
	if (sum == 0 || util_now_ms() >= h->drain_deadline) {
		shoal_log(LOG_INFO, "retired, %lld connection%s left; exiting", (long long)sum,
		          sum == 1 ? "" : "s");
		event_base_loopexit(h->base, NULL);
	}
}

/* A successor asked for the listeners: send it the table and the sockets, stop accepting
 * (the sockets live on in the successor), let established connections finish, exit. */
static void
host_retire(struct host *h, struct host_client *c)
{
	Shoal__IngressFrame empty = SHOAL__INGRESS_FRAME__INIT;
	int sock = bufferevent_getfd(c->bev);
	struct shoal_err err;
	int *fds;
	size_t n;

	n = proxy_listener_fds(h->proxy, NULL, 0);
	fds = xcalloc(n + 1, sizeof(int));
	proxy_listener_fds(h->proxy, fds, n);
	fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) & ~O_NONBLOCK);
	if (ingress_frame_write_fd(sock, h->cur ? h->cur : &empty, &err) == -1 ||
	    send_fds(sock, fds, n, &err) == -1) {
		shoal_log(LOG_ERR, "hand-over failed: %s; serving on", err.msg);
		free(fds);
		client_free(c);
		return;
	}
	free(fds);
	shoal_log(LOG_INFO, "handed %zu listener%s to a new ingress; draining", n,
	          n == 1 ? "" : "s");
	client_free(c);
	while (h->clients)
		client_free(h->clients);
	event_free(h->accept_ev);
	h->accept_ev = NULL;
	close(h->lfd);
	h->lfd = -1;
	event_del(h->bind_retry);
	(void)proxy_set_services(h->proxy, NULL, 0, &err);
	h->drain_deadline = util_now_ms() + DRAIN_MAX_MS;
	h->drain_tick = event_new(h->base, -1, EV_PERSIST, on_drain_tick, h);
	timer_add_ms(h->drain_tick, 200);
}

/* The successor's side: take the table and listeners of the ingress on sock_path. */
static int
take_over(struct host *h, struct shoal_err *err)
{
	Shoal__IngressFrame req = SHOAL__INGRESS_FRAME__INIT;
	Shoal__IngressFrame *f;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t got = 0;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->sock_path);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
		return err_set(err, errno, "connect %s", h->sock_path);
	f = ingress_frame_read_fd(fd, err); /* its hello */
	if (f == NULL)
		return err_prefix(err, "hello");
	shoal__ingress_frame__free_unpacked(f, NULL);
	req.body_case = SHOAL__INGRESS_FRAME__BODY_RETIRE;
	req.retire = true;
	if (ingress_frame_write_fd(fd, &req, err) == -1)
		return err_prefix(err, "retire");
	f = ingress_frame_read_fd(fd, err);
	if (f == NULL)
		return err_prefix(err, "table");
	if (f->body_case == SHOAL__INGRESS_FRAME__BODY_APPLY) {
		h->cur = f;
		h->gen = f->apply->endpoints ? f->apply->endpoints->generation : 0;
	} else {
		shoal__ingress_frame__free_unpacked(f, NULL);
	}
	for (;;) {
		char tag;
		struct iovec iov = {&tag, 1};
		union {
			char buf[CMSG_SPACE(sizeof(int) * HANDOVER_BATCH)];
			struct cmsghdr align;
		} u;
		struct msghdr mh = {.msg_iov = &iov,
		                    .msg_iovlen = 1,
		                    .msg_control = u.buf,
		                    .msg_controllen = sizeof(u.buf)};
		ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return err_set(err, r == 0 ? ECONNRESET : errno, "listeners");
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int lfd;

				memcpy(&lfd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				proxy_adopt_listener(h->proxy, lfd);
				got++;
			}
		}
		if (tag == 'E')
			break;
	}
	shoal_log(LOG_INFO, "took over %zu listener%s and table generation %llu", got,
	          got == 1 ? "" : "s", (unsigned long long)h->gen);
	return 0;
}

/* ---- the process ---- */

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	shoal_log(LOG_INFO, "%s: shutting down", strsignal((int)sig));
	event_base_loopexit(arg, NULL);
}

static int
listen_unix(const char *path, struct shoal_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return err_set(err, errno, "socket");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	/* A socket file left by an ingress that died, or handed over by one retiring. */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || chmod(path, 0600) == -1 ||
	    listen(fd, 16) == -1) {
		err_set(err, errno, "listen on %s", path);
		close(fd);
		return -1;
	}
	return fd;
}

static void
sync_fail(int sync_fd, const struct shoal_err *err)
{
	shoal_log(LOG_ERR, "cannot start: %s", err->msg);
	if (sync_fd >= 0) {
		(void)!write(sync_fd, err->msg, strlen(err->msg));
		close(sync_fd);
	}
}

int
ingress_host_run(const struct ingress_host_options *o)
{
	struct host h = {.lfd = -1};
	struct proxy_options po = o->po;
	struct shoal_err err;
	int rc = 1;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	/* Read now: a binary rewritten in place later must not change who this process is. */
	(void)ingress_version();
	h.data_dir = o->data_dir;
	h.sock_path = ingress_socket_path(o->data_dir);
	h.pid_path = ingress_pid_path(o->data_dir);
	h.base = event_base_new();
	if (h.base == NULL) {
		err_set(&err, 0, "cannot create the event loop");
		sync_fail(o->sync_fd, &err);
		goto out;
	}
	po.main_base = h.base;
	po.on_failure = on_failure;
	po.failure_arg = &h;
	h.proxy = proxy_create(&po, &err);
	if (h.proxy == NULL) {
		sync_fail(o->sync_fd, &err);
		goto out;
	}
	h.bind_retry = event_new(h.base, -1, 0, on_bind_retry, &h);
	if (o->take_over && take_over(&h, &err) == -1) {
		err_prefix(&err, "take over");
		sync_fail(o->sync_fd, &err);
		goto out;
	}
	if (h.cur)
		host_apply(&h); /* at once: the handed sockets' queues wait for their accepts */
	h.lfd = listen_unix(h.sock_path, &err);
	if (h.lfd == -1) {
		sync_fail(o->sync_fd, &err);
		goto out;
	}
	{
		char *pid = xasprintf("%d %llu\n", (int)getpid(),
		                      (unsigned long long)spawn_proc_start_time(getpid()));
		if (util_write_file_atomic(h.pid_path, pid, strlen(pid), 0600, &err) == -1)
			shoal_log(LOG_WARNING, "%s", err.msg);
		free(pid);
	}
	h.accept_ev = event_new(h.base, h.lfd, EV_READ | EV_PERSIST, on_accept, &h);
	event_add(h.accept_ev, NULL);
	h.sig_term = evsignal_new(h.base, SIGTERM, on_signal, h.base);
	h.sig_int = evsignal_new(h.base, SIGINT, on_signal, h.base);
	event_add(h.sig_term, NULL);
	event_add(h.sig_int, NULL);
	shoal_log(LOG_INFO, "pid %d serving, socket %s", (int)getpid(), h.sock_path);
	if (o->sync_fd >= 0)
		close(o->sync_fd);
	event_base_dispatch(h.base);
	/* Still the node's ingress (not retired): its socket and pid file go with it. */
	if (h.lfd != -1) {
		unlink(h.sock_path);
		unlink(h.pid_path);
	}
	rc = 0;
out:
	while (h.clients)
		client_free(h.clients);
	if (h.accept_ev)
		event_free(h.accept_ev);
	if (h.lfd != -1)
		close(h.lfd);
	if (h.drain_tick)
		event_free(h.drain_tick);
	if (h.bind_retry)
		event_free(h.bind_retry);
	if (h.sig_term)
		event_free(h.sig_term);
	if (h.sig_int)
		event_free(h.sig_int);
	proxy_destroy(h.proxy);
	shoal__ingress_frame__free_unpacked(h.cur, NULL);
	free(h.bind_sig);
	if (h.base)
		event_base_free(h.base);
	free(h.sock_path);
	free(h.pid_path);
	return rc;
}
