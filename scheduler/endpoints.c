#include "endpoints.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "err.h"
#include "log.h"
#include "reconcile_pass.h"
#include "server-t.h"
#include "service.h"
#include "task.h"
#include "shoal.pb-c.h"
#include "util.h"
#include "vip.h"

#define DRAIN_ACK_TIMEOUT_MS 2000

static bool
published(const struct service *svc)
{
	for (size_t i = 0; i < svc->spec.n_ports; i++)
		if (svc->spec.ports[i].published)
			return true;
	return false;
}

bool
endpoints_serves(const struct task *t)
{
	if (t->phase != TASK_PHASE_RUN || !task_healthy(t) || !t->bound || t->node == NULL ||
	    t->node->status != NODE_READY)
		return false;
	return t->svc->spec.network == MANIFEST_NETWORK_HOST || t->ip[0] != '\0';
}

void
endpoints_mark(struct sched_server *srv)
{
	srv->endpoints.dirty = true;
	reconcile_schedule(srv);
}

/* Every service's backends in one table (borrowed strings; freed by free_table). */
struct table {
	Shoal__Endpoints ep;
	Shoal__ServiceEndpoints *svcs;
	Shoal__ServiceEndpoints **svcp;
	Shoal__NodeRoute *routes;
	Shoal__NodeRoute **routep;
	char (*subnets)[32];
	Shoal__ServiceName *names; /* one per service, for the agents' DNS */
	Shoal__ServiceName **namep;
	char (*vips)[16];
};

/* A service on the host network listens on the node's own ports: a VIP listener on its
 * target port would clash with it, so its NAME is its tasks' addresses instead (dnsmsg.h). */
static bool
has_vip(const struct service *svc)
{
	return !published(svc) && svc->spec.network != MANIFEST_NETWORK_HOST;
}

/* svc's healthy tasks into sn (ip, task_id; port 0), in slot order. */
static void
add_name_tasks(Shoal__ServiceName *sn, const struct service *svc)
{
	for (size_t j = 0; j < svc->nslots; j++) {
		const struct slot *sl = &svc->slots[j];
		const struct task *ts[2] = {sl->cur, sl->next};
		for (int m = 0; m < 2; m++) {
			if (ts[m] == NULL || !endpoints_serves(ts[m]))
				continue;
			Shoal__Backend *b = xmalloc(sizeof(*b));
			shoal__backend__init(b);
			b->ip = svc->spec.network == MANIFEST_NETWORK_HOST ? ts[m]->node->address
			                                                   : (char *)ts[m]->ip;
			b->task_id = (char *)ts[m]->id;
			sn->tasks = xrealloc(sn->tasks, (sn->n_tasks + 1) * sizeof(*sn->tasks));
			sn->tasks[sn->n_tasks++] = b;
		}
	}
}

static void
free_name_tasks(Shoal__ServiceName *sn)
{
	for (size_t k = 0; k < sn->n_tasks; k++)
		free(sn->tasks[k]);
	free(sn->tasks);
	sn->tasks = NULL;
	sn->n_tasks = 0;
}

/* Every live service's name, VIP and target ports (see vip.h); the healthy tasks of the
 * published ones only (every node's proxy serves those), the others marked tasks_omitted. */
static void
build_names(struct sched_server *srv, struct table *tb)
{
	size_t n = srv->services.n, k = 0;
	struct vip_input *in = xcalloc(n ? n : 1, sizeof(*in));
	uint32_t *addr = xcalloc(n ? n : 1, sizeof(*addr));
	size_t nin = 0;

	for (size_t i = 0; i < n; i++) {
		const struct service *svc = srv->services.v[i];
		if (!svc->removed && has_vip(svc))
			in[nin++] = (struct vip_input){svc->name, svc->created_ms};
	}
	vip_assign(in, nin, addr);
	tb->names = xcalloc(n ? n : 1, sizeof(*tb->names));
	tb->namep = xcalloc(n ? n : 1, sizeof(*tb->namep));
	tb->vips = xcalloc(n ? n : 1, sizeof(*tb->vips));
	nin = 0;
	for (size_t i = 0; i < n; i++) {
		struct service *svc = srv->services.v[i];
		Shoal__ServiceName *sn = &tb->names[k];
		if (svc->removed)
			continue;
		shoal__service_name__init(sn);
		sn->name = svc->name;
		sn->published = published(svc);
		if (has_vip(svc)) {
			uint32_t a = addr[nin++];
			snprintf(tb->vips[k], sizeof(tb->vips[k]), "%u.%u.%u.%u", a >> 24,
			         (a >> 16) & 255, (a >> 8) & 255, a & 255);
			sn->vip = tb->vips[k];
			sn->vip_ports = xcalloc(svc->spec.n_ports + 1, sizeof(*sn->vip_ports));
			for (size_t p = 0; p < svc->spec.n_ports; p++)
				sn->vip_ports[sn->n_vip_ports++] = svc->spec.ports[p].target;
		}
		if (sn->published)
			add_name_tasks(sn, svc);
		else
			sn->tasks_omitted = true;
		tb->namep[k++] = sn;
	}
	tb->ep.names = tb->namep;
	tb->ep.n_names = k;
	free(in);
	free(addr);
}

static void
add_backend(Shoal__ServiceEndpoints *se, const struct task *t, uint16_t target)
{
	Shoal__Backend *b = xmalloc(sizeof(*b));

	shoal__backend__init(b);
	b->ip = t->svc->spec.network == MANIFEST_NETWORK_HOST ? t->node->address : (char *)t->ip;
	b->port = target;
	b->task_id = (char *)t->id;
	se->backends = xrealloc(se->backends, (se->n_backends + 1) * sizeof(*se->backends));
	se->backends[se->n_backends++] = b;
}

static void
build(struct sched_server *srv, struct table *tb, bool with_nodes)
{
	size_t nsvc = 0;

	memset(tb, 0, sizeof(*tb));
	shoal__endpoints__init(&tb->ep);
	for (size_t i = 0; i < srv->services.n; i++)
		for (size_t p = 0; p < srv->services.v[i]->spec.n_ports; p++)
			nsvc += srv->services.v[i]->spec.ports[p].published != 0;
	tb->svcs = xcalloc(nsvc ? nsvc : 1, sizeof(*tb->svcs));
	tb->svcp = xcalloc(nsvc ? nsvc : 1, sizeof(*tb->svcp));
	nsvc = 0;
	for (size_t i = 0; i < srv->services.n; i++) {
		struct service *svc = srv->services.v[i];
		if (svc->removed || !published(svc))
			continue;
		for (size_t p = 0; p < svc->spec.n_ports; p++) {
			const struct manifest_port *port = &svc->spec.ports[p];
			Shoal__ServiceEndpoints *se = &tb->svcs[nsvc];
			if (!port->published)
				continue;
			shoal__service_endpoints__init(se);
			se->name = svc->name;
			se->published_port = port->published;
			se->max_conns_per_replica = svc->spec.proxy.max_conns_per_replica;
			se->queue_timeout_ms = svc->spec.proxy.queue_timeout_ms;
			se->proxy_protocol = (uint32_t)svc->spec.proxy.protocol;
			se->proxy_mode = (uint32_t)svc->spec.proxy.mode;
			/* Slot order: every agent sees the same list, so rotations line up. */
			for (size_t k = 0; k < svc->nslots; k++) {
				const struct slot *sl = &svc->slots[k];
				if (sl->cur && endpoints_serves(sl->cur))
					add_backend(se, sl->cur, port->target);
				if (sl->next && endpoints_serves(sl->next))
					add_backend(se, sl->next, port->target);
			}
			tb->svcp[nsvc++] = se;
		}
	}
	tb->ep.services = tb->svcp;
	tb->ep.n_services = nsvc;
	tb->ep.nodes = NULL;
	build_names(srv, tb);
	if (!with_nodes || srv->no_routes)
		return;
	tb->routes = xcalloc(srv->nodes.n ? srv->nodes.n : 1, sizeof(*tb->routes));
	tb->routep = xcalloc(srv->nodes.n ? srv->nodes.n : 1, sizeof(*tb->routep));
	tb->subnets = xcalloc(srv->nodes.n ? srv->nodes.n : 1, sizeof(*tb->subnets));
	for (size_t i = 0; i < srv->nodes.n; i++) {
		struct node *n = srv->nodes.v[i];
		Shoal__NodeRoute *r = &tb->routes[tb->ep.n_nodes];
		/* A down node's subnet has no live containers worth routing to... but its route
		 * is harmless and stable: keep every known node, so routes do not flap. */
		shoal__node_route__init(r);
		r->name = n->name;
		r->address = n->address;
		r->subnet = nodes_subnet(&srv->nodes, n, tb->subnets[i], sizeof(tb->subnets[i]));
		tb->routep[tb->ep.n_nodes++] = r;
	}
	tb->ep.nodes = tb->routep;
}

static void
free_table(struct table *tb)
{
	for (size_t i = 0; i < tb->ep.n_services; i++) {
		for (size_t k = 0; k < tb->svcs[i].n_backends; k++)
			free(tb->svcs[i].backends[k]);
		free(tb->svcs[i].backends);
	}
	free(tb->svcs);
	free(tb->svcp);
	for (size_t i = 0; i < tb->ep.n_names; i++) {
		free_name_tasks(&tb->names[i]);
		free(tb->names[i].vip_ports);
	}
	free(tb->names);
	free(tb->namep);
	free(tb->vips);
	free(tb->routes);
	free(tb->routep);
	free(tb->subnets);
}

static uint8_t *
pack_env(Shoal__Endpoints *ep, size_t *len)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	uint8_t *buf;

	env.body_case = SHOAL__ENVELOPE__BODY_ENDPOINTS;
	env.endpoints = ep;
	*len = shoal__envelope__get_packed_size(&env);
	buf = xmalloc(*len);
	shoal__envelope__pack(&env, buf);
	return buf;
}

static void
send_bytes(struct node *n, const uint8_t *buf, size_t len)
{
	struct shoal_err err;

	if (n->conn == NULL || n->status != NODE_READY)
		return;
	/* The frame is a packed Envelope: rpc_send_bytes encrypts it as is. */
	if (rpc_send_bytes(n->conn, buf, len, &err) == -1)
		shoal_log(LOG_WARNING, "endpoints to %s: %s", n->name, err.msg);
}

/* Did what buf holds change since *last? Takes buf either way. */
static bool
changed(uint8_t **last, size_t *last_len, uint8_t *buf, size_t len)
{
	if (*last && len == *last_len && memcmp(buf, *last, len) == 0) {
		free(buf);
		return false;
	}
	free(*last);
	*last = buf;
	*last_len = len;
	return true;
}

static uint8_t *
pack_part(Shoal__Endpoints *ep, size_t *len)
{
	uint8_t *buf;

	*len = shoal__endpoints__get_packed_size(ep);
	buf = xmalloc(*len ? *len : 1);
	shoal__endpoints__pack(ep, buf);
	return buf;
}

/* ---- subscriptions: who gets an unpublished service's tasks ---- */

static int
sub_cmp(const char *node, const char *service, const struct endpoints_sub *b)
{
	int c = strcmp(node, b->node);

	return c ? c : strcmp(service, b->service);
}

/* The first sub not below (node, service). */
static size_t
subs_lower(const struct endpoints *e, const char *node, const char *service)
{
	size_t lo = 0, hi = e->nsubs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sub_cmp(node, service, &e->subs[mid]) > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* node's subs are e->subs[*lo, return). */
static size_t
node_subs(const struct endpoints *e, const char *node, size_t *lo)
{
	size_t hi;

	*lo = subs_lower(e, node, "");
	for (hi = *lo; hi < e->nsubs && strcmp(e->subs[hi].node, node) == 0; hi++)
		;
	return hi;
}

static void
clear_fresh(struct endpoints *e, size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi; i++) {
		if (e->subs[i].fresh) {
			e->subs[i].fresh = false;
			e->nfresh--;
		}
	}
}

/* Index of service in e->watch, or e->nwatch. */
static size_t
watch_find(const struct endpoints *e, const char *service)
{
	size_t lo = 0, hi = e->nwatch;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(service, e->watch[mid].service);
		if (c == 0)
			return mid;
		if (c > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return e->nwatch;
}

bool
endpoints_subscribed(const struct endpoints *e, const char *node, const char *service)
{
	size_t at = subs_lower(e, node, service);

	return at < e->nsubs && sub_cmp(node, service, &e->subs[at]) == 0;
}

void
endpoints_subscribe(struct sched_server *srv, struct node *n, char *const *names, size_t count)
{
	struct endpoints *e = &srv->endpoints;
	size_t lo, hi;

	if (n == NULL)
		return;
	for (size_t i = 0; i < count; i++) {
		const char *name = names[i];
		const struct service *svc;
		size_t at;
		/* Only a live service can be followed; a name that went away is answered by the
		 * node's DNS server from what it has. */
		if (name == NULL || name[0] == '\0' || strlen(name) > ENDPOINTS_NAME_MAX ||
		    (svc = services_find(&srv->services, name)) == NULL || svc->removed)
			continue;
		at = subs_lower(e, n->name, name);
		if (at < e->nsubs && sub_cmp(n->name, name, &e->subs[at]) == 0) {
			/* Asked again: it may have lost its view; send it at the next flush. */
			if (!e->subs[at].fresh) {
				e->subs[at].fresh = true;
				e->nfresh++;
			}
			continue;
		}
		hi = node_subs(e, n->name, &lo);
		if (hi - lo >= ENDPOINTS_SUBS_PER_NODE) {
			shoal_log(
			    LOG_WARNING,
			    "node %s: already follows %d services; not %.64s (its DNS answers "
			    "the VIP only)",
			    n->name, ENDPOINTS_SUBS_PER_NODE, name);
			continue;
		}
		if (e->nsubs == e->capsubs) {
			e->capsubs = e->capsubs ? e->capsubs * 2 : 16;
			e->subs = xrealloc(e->subs, e->capsubs * sizeof(*e->subs));
		}
		memmove(&e->subs[at + 1], &e->subs[at], (e->nsubs - at) * sizeof(*e->subs));
		e->subs[at] = (struct endpoints_sub){xstrdup(n->name), xstrdup(name), true};
		e->nsubs++;
		e->nfresh++;
		size_t w = watch_find(e, name), wat = 0;
		if (w == e->nwatch) {
			while (wat < e->nwatch && strcmp(e->watch[wat].service, name) < 0)
				wat++;
			e->watch = xrealloc(e->watch, (e->nwatch + 1) * sizeof(*e->watch));
			memmove(&e->watch[wat + 1], &e->watch[wat],
			        (e->nwatch - wat) * sizeof(*e->watch));
			e->watch[wat] = (struct endpoints_watch){.service = xstrdup(name)};
			e->nwatch++;
		}
		shoal_log(LOG_DEBUG, "node %s follows service %s", n->name, name);
	}
	if (e->nfresh)
		reconcile_schedule(srv);
}

/* Forget watch w and every sub of its service (the service is gone). */
static void
watch_drop(struct endpoints *e, size_t w)
{
	const char *name = e->watch[w].service;
	size_t k = 0;

	for (size_t i = 0; i < e->nsubs; i++) {
		if (strcmp(e->subs[i].service, name) == 0) {
			if (e->subs[i].fresh)
				e->nfresh--;
			free(e->subs[i].node);
			free(e->subs[i].service);
			continue;
		}
		e->subs[k++] = e->subs[i];
	}
	e->nsubs = k;
	free(e->watch[w].service);
	free(e->watch[w].packed);
	memmove(&e->watch[w], &e->watch[w + 1], (e->nwatch - w - 1) * sizeof(*e->watch));
	e->nwatch--;
}

/*
 * The entries of the watched services with their tasks, into full[] (one per watch, a name
 * and no tasks for a service published now: its base entry has them); sets each watch's
 * changed. Drops the watches of services gone. Returns whether any changed.
 */
static bool
watch_update(struct sched_server *srv, const struct table *tb, Shoal__ServiceName **fullp)
{
	struct endpoints *e = &srv->endpoints;
	bool any = false;
	Shoal__ServiceName *full;

	for (size_t w = 0; w < e->nwatch;) {
		const struct service *svc = services_find(&srv->services, e->watch[w].service);
		if (svc == NULL || svc->removed)
			watch_drop(e, w);
		else
			w++;
	}
	full = xcalloc(e->nwatch + 1, sizeof(*full));
	for (size_t w = 0; w < e->nwatch; w++) {
		struct endpoints_watch *wt = &e->watch[w];
		const Shoal__ServiceName *base = NULL;
		for (size_t k = 0; k < tb->ep.n_names && base == NULL; k++)
			if (strcmp(tb->ep.names[k]->name, wt->service) == 0)
				base = tb->ep.names[k];
		shoal__service_name__init(&full[w]);
		wt->changed = false;
		if (base == NULL || !base->tasks_omitted)
			continue;
		full[w] = *base;
		full[w].tasks_omitted = false;
		full[w].tasks = NULL;
		full[w].n_tasks = 0;
		add_name_tasks(&full[w], services_find(&srv->services, wt->service));
		size_t len = shoal__service_name__get_packed_size(&full[w]);
		uint8_t *buf = xmalloc(len ? len : 1);
		shoal__service_name__pack(&full[w], buf);
		wt->changed = changed(&wt->packed, &wt->len, buf, len);
		any |= wt->changed;
	}
	*fullp = full;
	return any;
}

/* n's frame: tb with its subscribed services' entries replaced by full ones (full[] as
 * watch_update made it, or NULL: built here). */
static uint8_t *
pack_view(struct sched_server *srv, const struct table *tb, const char *node,
          Shoal__ServiceName *full, size_t *len)
{
	struct endpoints *e = &srv->endpoints;
	Shoal__Endpoints ep = tb->ep;
	Shoal__ServiceName **namep = xcalloc(tb->ep.n_names + 1, sizeof(*namep));
	Shoal__ServiceName *own = NULL;
	size_t lo, hi = node_subs(e, node, &lo), nown = 0;
	uint8_t *buf;

	if (tb->ep.n_names)
		memcpy(namep, tb->ep.names, tb->ep.n_names * sizeof(*namep));
	if (full == NULL)
		own = xcalloc(hi - lo + 1, sizeof(*own));
	for (size_t k = 0; k < tb->ep.n_names; k++) {
		Shoal__ServiceName *sn = tb->ep.names[k];
		size_t at;
		if (!sn->tasks_omitted)
			continue;
		at = subs_lower(e, node, sn->name);
		if (at >= hi || sub_cmp(node, sn->name, &e->subs[at]) != 0)
			continue;
		if (full) {
			size_t w = watch_find(e, sn->name);
			if (w < e->nwatch && !full[w].tasks_omitted && full[w].name)
				namep[k] = &full[w];
			continue;
		}
		Shoal__ServiceName *f = &own[nown++];
		*f = *sn;
		f->tasks_omitted = false;
		f->tasks = NULL;
		f->n_tasks = 0;
		add_name_tasks(f, services_find(&srv->services, sn->name));
		namep[k] = f;
	}
	ep.names = namep;
	buf = pack_env(&ep, len);
	for (size_t i = 0; i < nown; i++)
		free_name_tasks(&own[i]);
	free(own);
	free(namep);
	return buf;
}

static void
free_full(struct endpoints *e, Shoal__ServiceName *full)
{
	for (size_t w = 0; w < e->nwatch; w++)
		free_name_tasks(&full[w]);
	free(full);
}

static void
endpoints_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	reconcile_schedule(arg);
}

void
endpoints_flush(struct sched_server *srv)
{
	struct endpoints *e = &srv->endpoints;
	int64_t now = util_now_ms();
	bool svc_changed, nodes_changed = false, nodes_due, watch_changed;
	struct table tb, nt;
	Shoal__ServiceName *full;
	uint8_t *frame, *shared = NULL;
	size_t len, shared_len = 0, nviews = 0;

	if (!e->dirty && e->nfresh == 0)
		return;
	/*
	 * A build walks every slot of every published or followed service: at a million tasks
	 * that is tens of ms, and a burst of reports asks for one per pass. Rebuild at most once
	 * per 4 build times, so the table costs at most a fifth of the scheduler's CPU; small
	 * clusters (a build under 1 ms) are never held back. The change waits, it is not lost:
	 * dirty stays set.
	 */
	if (now < e->next_build) {
		if (e->defer == NULL)
			e->defer = evtimer_new(srv->base, endpoints_defer_cb, srv);
		if (!evtimer_pending(e->defer, NULL)) {
			int64_t left = e->next_build - now;
			struct timeval tv = {left / 1000, (left % 1000) * 1000};
			evtimer_add(e->defer, &tv);
		}
		return;
	}
	e->dirty = false;
	/* Services: every change goes out at once. */
	build(srv, &tb, false);
	frame = pack_part(&tb.ep, &len);
	svc_changed = changed(&e->content, &e->content_len, frame, len);
	watch_changed = watch_update(srv, &tb, &full);
	/* Nodes: only when due; until then an agent keeps the routes it has. */
	nodes_due = now >= e->next_nodes;
	if (nodes_due) {
		Shoal__Endpoints only = SHOAL__ENDPOINTS__INIT;
		build(srv, &nt, true);
		only.nodes = nt.ep.nodes;
		only.n_nodes = nt.ep.n_nodes;
		frame = pack_part(&only, &len);
		nodes_changed = changed(&e->nodes_content, &e->nodes_content_len, frame, len);
		e->nodes_waiting = false;
		if (nodes_changed) {
			tb.ep.nodes = nt.ep.nodes;
			tb.ep.n_nodes = nt.ep.n_nodes;
			e->next_nodes =
			    now + (srv->nodes.n * 2 > 1000 ? (int64_t)srv->nodes.n * 2 : 1000);
		}
	} else {
		e->nodes_waiting = true;
	}
	/*
	 * A change of what every node sees goes to every node; a change of a followed service
	 * only to its followers (a node that is sent nothing keeps the view it acknowledged, and
	 * the drains of that service wait for the followers only: acked_by_viewers). A new
	 * follower gets its view at the current generation.
	 */
	if (svc_changed || nodes_changed || watch_changed)
		++e->generation;
	tb.ep.generation = e->generation;
	if (svc_changed || nodes_changed)
		shared = pack_env(&tb.ep, &shared_len);
	for (size_t i = 0; i < srv->nodes.n; i++) {
		struct node *n = srv->nodes.v[i];
		size_t lo, hi = node_subs(e, n->name, &lo);
		bool need = svc_changed || nodes_changed;
		if (hi == lo) {
			if (shared)
				send_bytes(n, shared, shared_len);
			continue;
		}
		for (size_t k = lo; k < hi && !need; k++) {
			size_t w = watch_find(e, e->subs[k].service);
			need = e->subs[k].fresh || (w < e->nwatch && e->watch[w].changed);
		}
		clear_fresh(e, lo, hi);
		if (!need || n->conn == NULL || n->status != NODE_READY)
			continue;
		frame = pack_view(srv, &tb, n->name, full, &len);
		send_bytes(n, frame, len);
		free(frame);
		nviews++;
	}
	/* Subs of nodes not in the registry (removed) have nobody to go to. */
	for (size_t i = 0; i < e->nsubs && e->nfresh; i++)
		clear_fresh(e, i, i + 1);
	if (shared || nviews)
		shoal_log(LOG_DEBUG, "endpoints generation %llu (%zu bytes to all%s, %zu views)",
		          (unsigned long long)e->generation, shared_len,
		          nodes_changed ? ", with nodes" : "", nviews);
	free(shared);
	free_full(e, full);
	tb.ep.nodes = NULL;
	tb.ep.n_nodes = 0;
	free_table(&tb);
	if (nodes_due)
		free_table(&nt);
	e->next_build = now + 4 * (util_now_ms() - now);
}

/* n follows services: its own frame, built now (few nodes do). */
static void
send_view(struct sched_server *srv, struct node *n, bool with_nodes)
{
	struct endpoints *e = &srv->endpoints;
	struct table tb;
	uint8_t *frame;
	size_t len, lo, hi = node_subs(e, n->name, &lo);

	build(srv, &tb, with_nodes);
	tb.ep.generation = e->generation;
	frame = pack_view(srv, &tb, n->name, NULL, &len);
	send_bytes(n, frame, len);
	free(frame);
	free_table(&tb);
	clear_fresh(e, lo, hi);
}

void
endpoints_send_services(struct sched_server *srv, struct node *n)
{
	struct endpoints *e = &srv->endpoints;
	struct table tb;
	size_t lo, hi = node_subs(e, n->name, &lo);

	if (hi > lo) {
		send_view(srv, n, false);
		return;
	}
	/* Built once per generation: after a stall thousands of nodes resume at once, and a
	 * build per node (a walk of every task) made the stall longer and took more nodes
	 * down. What changed since that generation reaches the node with the next one. */
	if (e->svc_frame == NULL || e->svc_frame_gen != e->generation) {
		build(srv, &tb, false);
		tb.ep.generation = e->generation;
		free(e->svc_frame);
		e->svc_frame = pack_env(&tb.ep, &e->svc_frame_len);
		e->svc_frame_gen = e->generation;
		free_table(&tb);
	}
	send_bytes(n, e->svc_frame, e->svc_frame_len);
}

void
endpoints_send(struct sched_server *srv, struct node *n)
{
	struct endpoints *e = &srv->endpoints;
	int64_t now = util_now_ms();
	struct table tb;
	size_t lo, hi = node_subs(e, n->name, &lo);

	if (hi > lo) {
		send_view(srv, n, true);
		return;
	}
	/* The full table, rebuilt at most once a second during a registration storm (the next
	 * node-list broadcast brings whatever joined since). */
	if (e->frame == NULL || e->frame_gen != e->generation || now - e->frame_built >= 1000) {
		build(srv, &tb, true);
		tb.ep.generation = e->generation;
		free(e->frame);
		e->frame = pack_env(&tb.ep, &e->frame_len);
		e->frame_gen = e->generation;
		e->frame_built = now;
		free_table(&tb);
	}
	send_bytes(n, e->frame, e->frame_len);
}

void
endpoints_ack(struct sched_server *srv, struct node *n, uint64_t gen)
{
	if (gen <= n->endpoints_acked)
		return;
	n->endpoints_acked = gen;
	if (srv->endpoints.ndraining)
		endpoints_check_drains(srv);
}

/* Is svc's task list in some node's Endpoints? */
static bool
viewed(const struct endpoints *e, const struct service *svc)
{
	return published(svc) || watch_find(e, svc->name) < e->nwatch;
}

bool
endpoints_viewed(struct sched_server *srv, const struct service *svc)
{
	return viewed(&srv->endpoints, svc);
}

bool
endpoints_drain(struct sched_server *srv, struct task *t)
{
	struct endpoints *e = &srv->endpoints;

	if (t->phase == TASK_PHASE_DRAINING)
		return true;
	/* Only a task some proxy (published port or VIP) may be sending to, or some DNS server
	 * may be naming, has anything to drain: a serving task of a published service, or of
	 * one some node follows. */
	if (!endpoints_serves(t) || !viewed(e, t->svc))
		return false;
	task_phase_set(t, TASK_PHASE_DRAINING);
	/* The next generation is the first without it: endpoints_flush runs in this pass. */
	t->drain_gen = e->generation + 1;
	t->drain_deadline = util_now_ms() + DRAIN_ACK_TIMEOUT_MS;
	if (e->ndraining == e->capdraining) {
		e->capdraining = e->capdraining ? e->capdraining * 2 : 16;
		e->draining = xrealloc(e->draining, e->capdraining * sizeof(*e->draining));
	}
	e->draining[e->ndraining++] = t;
	endpoints_mark(srv);
	return true;
}

/* Has every ready node that may hold t's service's tasks acknowledged gen? A published
 * service is on every node; another one on its followers only (the others are not sent the
 * generations that change it alone). */
static bool
acked_by_viewers(struct sched_server *srv, const struct service *svc, uint64_t gen)
{
	bool all = published(svc);

	for (size_t i = 0; i < srv->nodes.n; i++) {
		const struct node *n = srv->nodes.v[i];
		if (n->status == NODE_READY && n->conn && n->endpoints_acked < gen &&
		    (all || endpoints_subscribed(&srv->endpoints, n->name, svc->name)))
			return false;
	}
	return true;
}

void
endpoints_check_drains(struct sched_server *srv)
{
	struct endpoints *e = &srv->endpoints;
	int64_t now = util_now_ms();

	for (size_t i = 0; i < e->ndraining;) {
		struct task *t = e->draining[i];
		bool timed_out = now >= t->drain_deadline;
		/* A generation not built yet cannot have been acknowledged. */
		if (!timed_out && (t->drain_gen > e->generation ||
		                   !acked_by_viewers(srv, t->svc, t->drain_gen))) {
			i++;
			continue;
		}
		if (timed_out)
			shoal_log(LOG_INFO,
			          "task %s: not every proxy confirmed it left in %d ms; "
			          "stopping it anyway",
			          t->name, DRAIN_ACK_TIMEOUT_MS);
		task_phase_set(t, TASK_PHASE_SHUTDOWN);
		e->draining[i] = e->draining[--e->ndraining];
		if (t->bound)
			reconcile_mark_node(srv, t->node);
	}
}

void
endpoints_forget(struct sched_server *srv, struct task *t)
{
	struct endpoints *e = &srv->endpoints;

	if (t->phase != TASK_PHASE_DRAINING)
		return;
	for (size_t i = 0; i < e->ndraining; i++) {
		if (e->draining[i] == t) {
			e->draining[i] = e->draining[--e->ndraining];
			break;
		}
	}
	task_phase_set(t, TASK_PHASE_SHUTDOWN);
}

void
endpoints_free(struct endpoints *e)
{
	free(e->content);
	free(e->nodes_content);
	free(e->frame);
	free(e->svc_frame);
	free(e->draining);
	for (size_t i = 0; i < e->nsubs; i++) {
		free(e->subs[i].node);
		free(e->subs[i].service);
	}
	free(e->subs);
	for (size_t w = 0; w < e->nwatch; w++) {
		free(e->watch[w].service);
		free(e->watch[w].packed);
	}
	free(e->watch);
	if (e->defer)
		event_free(e->defer);
	memset(e, 0, sizeof(*e));
}
