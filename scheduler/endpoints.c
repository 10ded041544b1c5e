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

/* Every live service's name, VIP, healthy tasks and target ports (see vip.h). */
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
		for (size_t j = 0; j < svc->nslots; j++) {
			const struct slot *sl = &svc->slots[j];
			const struct task *ts[2] = {sl->cur, sl->next};
			for (int m = 0; m < 2; m++) {
				if (ts[m] == NULL || !endpoints_serves(ts[m]))
					continue;
				Shoal__Backend *b = xmalloc(sizeof(*b));
				shoal__backend__init(b);
				b->ip = svc->spec.network == MANIFEST_NETWORK_HOST
				            ? ts[m]->node->address
				            : (char *)ts[m]->ip;
				b->task_id = (char *)ts[m]->id;
				sn->tasks =
				    xrealloc(sn->tasks, (sn->n_tasks + 1) * sizeof(*sn->tasks));
				sn->tasks[sn->n_tasks++] = b;
			}
		}
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
		for (size_t k = 0; k < tb->names[i].n_tasks; k++)
			free(tb->names[i].tasks[k]);
		free(tb->names[i].tasks);
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
	bool svc_changed, nodes_changed = false, nodes_due;
	struct table tb, nt;
	uint8_t *frame;
	size_t len;

	if (!e->dirty)
		return;
	/*
	 * A build walks every slot of every service: at a million tasks that is tens of ms, and
	 * a burst of reports asks for one per pass. Rebuild at most once per 4 build times, so
	 * the table costs at most a fifth of the scheduler's CPU; small clusters (a build under
	 * 1 ms) are never held back. The change waits, it is not lost: dirty stays set.
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
	if (svc_changed || nodes_changed) {
		tb.ep.generation = ++e->generation;
		frame = pack_env(&tb.ep, &len);
		shoal_log(LOG_DEBUG, "endpoints generation %llu (%zu bytes%s)",
		          (unsigned long long)e->generation, len,
		          nodes_changed ? ", with nodes" : "");
		for (size_t i = 0; i < srv->nodes.n; i++)
			send_bytes(srv->nodes.v[i], frame, len);
		free(frame);
	}
	tb.ep.nodes = NULL;
	tb.ep.n_nodes = 0;
	free_table(&tb);
	if (nodes_due)
		free_table(&nt);
	e->next_build = now + 4 * (util_now_ms() - now);
}

void
endpoints_send_services(struct sched_server *srv, struct node *n)
{
	struct endpoints *e = &srv->endpoints;
	struct table tb;

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

bool
endpoints_drain(struct sched_server *srv, struct task *t)
{
	struct endpoints *e = &srv->endpoints;

	if (t->phase == TASK_PHASE_DRAINING)
		return true;
	/* Only a task some proxy (published port or VIP) may be sending to, or some DNS server
	 * may be naming, has anything to drain: every serving task, since every service has a
	 * name. */
	if (!endpoints_serves(t))
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

static bool
acked_everywhere(struct sched_server *srv, uint64_t gen)
{
	for (size_t i = 0; i < srv->nodes.n; i++) {
		const struct node *n = srv->nodes.v[i];
		if (n->status == NODE_READY && n->conn && n->endpoints_acked < gen)
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
		if (!timed_out &&
		    (t->drain_gen > e->generation || !acked_everywhere(srv, t->drain_gen))) {
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
	if (e->defer)
		event_free(e->defer);
	memset(e, 0, sizeof(*e));
}
