#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>

#include "err.h"
#include "log.h"
#include "shoal.pb-c.h"
#include "util.h"

static void release(struct dns_server *d, struct dns_hold *h);

void
dns_init(struct dns_server *d, struct event_base *base)
{
	memset(d, 0, sizeof(*d));
	d->base = base;
	d->udp_fd = -1;
	d->up_fd = -1;
}

size_t
dns_parse_upstreams(const char *text, struct in_addr skip, struct sockaddr_in *out, size_t max)
{
	size_t n = 0;
	const char *p = text;

	while (p && *p && n < max) {
		char line[256], addr[64];
		size_t len = strcspn(p, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)(len < 255 ? len : 255), p);
		p += len + (p[len] == '\n');
		struct in_addr a;
		if (sscanf(line, " nameserver %63s", addr) != 1 ||
		    inet_pton(AF_INET, addr, &a) != 1)
			continue;
		/* Never ourselves (a loop), nor the unspecified address. */
		if (a.s_addr == skip.s_addr || a.s_addr == 0)
			continue;
		memset(&out[n], 0, sizeof(out[n]));
		out[n].sin_family = AF_INET;
		out[n].sin_port = htons(53);
		out[n].sin_addr = a;
		n++;
	}
	return n;
}

/* ---- forwarding ---- */

static void
pending_clear(struct dns_pending *p)
{
	free(p->query);
	memset(p, 0, sizeof(*p));
}

static void
send_to(struct dns_server *d, const struct sockaddr_in *to, const uint8_t *buf, size_t len)
{
	/* UDP: a full socket buffer loses this reply, as the network could; the client retries. */
	(void)!sendto(d->udp_fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof(*to));
}

static void
servfail(struct dns_server *d, const uint8_t *q, size_t qlen, const struct sockaddr_in *to)
{
	uint8_t out[DNSMSG_UDP_MAX];
	size_t n = dnsmsg_error(q, qlen, 2, out, sizeof(out));

	if (n)
		send_to(d, to, out, n);
}

static void
on_upstream(evutil_socket_t fd, short what, void *arg)
{
	struct dns_server *d = arg;
	uint8_t buf[4096];

	(void)what;
	for (int i = 0; i < 32; i++) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n =
		    recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n == -1)
			return;
		if (n < 12 || fl != sizeof(from))
			continue;
		uint16_t id = (uint16_t)(buf[0] << 8 | buf[1]);
		bool known = false;
		for (size_t k = 0; k < d->nupstream; k++)
			known |= d->upstream[k].sin_addr.s_addr == from.sin_addr.s_addr &&
			         d->upstream[k].sin_port == from.sin_port;
		if (!known)
			continue;
		for (size_t k = 0; k < DNS_MAX_PENDING; k++) {
			struct dns_pending *p = &d->pending[k];
			/* The id and the question must both match what we sent (anti-spoofing). */
			if (!p->used || p->upstream_id != id || (size_t)n < p->qlen ||
			    memcmp(buf + 4, p->query + 4, 2) != 0 ||
			    memcmp(buf + 12, p->query + 12, p->qlen - 12) != 0)
				continue;
			buf[0] = (uint8_t)(p->client_id >> 8);
			buf[1] = (uint8_t)p->client_id;
			send_to(d, &p->client, buf, (size_t)n);
			pending_clear(p);
			break;
		}
	}
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_server *d = arg;
	int64_t now = util_now_ms();
	bool any = false;

	(void)fd;
	(void)what;
	for (size_t k = 0; k < DNS_MAX_PENDING; k++) {
		struct dns_pending *p = &d->pending[k];
		if (!p->used)
			continue;
		if (now < p->deadline) {
			any = true;
			continue;
		}
		p->query[0] = (uint8_t)(p->client_id >> 8);
		p->query[1] = (uint8_t)p->client_id;
		servfail(d, p->query, p->qlen, &p->client);
		pending_clear(p);
	}
	for (size_t k = 0; k < DNS_MAX_HOLD; k++) {
		struct dns_hold *h = &d->hold[k];
		if (!h->used)
			continue;
		if (now < h->deadline) {
			any = true;
			continue;
		}
		/* No tasks came (a scheduler away, a service gone): the table's answer. */
		release(d, h);
	}
	if (any) {
		struct timeval tv = {0, 250 * 1000};
		evtimer_add(d->timer, &tv);
	}
}

static int
upstream_socket(struct dns_server *d)
{
	if (d->up_fd >= 0)
		return 0;
	d->up_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->up_fd == -1)
		return -1;
	d->up_ev = event_new(d->base, d->up_fd, EV_READ | EV_PERSIST, on_upstream, d);
	event_add(d->up_ev, NULL);
	return 0;
}

static void
arm_timer(struct dns_server *d)
{
	if (!evtimer_pending(d->timer, NULL)) {
		struct timeval tv = {0, 250 * 1000};
		evtimer_add(d->timer, &tv);
	}
}

/* Ask the first upstream; SERVFAIL at once when that cannot even be tried. */
static void
forward(struct dns_server *d, const uint8_t *q, size_t qlen, const struct sockaddr_in *client)
{
	struct dns_pending *p = NULL;

	if (d->nupstream == 0 || upstream_socket(d) == -1) {
		servfail(d, q, qlen, client);
		return;
	}
	for (size_t k = 0; k < DNS_MAX_PENDING && p == NULL; k++)
		if (!d->pending[k].used)
			p = &d->pending[k];
	if (p == NULL) {
		servfail(d, q, qlen, client);
		return;
	}
	p->used = 1;
	p->client_id = (uint16_t)(q[0] << 8 | q[1]);
	p->upstream_id = (uint16_t)randombytes_uniform(65536);
	p->client = *client;
	p->deadline = util_now_ms() + DNS_FORWARD_TIMEOUT_MS;
	/* Only header and question travel: the client's EDNS options are not ours to pass. */
	struct dnsmsg_question qu;
	if (dnsmsg_parse_query(q, qlen, &qu) == -1) {
		pending_clear(p);
		return;
	}
	p->qlen = qu.end;
	p->query = xmalloc(p->qlen);
	memcpy(p->query, q, p->qlen);
	p->query[0] = (uint8_t)(p->upstream_id >> 8);
	p->query[1] = (uint8_t)p->upstream_id;
	memset(p->query + 8, 0, 4); /* no authority, no additional records */
	if (sendto(d->up_fd, p->query, p->qlen, MSG_DONTWAIT,
	           (const struct sockaddr *)&d->upstream[0], sizeof(d->upstream[0])) == -1) {
		p->query[0] = (uint8_t)(p->client_id >> 8);
		p->query[1] = (uint8_t)p->client_id;
		servfail(d, p->query, p->qlen, client);
		pending_clear(p);
		return;
	}
	arm_timer(d);
}

/* ---- queries that wait for a service's tasks ---- */

bool
dns_service_of(const char *qname, char *out, size_t cap)
{
	size_t len = strlen(qname), dl = strlen(DNSMSG_DOMAIN);

	if (len > dl && qname[len - dl - 1] == '.' && strcmp(qname + len - dl, DNSMSG_DOMAIN) == 0)
		len -= dl + 1;
	if (len > 6 && strncmp(qname, "tasks.", 6) == 0) {
		qname += 6;
		len -= 6;
	}
	if (len == 0 || len >= cap || memchr(qname, '.', len) != NULL)
		return false;
	memcpy(out, qname, len);
	out[len] = '\0';
	for (char *c = out; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c + 32);
	return true;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
is_omitted(const struct dns_server *d, const char *name)
{
	return d->nomitted &&
	       bsearch(&name, d->omitted, d->nomitted, sizeof(*d->omitted), cmp_str) != NULL;
}

static void answer_udp(struct dns_server *d, const uint8_t *q, size_t n,
                       const struct sockaddr_in *from);

/* Hold q when it names a service whose tasks the table lacks, asking the scheduler for them
 * once; false when it can be answered now. */
static bool
hold(struct dns_server *d, const uint8_t *q, size_t n, const struct sockaddr_in *from)
{
	struct dnsmsg_question qu;
	char name[256];
	struct dns_hold *h = NULL;
	bool asked = false;

	if (d->nomitted == 0 || n > DNSMSG_UDP_MAX || dnsmsg_parse_query(q, n, &qu) == -1 ||
	    !dns_service_of(qu.name, name, sizeof(name)) || !is_omitted(d, name))
		return false;
	for (size_t k = 0; k < DNS_MAX_HOLD && h == NULL; k++)
		if (!d->hold[k].used)
			h = &d->hold[k];
	if (h == NULL)
		return false; /* a flood: answer from what we have */
	for (size_t i = 0; i < d->nsubs && !asked; i++)
		asked = strcmp(d->subs[i], name) == 0;
	if (!asked) {
		if (d->nsubs >= DNS_MAX_SUBS)
			return false;
		d->subs = xrealloc(d->subs, (d->nsubs + 1) * sizeof(*d->subs));
		d->subs[d->nsubs++] = xstrdup(name);
	}
	/* Asked again too: a scheduler that restarted may not know this node follows it. */
	if (d->subscribe)
		d->subscribe(name, d->subscribe_arg);
	h->used = 1;
	memcpy(h->q, q, n);
	h->qlen = n;
	h->client = *from;
	snprintf(h->service, sizeof(h->service), "%s", name);
	h->ready_gen = 0;
	h->deadline = util_now_ms() + DNS_HOLD_TIMEOUT_MS;
	arm_timer(d);
	return true;
}

static void
release(struct dns_server *d, struct dns_hold *h)
{
	h->used = 0;
	answer_udp(d, h->q, h->qlen, &h->client);
}

void
dns_applied(struct dns_server *d, uint64_t gen)
{
	for (size_t k = 0; k < DNS_MAX_HOLD; k++)
		if (d->hold[k].used && d->hold[k].ready_gen && d->hold[k].ready_gen <= gen)
			release(d, &d->hold[k]);
}

/* ---- UDP ---- */

static void
answer_udp(struct dns_server *d, const uint8_t *q, size_t n, const struct sockaddr_in *from)
{
	uint8_t out[DNSMSG_UDP_MAX];
	size_t olen;

	switch (dnsmsg_answer(&d->table, q, n, out, sizeof(out), &olen, d->rotate++)) {
	case DNSMSG_REPLY:
		send_to(d, from, out, olen);
		break;
	case DNSMSG_FORWARD:
		forward(d, q, n, from);
		break;
	case DNSMSG_DROP:
		if (d->dropped++ % 1000 == 0)
			shoal_log(LOG_INFO, "dns: dropped a malformed query from %s (%llu so far)",
			          inet_ntoa(from->sin_addr), (unsigned long long)d->dropped);
		break;
	}
}

static void
on_udp(evutil_socket_t fd, short what, void *arg)
{
	struct dns_server *d = arg;
	uint8_t q[4096];

	(void)what;
	/* A bounded batch per turn: a flood must not starve the rest of the agent. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n == -1)
			return;
		if (fl != sizeof(from) || from.sin_port == 0)
			continue;
		if (!hold(d, q, (size_t)n, &from))
			answer_udp(d, q, (size_t)n, &from);
	}
}

/* ---- TCP: names of the cluster only (a forwarded name gets SERVFAIL) ---- */

static void
tcp_close(struct bufferevent *bev, struct dns_server *d)
{
	for (size_t i = 0; i < DNS_MAX_TCP; i++)
		if (d->tcpc[i] == bev)
			d->tcpc[i] = NULL;
	bufferevent_free(bev);
	d->ntcp--;
}

static void
on_tcp_read(struct bufferevent *bev, void *arg)
{
	struct dns_server *d = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t lenb[2];

	while (evbuffer_get_length(in) >= 2) {
		/* A client that sends queries and never reads the answers: stop reading it until
		 * they drained (on_tcp_write), rather than queue without bound. */
		if (evbuffer_get_length(bufferevent_get_output(bev)) > DNS_TCP_OUT_MAX) {
			bufferevent_disable(bev, EV_READ);
			return;
		}
		evbuffer_copyout(in, lenb, 2);
		size_t len = (size_t)(lenb[0] << 8 | lenb[1]);
		if (evbuffer_get_length(in) < 2 + len)
			return;
		uint8_t *q = xmalloc(len ? len : 1), *out = xmalloc(2 + DNSMSG_TCP_MAX);
		size_t olen = 0;
		evbuffer_drain(in, 2);
		evbuffer_remove(in, q, len);
		switch (
		    dnsmsg_answer(&d->table, q, len, out + 2, DNSMSG_TCP_MAX, &olen, d->rotate++)) {
		case DNSMSG_REPLY:
			break;
		case DNSMSG_FORWARD:
			olen = dnsmsg_error(q, len, 2, out + 2, DNSMSG_TCP_MAX);
			break;
		case DNSMSG_DROP:
			olen = 0;
			break;
		}
		free(q);
		if (olen == 0) {
			free(out);
			tcp_close(bev, d);
			return;
		}
		out[0] = (uint8_t)(olen >> 8);
		out[1] = (uint8_t)olen;
		bufferevent_write(bev, out, olen + 2);
		free(out);
	}
}

static void
on_tcp_write(struct bufferevent *bev, void *arg)
{
	/* The output drained below its low-water mark (0): read again what waits. */
	if (!(bufferevent_get_enabled(bev) & EV_READ)) {
		bufferevent_enable(bev, EV_READ);
		on_tcp_read(bev, arg);
	}
}

static void
on_tcp_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	tcp_close(bev, arg);
}

static void
on_tcp_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen,
              void *arg)
{
	struct dns_server *d = arg;
	struct bufferevent *bev;
	struct timeval idle = {DNS_TCP_IDLE_MS / 1000, 0};

	(void)l;
	(void)sa;
	(void)slen;
	if (d->ntcp >= DNS_MAX_TCP) {
		close(fd);
		return;
	}
	bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	d->ntcp++;
	for (size_t i = 0; i < DNS_MAX_TCP; i++) {
		if (d->tcpc[i] == NULL) {
			d->tcpc[i] = bev;
			break;
		}
	}
	/* A query is at most 64 KiB: stop reading past that until it is answered. */
	bufferevent_setwatermark(bev, EV_READ, 0, 2 + 65535);
	bufferevent_setcb(bev, on_tcp_read, on_tcp_write, on_tcp_event, d);
	bufferevent_set_timeouts(bev, &idle, &idle);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ---- life cycle ---- */

static void
close_listeners(struct dns_server *d)
{
	if (d->udp_ev)
		event_free(d->udp_ev);
	d->udp_ev = NULL;
	if (d->udp_fd >= 0)
		close(d->udp_fd);
	d->udp_fd = -1;
	if (d->tcp)
		evconnlistener_free(d->tcp);
	d->tcp = NULL;
	d->listen.s_addr = 0;
}

int
dns_listen(struct dns_server *d, const char *ip, uint16_t port, const char *resolv_conf,
           struct shoal_err *err)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	cleanup_free char *text = NULL;
	int one = 1;

	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return err_set(err, 0, "dns: %s is not an IPv4 address", ip);
	if (d->udp_fd >= 0 && d->listen.s_addr == sa.sin_addr.s_addr && d->port == port)
		return 0;
	close_listeners(d);
	text = util_read_file(resolv_conf, NULL, NULL);
	d->nupstream = dns_parse_upstreams(text, sa.sin_addr, d->upstream, DNS_MAX_UPSTREAMS);
	if (d->timer == NULL)
		d->timer = evtimer_new(d->base, on_timer, d);
	d->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->udp_fd == -1)
		return err_set(err, errno, "dns: socket");
	setsockopt(d->udp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(d->udp_fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		err_set(err, errno, "dns: listen on udp %s:%u", ip, (unsigned)port);
		close_listeners(d);
		return -1;
	}
	d->udp_ev = event_new(d->base, d->udp_fd, EV_READ | EV_PERSIST, on_udp, d);
	event_add(d->udp_ev, NULL);
	d->tcp = evconnlistener_new_bind(d->base, on_tcp_accept, d,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                     LEV_OPT_CLOSE_ON_EXEC,
	                                 64, (struct sockaddr *)&sa, sizeof(sa));
	if (d->tcp == NULL) {
		/* UDP is what resolvers use; TCP only after a truncated answer. Keep serving. */
		shoal_log(LOG_WARNING, "dns: listen on tcp %s:%u: %s", ip, (unsigned)port,
		          strerror(errno));
	}
	d->listen = sa.sin_addr;
	d->port = port;
	shoal_log(LOG_INFO, "dns: serving service names on %s:%u (%zu upstream resolver%s)", ip,
	          (unsigned)port, d->nupstream, d->nupstream == 1 ? "" : "s");
	return 0;
}

void
dns_update(struct dns_server *d, const Shoal__Endpoints *ep, const char *node_addr)
{
	struct dnsmsg_table t = {xcalloc(ep->n_names + 1, sizeof(struct dnsmsg_service)), 0};
	struct in_addr node = {0};

	if (node_addr)
		(void)inet_pton(AF_INET, node_addr, &node);
	for (size_t i = 0; i < ep->n_names; i++) {
		const Shoal__ServiceName *sn = ep->names[i];
		struct dnsmsg_service *s = &t.v[t.n];
		if (sn->name == NULL || sn->name[0] == '\0')
			continue;
		s->name = xstrdup(sn->name);
		for (char *c = s->name; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c + 32);
		if (sn->published)
			s->addr = node;
		else if (sn->vip && inet_pton(AF_INET, sn->vip, &s->addr) != 1)
			s->addr.s_addr = 0;
		s->tasks = xcalloc(sn->n_tasks + 1, sizeof(*s->tasks));
		for (size_t k = 0; k < sn->n_tasks; k++)
			if (sn->tasks[k]->ip &&
			    inet_pton(AF_INET, sn->tasks[k]->ip, &s->tasks[s->ntasks]) == 1)
				s->ntasks++;
		t.n++;
	}
	dnsmsg_table_sort(&t);
	dnsmsg_table_clear(&d->table);
	d->table = t;
	for (size_t i = 0; i < d->nomitted; i++)
		free(d->omitted[i]);
	free(d->omitted);
	d->omitted = xcalloc(ep->n_names + 1, sizeof(*d->omitted));
	d->nomitted = 0;
	for (size_t i = 0; i < ep->n_names; i++) {
		char name[256];
		if (ep->names[i]->tasks_omitted && ep->names[i]->name &&
		    dns_service_of(ep->names[i]->name, name, sizeof(name)))
			d->omitted[d->nomitted++] = xstrdup(name);
	}
	qsort(d->omitted, d->nomitted, sizeof(*d->omitted), cmp_str);
	d->gen = ep->generation;
	/* Queries whose tasks came (or whose service went): answered once the proxy serves
	 * this table (dns_applied). */
	for (size_t k = 0; k < DNS_MAX_HOLD; k++)
		if (d->hold[k].used && d->hold[k].ready_gen == 0 &&
		    !is_omitted(d, d->hold[k].service))
			d->hold[k].ready_gen = ep->generation ? ep->generation : 1;
}

void
dns_free(struct dns_server *d)
{
	close_listeners(d);
	for (size_t i = 0; i < DNS_MAX_TCP; i++)
		if (d->tcpc[i])
			tcp_close(d->tcpc[i], d);
	if (d->up_ev)
		event_free(d->up_ev);
	if (d->up_fd >= 0)
		close(d->up_fd);
	if (d->timer)
		event_free(d->timer);
	for (size_t k = 0; k < DNS_MAX_PENDING; k++)
		if (d->pending[k].used)
			pending_clear(&d->pending[k]);
	dnsmsg_table_clear(&d->table);
	for (size_t i = 0; i < d->nomitted; i++)
		free(d->omitted[i]);
	free(d->omitted);
	for (size_t i = 0; i < d->nsubs; i++)
		free(d->subs[i]);
	free(d->subs);
	memset(d, 0, sizeof(*d));
	d->udp_fd = d->up_fd = -1;
}
