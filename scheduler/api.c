#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "err.h"
#include "log.h"
#include "logs.h"
#include "manifest.h"
#include "reconcile.h"
#include "update.h"
#include "server.h"
#include "shoal.pb-c.h"
#include "util.h"

static const char *
body_name(Shoal__Envelope__BodyCase c)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field(&shoal__envelope__descriptor, (unsigned)c);

	return f ? f->name : "message";
}

/*
 * Every reply goes through here. A request is never answered with silence: a reply too big
 * for one frame (a listing of a huge cluster) is replaced by an error reply with the same id,
 * so the client fails at once with a reason instead of waiting for its timeout.
 */
static void
send_or_log(struct sched_conn *sc, Shoal__Envelope *env)
{
	size_t max = sc->srv->limits.max_frame ? sc->srv->limits.max_frame : RPC_DEFAULT_MAX_FRAME;
	size_t len = shoal__envelope__get_packed_size(env);
	struct shoal_err err;

	if (len > max && env->body_case != SHOAL__ENVELOPE__BODY_ERROR) {
		shoal_log(LOG_WARNING,
		          "reply to %s: %s of %zu bytes exceeds the frame limit of %zu",
		          rpc_conn_peer(sc->rpc), body_name(env->body_case), len, max);
		api_reply_error(sc, env->id, EMSGSIZE,
		                "the reply (%s, %zu bytes) exceeds the frame limit of %zu bytes",
		                body_name(env->body_case), len, max);
		return;
	}
	if (rpc_send(sc->rpc, env, &err) == -1)
		shoal_log(LOG_WARNING, "reply to %s: %s", rpc_conn_peer(sc->rpc), err.msg);
}

void
api_reply_error(struct sched_conn *sc, uint64_t id, unsigned code, const char *fmt, ...)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Error e = SHOAL__ERROR__INIT;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e.code = code;
	e.message = msg;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_ERROR;
	env.error = &e;
	send_or_log(sc, &env);
}

/* Node names become hostnames, file names and log keys: keep them to a safe alphabet. */
static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static void
handle_register(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__Register *r = env->register_;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__RegisterReply rr = SHOAL__REGISTER_REPLY__INIT;
	cleanup_free char *labels = NULL;
	struct shoal_err err;
	struct node *n;
	bool was_ready;
	char subnet[32], mem[32];

	if (!valid_name(r->node_name)) {
		api_reply_error(sc, env->id, EINVAL,
		                "invalid node name \"%.64s\" (letters, digits, '-', '_', '.')",
		                r->node_name);
		return;
	}
	/* One session is one node: a second name on it would leave the first node pointing at
	 * this session after it closes (only the last one is unlinked), a use after free. */
	if (sc->node && strcmp(sc->node->name, r->node_name) != 0) {
		api_reply_error(sc, env->id, EINVAL,
		                "this session registered node %s: one node per connection",
		                sc->node->name);
		return;
	}
	labels = nodes_labels_join(r->labels, r->n_labels, &err);
	if (labels == NULL) {
		shoal_log(LOG_WARNING, "register %.64s from %s refused: %s", r->node_name,
		          rpc_conn_peer(sc->rpc), err.msg);
		api_reply_error(sc, env->id, EINVAL, "register refused: %s", err.msg);
		return;
	}
	n = nodes_register(&srv->nodes, &srv->store, r->node_name, r->address, labels,
	                   r->capacity ? (int64_t)r->capacity->cpu_millis : 0,
	                   r->capacity ? (int64_t)r->capacity->memory_bytes : 0, &err);
	if (n == NULL) {
		shoal_log(LOG_ERR, "register %s from %s: %s", r->node_name, rpc_conn_peer(sc->rpc),
		          err.msg);
		api_reply_error(sc, env->id, EIO, "%s", err.msg);
		return;
	}
	/* A node that reconnects before its old session noticed the loss replaces it. */
	if (n->conn && n->conn != sc->rpc) {
		for (struct sched_conn *o = srv->conns; o; o = o->next) {
			if (o->rpc == n->conn) {
				shoal_log(LOG_INFO, "node %s: new session replaces the old one",
				          n->name);
				o->node = NULL;
				sched_conn_drop(o);
				break;
			}
		}
	}
	was_ready = n->status == NODE_READY;
	n->conn = sc->rpc;
	sc->node = n;
	n->status = NODE_READY;
	n->last_seen = util_now_ms();
	n->last_seen_wall = util_wall_ms();
	nodes_subnet(&srv->nodes, n, subnet, sizeof(subnet));
	if (!was_ready)
		shoal_log(LOG_INFO,
		          "node %s ready id=%s address=%s subnet=%s cpus=%.2f memory=%s labels=%s",
		          n->name, n->id, n->address, subnet, (double)n->cpu_millis / 1000.0,
		          util_format_bytes(n->memory_bytes, mem, sizeof(mem)),
		          n->labels[0] ? n->labels : "-");
	reconcile_node_registered(srv, n, r->tasks_running, r->n_tasks_running);
	rr.node_id = n->id;
	rr.container_subnet = subnet;
	rr.heartbeat_interval_ms = srv->heartbeat_ms;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_REGISTER_REPLY;
	reply.register_reply = &rr;
	send_or_log(sc, &reply);
	/* Its proxy and routes start from the current table; acknowledgements restart too. */
	n->endpoints_acked = 0;
	endpoints_send(srv, n);
}

static void
handle_heartbeat(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__Heartbeat *hb = env->heartbeat;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__HeartbeatReply hr = SHOAL__HEARTBEAT_REPLY__INIT;
	struct node *n = sc->node;

	if (n == NULL) {
		api_reply_error(sc, env->id, EPROTO, "heartbeat before register");
		return;
	}
	n->last_seen = util_now_ms();
	n->last_seen_wall = util_wall_ms();
	if (hb->usage) {
		n->used_cpu_millis = (int64_t)hb->usage->cpu_millis;
		n->used_memory_bytes = (int64_t)hb->usage->memory_bytes;
	}
	if (hb->endpoints_generation)
		endpoints_ack(sc->srv, n, hb->endpoints_generation);
	if (hb->n_proxy_stats || n->npstats) {
		struct node_stat *v = xcalloc(hb->n_proxy_stats + 1, sizeof(*v));
		for (size_t i = 0; i < hb->n_proxy_stats; i++) {
			const Shoal__ServiceStats *p = hb->proxy_stats[i];
			v[i] = (struct node_stat){
			    .service = xstrdup(p->service),
			    .backend = xstrdup(p->backend),
			    .task_id = xstrdup(p->task_id),
			    .connections = p->connections,
			    .active = p->active,
			    .bytes_in = p->bytes_in,
			    .bytes_out = p->bytes_out,
			    .connect_failures = p->connect_failures,
			    .retries = p->retries,
			};
		}
		nodes_set_stats(n, v, hb->n_proxy_stats);
	}
	for (size_t i = 0; i < hb->n_task_status_changes; i++)
		reconcile_task_status(sc->srv, n, hb->task_status_changes[i]);
	if (n->status != NODE_READY) {
		n->status = NODE_READY;
		shoal_log(LOG_INFO, "node %s ready (heartbeats resumed)", n->name);
		/* While it was down its tasks were replaced elsewhere: its set has changed, and
		 * its proxy's table may be stale. It kept its routes: services only (a full table
		 * per resumed node would cost O(nodes) each in a storm of them). */
		reconcile_mark_node(sc->srv, n);
		endpoints_send_services(sc->srv, n);
	}
	/* The reply lets the agent tell a dead scheduler from a quiet one. */
	hr.heartbeat_interval_ms = sc->srv->heartbeat_ms;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY;
	reply.heartbeat_reply = &hr;
	send_or_log(sc, &reply);
}

static Shoal__Label **
labels_split(const char *s, size_t *n)
{
	cleanup_free char *copy = xstrdup(s);
	Shoal__Label **v = NULL;
	char *save = NULL;

	*n = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		Shoal__Label *l = xmalloc(sizeof(*l));
		shoal__label__init(l);
		if (eq)
			*eq = '\0';
		l->key = xstrdup(tok);
		l->value = xstrdup(eq ? eq + 1 : "");
		v = xrealloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = l;
	}
	return v;
}

static void
handle_list_nodes(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ListNodesReply lr = SHOAL__LIST_NODES_REPLY__INIT;
	size_t count = srv->nodes.n;
	Shoal__NodeInfo *infos = xcalloc(count, sizeof(*infos));
	Shoal__Capacity *caps = xcalloc(count, sizeof(*caps));
	Shoal__Usage *usages = xcalloc(count, sizeof(*usages));
	char(*subnets)[32] = xcalloc(count, sizeof(*subnets));

	lr.nodes = xcalloc(count, sizeof(*lr.nodes));
	lr.n_nodes = count;
	for (size_t i = 0; i < count; i++) {
		const struct node *n = srv->nodes.v[i];
		Shoal__NodeInfo *ni = &infos[i];
		shoal__node_info__init(ni);
		shoal__capacity__init(&caps[i]);
		shoal__usage__init(&usages[i]);
		ni->id = (char *)n->id;
		ni->name = n->name;
		ni->address = n->address;
		ni->status = n->status == NODE_READY  ? "ready"
		             : n->status == NODE_DOWN ? "down"
		                                      : "unknown";
		ni->availability = n->drain ? "drain" : "active";
		caps[i].cpu_millis = (uint64_t)n->cpu_millis;
		caps[i].memory_bytes = (uint64_t)n->memory_bytes;
		usages[i].cpu_millis = (uint64_t)n->used_cpu_millis;
		usages[i].memory_bytes = (uint64_t)n->used_memory_bytes;
		ni->capacity = &caps[i];
		ni->usage = &usages[i];
		ni->tasks = n->ntasks;
		ni->subnet = nodes_subnet(&srv->nodes, n, subnets[i], sizeof(subnets[i]));
		ni->created_ms = n->created_ms;
		ni->last_seen_ms = n->last_seen_wall;
		ni->labels = labels_split(n->labels, &ni->n_labels);
		lr.nodes[i] = ni;
	}
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_NODES_REPLY;
	reply.list_nodes_reply = &lr;
	send_or_log(sc, &reply);
	for (size_t i = 0; i < count; i++) {
		for (size_t j = 0; j < infos[i].n_labels; j++) {
			free(infos[i].labels[j]->key);
			free(infos[i].labels[j]->value);
			free(infos[i].labels[j]);
		}
		free(infos[i].labels);
	}
	free(lr.nodes);
	free(infos);
	free(caps);
	free(usages);
	free(subnets);
}

static void reply_ok(struct sched_conn *sc, uint64_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply_ok(struct sched_conn *sc, uint64_t id, const char *fmt, ...)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Ok ok = SHOAL__OK__INIT;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ok.message = msg;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_OK;
	env.ok = &ok;
	send_or_log(sc, &env);
}

static void
handle_task_report(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__TaskReport *tr = env->task_report;

	if (sc->node == NULL)
		return;
	sc->node->last_seen = util_now_ms();
	for (size_t i = 0; i < tr->n_statuses; i++)
		reconcile_task_status(sc->srv, sc->node, tr->statuses[i]);
}

/* Two specs that differ only in their replica count: scaling, not an update. */
static bool
same_but_replicas(const struct service_spec *a, const struct service_spec *b)
{
	struct service_spec tmp;
	bool eq;

	manifest_spec_copy(&tmp, b);
	tmp.replicas = a->replicas;
	eq = manifest_spec_equal(a, &tmp);
	manifest_spec_free(&tmp);
	return eq;
}

static void
handle_apply(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__Apply *ap = env->apply;
	size_t n = ap->n_specs_json;
	struct service_spec *specs = xcalloc(n ? n : 1, sizeof(*specs));
	Shoal__ServiceChange *changes = xcalloc(n ? n : 1, sizeof(*changes));
	Shoal__ServiceChange **cp = xcalloc(n ? n : 1, sizeof(*cp));
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ApplyReply ar = SHOAL__APPLY_REPLY__INIT;
	struct shoal_err err;
	char problem[320] = "";
	size_t parsed = 0;
	int64_t now = util_wall_ms();

	/* Validate everything first: an apply is all or nothing. */
	for (; parsed < n; parsed++) {
		if (manifest_spec_from_json(ap->specs_json[parsed], &specs[parsed], &err) == -1) {
			snprintf(problem, sizeof(problem), "spec %zu: %.256s", parsed + 1, err.msg);
			break;
		}
		if (!valid_name(specs[parsed].name) || specs[parsed].image == NULL ||
		    specs[parsed].image[0] == '\0') {
			snprintf(problem, sizeof(problem),
			         "spec %zu: a service needs a name and an image", parsed + 1);
			parsed++;
			break;
		}
	}
	for (size_t i = 0; problem[0] == '\0' && i < n; i++) {
		for (size_t j = 0; j < i && problem[0] == '\0'; j++)
			if (strcmp(specs[i].name, specs[j].name) == 0)
				snprintf(problem, sizeof(problem), "service %s given twice",
				         specs[i].name);
		/* A published port belongs to one service cluster-wide: every node listens on it.
		 */
		for (size_t p = 0; p < specs[i].n_ports && problem[0] == '\0'; p++) {
			uint16_t port = specs[i].ports[p].published;
			if (port == 0)
				continue;
			for (size_t k = 0; k < srv->services.n && problem[0] == '\0'; k++) {
				const struct service *o = srv->services.v[k];
				if (o->removed || strcmp(o->name, specs[i].name) == 0)
					continue;
				for (size_t q = 0; q < o->spec.n_ports; q++)
					if (o->spec.ports[q].published == port)
						snprintf(problem, sizeof(problem),
						         "service %s: published port %u is already "
						         "used by service %s",
						         specs[i].name, port, o->name);
			}
			for (size_t j = 0; j < i && problem[0] == '\0'; j++)
				for (size_t q = 0; q < specs[j].n_ports; q++)
					if (specs[j].ports[q].published == port)
						snprintf(problem, sizeof(problem),
						         "services %s and %s both publish port %u",
						         specs[j].name, specs[i].name, port);
		}
	}
	if (problem[0]) {
		api_reply_error(sc, env->id, EINVAL, "apply refused, nothing changed: %s", problem);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct service *svc = services_find(&srv->services, specs[i].name);
		const char *action;
		cp[i] = &changes[i];
		shoal__service_change__init(&changes[i]);
		changes[i].name = specs[i].name;
		if (svc == NULL) {
			svc = service_new(specs[i].name, now);
			svc->version = 1;
			service_set_spec(svc, &specs[i]);
			services_add(&srv->services, svc);
			action = "created";
		} else if (!svc->removed && manifest_spec_equal(&svc->spec, &specs[i])) {
			action = "unchanged";
		} else if (!svc->removed && same_but_replicas(&svc->spec, &specs[i])) {
			svc->spec.replicas = specs[i].replicas;
			free(svc->spec_json);
			svc->spec_json = manifest_spec_to_json(&svc->spec);
			svc->updated_ms = now;
			action = "scaled";
		} else {
			free(svc->prev_spec_json);
			svc->prev_spec_json = svc->removed ? NULL : xstrdup(svc->spec_json);
			/* Versions only grow (a rollback reuses an older number, so the next one
			 * must clear both); a service being removed comes back fresh. */
			uint64_t top =
			    svc->version > svc->prev_version ? svc->version : svc->prev_version;
			svc->prev_version = svc->removed ? 0 : svc->version;
			svc->version = top + 1;
			if (!svc->removed)
				update_begin(srv, svc);
			svc->removed = false;
			service_set_spec(svc, &specs[i]);
			svc->updated_ms = now;
			action = "updated";
		}
		changes[i].name = svc->name;
		changes[i].action = (char *)action;
		if (strcmp(action, "unchanged") != 0) {
			shoal_log(LOG_INFO, "service %s %s: version=%llu replicas=%u image=%s",
			          svc->name, action, (unsigned long long)svc->version,
			          svc->spec.replicas, svc->spec.image);
			reconcile_persist_service(srv, svc);
			reconcile_mark(srv, svc);
		}
	}
	ar.changes = cp;
	ar.n_changes = n;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_APPLY_REPLY;
	reply.apply_reply = &ar;
	send_or_log(sc, &reply);
out:
	for (size_t i = 0; i < parsed; i++)
		manifest_spec_free(&specs[i]);
	free(specs);
	free(changes);
	free(cp);
}

/* Sum every node's counters for svc: the total first, then one line per backend task. */
static Shoal__ServiceStats **
service_stats(struct sched_server *srv, const char *svc, size_t *count)
{
	Shoal__ServiceStats **v = NULL;
	size_t n = 0;

	for (size_t i = 0; i < srv->nodes.n; i++) {
		const struct node *nd = srv->nodes.v[i];
		for (size_t k = 0; k < nd->npstats; k++) {
			const struct node_stat *st = &nd->pstats[k];
			Shoal__ServiceStats *o = NULL;
			if (strcmp(st->service, svc) != 0)
				continue;
			for (size_t j = 0; j < n && o == NULL; j++)
				if (strcmp(v[j]->task_id, st->task_id) == 0 &&
				    strcmp(v[j]->backend, st->backend) == 0)
					o = v[j];
			if (o == NULL) {
				o = xmalloc(sizeof(*o));
				shoal__service_stats__init(o);
				o->service = (char *)svc;
				o->backend = st->backend;
				o->task_id = st->task_id;
				v = xrealloc(v, (n + 1) * sizeof(*v));
				/* The total stays first. */
				if (st->task_id[0] == '\0' && n) {
					memmove(v + 1, v, n * sizeof(*v));
					v[0] = o;
				} else {
					v[n] = o;
				}
				n++;
			}
			o->connections += st->connections;
			o->active += st->active;
			o->bytes_in += st->bytes_in;
			o->bytes_out += st->bytes_out;
			o->connect_failures += st->connect_failures;
			o->retries += st->retries;
		}
	}
	*count = n;
	return v;
}

static void
handle_proxy_hint(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__ProxyHint *h = env->proxy_hint;
	struct task *t = task_map_get(&sc->srv->tasks, h->task_id);

	/* A hint, not a verdict: the task's health check decides whether it is replaced. */
	shoal_log(LOG_INFO, "hint: the proxy on %s could not reach %s (task %s, %s): %s",
	          sc->node ? sc->node->name : "?", h->backend, t ? t->name : h->task_id, h->service,
	          h->reason);
}

static void
handle_list_services(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const char *only = env->list_services->name;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ListServicesReply lr = SHOAL__LIST_SERVICES_REPLY__INIT;
	size_t n = srv->services.n, k = 0;
	Shoal__ServiceInfo *infos = xcalloc(n ? n : 1, sizeof(*infos));
	char **ustates = xcalloc(n ? n : 1, sizeof(*ustates));

	lr.services = xcalloc(n ? n : 1, sizeof(*lr.services));
	for (size_t i = 0; i < n; i++) {
		const struct service *svc = srv->services.v[i];
		Shoal__ServiceInfo *si = &infos[k];
		if (only && only[0] && strcmp(only, svc->name) != 0)
			continue;
		shoal__service_info__init(si);
		si->name = svc->name;
		si->spec_json = svc->spec_json;
		si->version = svc->version;
		si->replicas_desired = svc->removed ? 0 : svc->spec.replicas;
		si->replicas_running = service_running(svc);
		si->created_ms = svc->created_ms;
		si->updated_ms = svc->updated_ms;
		ustates[k] = svc->removed ? xstrdup("removing") : update_text(svc);
		si->update_state = ustates[k];
		si->prev_spec_json = svc->prev_spec_json ? svc->prev_spec_json : "";
		if (env->list_services->stats)
			si->stats = service_stats(srv, svc->name, &si->n_stats);
		lr.services[k++] = si;
	}
	if (only && only[0] && k == 0) {
		api_reply_error(sc, env->id, ENOENT, "no such service: %s", only);
		goto out;
	}
	lr.n_services = k;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_SERVICES_REPLY;
	reply.list_services_reply = &lr;
	send_or_log(sc, &reply);
out:
	for (size_t i = 0; i < k; i++) {
		free(ustates[i]);
		for (size_t j = 0; j < infos[i].n_stats; j++)
			free(infos[i].stats[j]);
		free(infos[i].stats);
	}
	free(ustates);
	free(lr.services);
	free(infos);
}

struct task_list {
	Shoal__TaskInfo *infos;
	Shoal__TaskInfo **ptrs;
	size_t n, cap;
};

static void
add_task_info(struct task_list *l, const struct task *t)
{
	Shoal__TaskInfo *ti;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->infos = xrealloc(l->infos, l->cap * sizeof(*l->infos));
	}
	ti = &l->infos[l->n++];
	shoal__task_info__init(ti);
	ti->id = (char *)t->id;
	ti->name = t->name;
	ti->service = t->svc->name;
	ti->slot = t->slot;
	ti->node = t->node ? t->node->name : "";
	ti->desired = (char *)task_desired_name(t->desired);
	ti->state = (Shoal__TaskState)t->state;
	ti->state_since_ms = t->state_since;
	ti->ip = (char *)t->ip;
	ti->message = t->message ? t->message : "";
	ti->exit_code = t->exit_code;
	ti->version = t->version;
	ti->started_at_ms = t->started_at;
	ti->health = t->health ? t->health : "";
}

static void
handle_list_tasks(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__ListTasks *lt = env->list_tasks;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ListTasksReply lr = SHOAL__LIST_TASKS_REPLY__INIT;
	struct task_list l = {0};
	bool found = false;

	for (size_t i = 0; i < srv->services.n; i++) {
		const struct service *svc = srv->services.v[i];
		if (lt->service && lt->service[0] && strcmp(lt->service, svc->name) != 0)
			continue;
		found = true;
		for (size_t j = 0; j < svc->nslots; j++) {
			const struct slot *sl = &svc->slots[j];
			if (sl->cur)
				add_task_info(&l, sl->cur);
			if (sl->next)
				add_task_info(&l, sl->next);
			for (size_t k = 0; k < sl->nstopping; k++)
				add_task_info(&l, sl->stopping[k]);
			for (size_t k = 0; lt->all && k < SLOT_HISTORY; k++)
				if (sl->history[k])
					add_task_info(&l, sl->history[k]);
		}
	}
	if (lt->service && lt->service[0] && !found) {
		api_reply_error(sc, env->id, ENOENT, "no such service: %s", lt->service);
		free(l.infos);
		return;
	}
	l.ptrs = xcalloc(l.n ? l.n : 1, sizeof(*l.ptrs));
	for (size_t i = 0; i < l.n; i++)
		l.ptrs[i] = &l.infos[i];
	lr.tasks = l.ptrs;
	lr.n_tasks = l.n;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_TASKS_REPLY;
	reply.list_tasks_reply = &lr;
	send_or_log(sc, &reply);
	free(l.infos);
	free(l.ptrs);
}

static void
handle_scale(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__ScaleRequest *sr = env->scale;

	for (size_t i = 0; i < sr->n_scales; i++) {
		struct service *svc = services_find(&srv->services, sr->scales[i]->service);
		if (svc == NULL || svc->removed) {
			api_reply_error(sc, env->id, ENOENT, "no such service: %s (nothing scaled)",
			                sr->scales[i]->service);
			return;
		}
		if (sr->scales[i]->replicas > 10000) {
			api_reply_error(sc, env->id, EINVAL,
			                "%s: replicas must be 0 to 10000 (nothing scaled)",
			                svc->name);
			return;
		}
	}
	for (size_t i = 0; i < sr->n_scales; i++) {
		struct service *svc = services_find(&srv->services, sr->scales[i]->service);
		if (svc->spec.replicas == sr->scales[i]->replicas)
			continue;
		shoal_log(LOG_INFO, "service %s scaled from %u to %u", svc->name,
		          svc->spec.replicas, sr->scales[i]->replicas);
		svc->spec.replicas = sr->scales[i]->replicas;
		free(svc->spec_json);
		svc->spec_json = manifest_spec_to_json(&svc->spec);
		svc->updated_ms = util_wall_ms();
		reconcile_persist_service(srv, svc);
		reconcile_mark(srv, svc);
	}
	reply_ok(sc, env->id, "scaled");
}

static void
handle_remove_service(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	struct service *svc = services_find(&srv->services, env->remove_service->name);

	if (svc == NULL || svc->removed) {
		api_reply_error(sc, env->id, ENOENT, "no such service: %s",
		                env->remove_service->name);
		return;
	}
	svc->removed = true;
	svc->updated_ms = util_wall_ms();
	shoal_log(LOG_INFO, "service %s: removing", svc->name);
	reconcile_persist_service(srv, svc);
	reconcile_mark(srv, svc);
	reply_ok(sc, env->id, "%s", svc->name);
}

static void
handle_set_availability(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__SetAvailability *sa = env->set_availability;
	struct node *n = nodes_find(&srv->nodes, sa->node);
	struct shoal_err err;

	if (n == NULL) {
		api_reply_error(sc, env->id, ENOENT, "no such node: %s", sa->node);
		return;
	}
	if (n->drain != sa->drain) {
		n->drain = sa->drain;
		if (nodes_persist(&srv->store, n, &err) == -1)
			shoal_log(LOG_ERR, "store: %s", err.msg);
		shoal_log(LOG_INFO, "node %s %s", n->name, n->drain ? "drained" : "active");
		for (size_t i = 0; i < srv->services.n; i++)
			reconcile_mark(srv, srv->services.v[i]);
	}
	reply_ok(sc, env->id, "%s %s", n->name, n->drain ? "drain" : "active");
}

static void
handle_rollback(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct service *svc = services_find(&sc->srv->services, env->rollback->name);

	if (svc == NULL || svc->removed) {
		api_reply_error(sc, env->id, ENOENT, "no such service: %s", env->rollback->name);
		return;
	}
	if (update_rollback(sc->srv, svc, "rollback requested") == -1) {
		api_reply_error(sc, env->id, EINVAL,
		                "service %s has no previous spec to roll back to", svc->name);
		return;
	}
	reply_ok(sc, env->id, "%s rolling back", svc->name);
}

/* Which role may send which message: agents report, the CLI administers. */
static enum token_role
required_role(Shoal__Envelope__BodyCase c)
{
	switch (c) {
	case SHOAL__ENVELOPE__BODY_REGISTER:
	case SHOAL__ENVELOPE__BODY_HEARTBEAT:
	case SHOAL__ENVELOPE__BODY_TASK_REPORT:
	case SHOAL__ENVELOPE__BODY_LOG_CHUNK:
	case SHOAL__ENVELOPE__BODY_PROXY_HINT:
		return TOKEN_ROLE_WORKER;
	case SHOAL__ENVELOPE__BODY_LOGS:
	case SHOAL__ENVELOPE__BODY_LIST_NODES:
	case SHOAL__ENVELOPE__BODY_APPLY:
	case SHOAL__ENVELOPE__BODY_LIST_SERVICES:
	case SHOAL__ENVELOPE__BODY_LIST_TASKS:
	case SHOAL__ENVELOPE__BODY_SCALE:
	case SHOAL__ENVELOPE__BODY_REMOVE_SERVICE:
	case SHOAL__ENVELOPE__BODY_SET_AVAILABILITY:
	case SHOAL__ENVELOPE__BODY_ROLLBACK:
		return TOKEN_ROLE_ADMIN;
	default:
		return TOKEN_ROLE_NONE;
	}
}

void
api_handle(struct sched_conn *sc, const Shoal__Envelope *env)
{
	enum token_role need = required_role(env->body_case);
	enum token_role have = rpc_conn_role(sc->rpc);

	if (need == TOKEN_ROLE_NONE) {
		api_reply_error(sc, env->id, EOPNOTSUPP, "unsupported request (body %d)",
		                (int)env->body_case);
		return;
	}
	if (need != have) {
		shoal_log(LOG_WARNING, "%s: refused a %s request from a %s token",
		          rpc_conn_peer(sc->rpc), token_role_name(need), token_role_name(have));
		if (need == TOKEN_ROLE_ADMIN)
			api_reply_error(sc, env->id, EACCES,
			                "permission denied: this is a worker token; admin "
			                "requests need the admin token (admin.token in the "
			                "scheduler's data dir)");
		else
			api_reply_error(sc, env->id, EACCES,
			                "permission denied: only agents (worker token) may send "
			                "this");
		return;
	}
	switch (env->body_case) {
	case SHOAL__ENVELOPE__BODY_REGISTER:
		handle_register(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_HEARTBEAT:
		handle_heartbeat(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_LIST_NODES:
		handle_list_nodes(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_TASK_REPORT:
		handle_task_report(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_LOGS:
		logs_start(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_LOG_CHUNK:
		logs_chunk(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_PROXY_HINT:
		handle_proxy_hint(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_APPLY:
		handle_apply(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_LIST_SERVICES:
		handle_list_services(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_LIST_TASKS:
		handle_list_tasks(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_SCALE:
		handle_scale(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_REMOVE_SERVICE:
		handle_remove_service(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_SET_AVAILABILITY:
		handle_set_availability(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_ROLLBACK:
		handle_rollback(sc, env);
		break;
	default:
		break;
	}
}
