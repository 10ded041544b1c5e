#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "err.h"
#include "evstream.h"
#include "log.h"
#include "logs.h"
#include "version.h"
#include "manifest_spec.h"
#include "nodekey.h"
#include "reconcile_report.h"
#include "update.h"
#include "update_text.h"
#include "conn.h"
#include "reconcile_pass.h"
#include "reply.h"
#include "server-t.h"
#include "service.h"
#include "service_apply.h"
#include "task.h"
#include "shoal.pb-c.h"
#include "util.h"

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

/*
 * One warning line per refused Register, at most one a second, counting the ones it held back:
 * a worker looping on Registers (new names, another node's name) must not flood the log.
 */
static void __attribute__((format(printf, 3, 4)))
log_refused(struct sched_conn *sc, const char *name, const char *fmt, ...)
{
	struct nodes_join_limit *l = &sc->srv->nodes.join;
	int64_t now = util_now_ms();
	char why[320];
	va_list ap;

	if (l->logged_ms != 0 && now - l->logged_ms < 1000) {
		l->refused++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (l->refused)
		shoal_log(LOG_WARNING, "register %.64s from %s refused: %s (and %llu more refused)",
		          name, rpc_conn_peer(sc->rpc), why, (unsigned long long)l->refused);
	else
		shoal_log(LOG_WARNING, "register %.64s from %s refused: %s", name,
		          rpc_conn_peer(sc->rpc), why);
	l->refused = 0;
	l->logged_ms = now;
}

/* Registers one connection may have refused before it gets a short answer for every further
 * one, without a signature check or a log line: an agent gives up its connection after the
 * first refusal, so only a client that insists meets this. */
#define REGISTER_REFUSALS_PER_CONN 4

/*
 * Who may register this name, before anything changes: the Register must prove a node key
 * (a signature over this connection's channel binding), an existing name only comes back with
 * its own key, a new name passes the join rate, and the capacity must be one a host can have.
 * 0 to go on; -1 once refused with an error reply (the connection stays: the agent closes it
 * and retries with back-off).
 */
static int
register_admit(struct sched_conn *sc, const Shoal__Envelope *env, const Shoal__Register *r)
{
	struct sched_server *srv = sc->srv;
	char fp[NODEKEY_FP_LEN], have[NODEKEY_FP_LEN];
	struct shoal_err err;
	struct node *n;

	if (sc->refused >= REGISTER_REFUSALS_PER_CONN) {
		reply_error(sc, env->id, EACCES,
		            "%u registrations refused on this connection: reconnect to try again",
		            sc->refused);
		goto refused;
	}
	if (sc->node != NULL && strcmp(sc->node->name, r->node_name) != 0) {
		log_refused(sc, r->node_name, "this connection is node %s", sc->node->name);
		reply_error(sc, env->id, EPROTO,
		            "this connection registered node %s; one node per connection",
		            sc->node->name);
		goto refused;
	}
	if (r->node_key.len != NODEKEY_PK_BYTES || r->node_signature.len != NODEKEY_SIG_BYTES) {
		log_refused(sc, r->node_name, "no node key");
		reply_error(sc, env->id, EACCES,
		            "registration needs a node key and its signature (agent too old?)");
		goto refused;
	}
	if (!nodekey_verify(r->node_key.data, rpc_conn_binding(sc->rpc), RPC_BINDING_BYTES,
	                    r->node_signature.data)) {
		log_refused(sc, r->node_name, "bad node key signature");
		reply_error(sc, env->id, EACCES, "node key signature does not verify");
		goto refused;
	}
	nodekey_fingerprint(r->node_key.data, fp);
	switch (nodes_check_key(&srv->nodes, r->node_name, r->node_key.data)) {
	case NODES_KEY_MISMATCH:
		n = nodes_find(&srv->nodes, r->node_name);
		log_refused(
		    sc, r->node_name,
		    "the name is bound to key %s, this is key %s (if the node lost its key: "
		    "shoal node rm %s)",
		    nodekey_fingerprint(n->key, have), fp, r->node_name);
		reply_error(sc, env->id, EACCES,
		            "node name %s is bound to another node key; if this node lost its "
		            "key, an admin removes the old node first (shoal node rm %s)",
		            r->node_name, r->node_name);
		goto refused;
	case NODES_KEY_NEW:
		if (nodes_join_admit(&srv->nodes.join, util_now_ms(), &sc->new_names, &err) == -1) {
			log_refused(sc, r->node_name, "%s", err.msg);
			reply_error(sc, env->id, EAGAIN, "%s", err.msg);
			goto refused;
		}
		shoal_log(LOG_INFO, "new node %s with key %s", r->node_name, fp);
		break;
	case NODES_KEY_UNBOUND:
		shoal_log(LOG_INFO, "node %s: key %s bound (it had none: trust on first use)",
		          r->node_name, fp);
		break;
	case NODES_KEY_MATCH:
		break;
	}
	if (nodes_check_capacity(r->capacity ? r->capacity->cpu_millis : 0,
	                         r->capacity ? r->capacity->memory_bytes : 0, &err) == -1) {
		log_refused(sc, r->node_name, "%s", err.msg);
		reply_error(sc, env->id, EINVAL, "%s", err.msg);
		goto refused;
	}
	return 0;
refused:
	sc->refused++;
	return -1;
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
		reply_error(sc, env->id, EINVAL,
		            "invalid node name \"%.64s\" (letters, digits, '-', '_', '.')",
		            r->node_name);
		return;
	}
	if (register_admit(sc, env, r) == -1)
		return;
	labels = nodes_labels_join(r->labels, r->n_labels, &err);
	if (labels == NULL) {
		shoal_log(LOG_WARNING, "register %.64s from %s refused: %s", r->node_name,
		          rpc_conn_peer(sc->rpc), err.msg);
		reply_error(sc, env->id, EINVAL, "register refused: %s", err.msg);
		return;
	}
	n = nodes_register(&srv->nodes, &srv->store, r->node_name, r->address, labels,
	                   r->capacity ? (int64_t)r->capacity->cpu_millis : 0,
	                   r->capacity ? (int64_t)r->capacity->memory_bytes : 0, r->node_key.data,
	                   &err);
	if (n == NULL) {
		shoal_log(LOG_ERR, "register %s from %s: %s", r->node_name, rpc_conn_peer(sc->rpc),
		          err.msg);
		reply_error(sc, env->id, EIO, "%s", err.msg);
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
	if (!was_ready) {
		shoal_log(LOG_INFO,
		          "node %s ready id=%s address=%s subnet=%s cpus=%.2f memory=%s labels=%s",
		          n->name, n->id, n->address, subnet, (double)n->cpu_millis / 1000.0,
		          util_format_bytes(n->memory_bytes, mem, sizeof(mem)),
		          n->labels[0] ? n->labels : "-");
		events_emit(&srv->events, EVENTS_NODE, "ready", NULL, n->name, NULL, NULL, 0, 0,
		            "registered, address %s", n->address);
	}
	reconcile_node_registered(srv, n, r->tasks_running, r->n_tasks_running);
	rr.node_id = n->id;
	rr.container_subnet = subnet;
	rr.heartbeat_interval_ms = srv->heartbeat_ms;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_REGISTER_REPLY;
	reply.register_reply = &rr;
	reply_send(sc, &reply);
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
		reply_error(sc, env->id, EPROTO, "heartbeat before register");
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
			    .queue_len = p->queue_len,
			    .queued = p->queued,
			    .queue_wait_ms = p->queue_wait_ms,
			    .queue_timeouts = p->queue_timeouts,
			    .busy_timeouts = p->busy_timeouts,
			};
		}
		nodes_set_stats(n, v, hb->n_proxy_stats);
	}
	if (hb->n_port_status || n->nports) {
		struct node_port *v = xcalloc(hb->n_port_status + 1, sizeof(*v));
		for (size_t i = 0; i < hb->n_port_status; i++) {
			const Shoal__PortStatus *p = hb->port_status[i];
			v[i] = (struct node_port){
			    .service = xasprintf("%.256s", p->service),
			    .port = (uint16_t)p->port,
			    .code = p->code,
			    .error = xasprintf("%.256s", p->error),
			};
		}
		nodes_set_ports(n, v, hb->n_port_status);
	}
	for (size_t i = 0; i < hb->n_task_status_changes; i++)
		reconcile_task_status(sc->srv, n, hb->task_status_changes[i]);
	if (n->status != NODE_READY) {
		n->status = NODE_READY;
		shoal_log(LOG_INFO, "node %s ready (heartbeats resumed)", n->name);
		events_emit(&sc->srv->events, EVENTS_NODE, "ready", NULL, n->name, NULL, NULL, 0, 0,
		            "heartbeats resumed");
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
	reply_send(sc, &reply);
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
	char(*fps)[NODEKEY_FP_LEN] = xcalloc(count, sizeof(*fps));

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
		ni->key_fingerprint = n->has_key ? nodekey_fingerprint(n->key, fps[i]) : "";
		lr.nodes[i] = ni;
	}
	lr.leader_id = (char *)srv->leader_id;
	lr.leader_address = srv->advertise;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_NODES_REPLY;
	reply.list_nodes_reply = &lr;
	reply_send(sc, &reply);
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
	free(fps);
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

static void
handle_apply(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__Apply *ap = env->apply;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ApplyReply ar = SHOAL__APPLY_REPLY__INIT;
	struct manifest_errors errs = {0};
	Shoal__ServiceChange *changes, **cp;
	struct service_changes ch;
	struct shoal_err err;
	uint64_t seq = sc->srv->events.last_seq;

	/* Checked, stored and committed there; only then answered here. */
	if ((ap->dry_run ? service_apply_dry_run : service_apply)(
	        sc->srv, ap->specs_json, ap->n_specs_json, &ch, &errs, &err) == -1) {
		reply_error_lines(sc, env->id, (unsigned)err.code, err.msg, &errs);
		manifest_errors_free(&errs);
		return;
	}
	changes = xcalloc(ch.n + 1, sizeof(*changes));
	cp = xcalloc(ch.n + 1, sizeof(*cp));
	for (size_t i = 0; i < ch.n; i++) {
		shoal__service_change__init(&changes[i]);
		changes[i].name = ch.v[i].name;
		changes[i].action = (char *)ch.v[i].action;
		cp[i] = &changes[i];
	}
	ar.changes = cp;
	ar.n_changes = ch.n;
	ar.events_seq = seq;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_APPLY_REPLY;
	reply.apply_reply = &ar;
	reply_send(sc, &reply);
	free(changes);
	free(cp);
	service_changes_free(&ch);
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
			o->queue_len += st->queue_len;
			o->queued += st->queued;
			o->queue_wait_ms += st->queue_wait_ms;
			o->queue_timeouts += st->queue_timeouts;
			o->busy_timeouts += st->busy_timeouts;
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
		ustates[k] = svc->removed ? xstrdup("removing") : update_status(svc);
		si->update_state = ustates[k];
		si->prev_spec_json = svc->prev_spec_json ? svc->prev_spec_json : "";
		si->image_digest = (char *)service_pin_get(svc, svc->version);
		if (si->image_digest == NULL)
			si->image_digest = "";
		if (env->list_services->stats)
			si->stats = service_stats(srv, svc->name, &si->n_stats);
		si->port_errors = nodes_port_errors(&srv->nodes, svc->name, &si->n_port_errors);
		lr.services[k++] = si;
	}
	if (only && only[0] && k == 0) {
		reply_error(sc, env->id, ENOENT, "no such service: %s", only);
		goto out;
	}
	lr.n_services = k;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_SERVICES_REPLY;
	reply.list_services_reply = &lr;
	reply_send(sc, &reply);
out:
	for (size_t i = 0; i < k; i++) {
		free(ustates[i]);
		for (size_t j = 0; j < infos[i].n_stats; j++)
			free(infos[i].stats[j]);
		free(infos[i].stats);
		nodes_port_errors_free(infos[i].port_errors, infos[i].n_port_errors);
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
	ti->desired = (char *)task_desired_name(task_desired(t));
	ti->state = (Shoal__TaskState)t->state;
	ti->state_since_ms = t->state_since;
	ti->ip = (char *)t->ip;
	ti->message = t->message ? t->message : "";
	ti->exit_code = t->exit_code;
	ti->version = t->version;
	ti->started_at_ms = t->started_at;
	ti->health = t->health ? t->health : "";
	ti->last_output = t->last_output ? t->last_output : "";
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
		reply_error(sc, env->id, ENOENT, "no such service: %s", lt->service);
		free(l.infos);
		return;
	}
	l.ptrs = xcalloc(l.n ? l.n : 1, sizeof(*l.ptrs));
	for (size_t i = 0; i < l.n; i++)
		l.ptrs[i] = &l.infos[i];
	lr.tasks = l.ptrs;
	lr.n_tasks = l.n;
	lr.port_errors = nodes_port_errors(
	    &srv->nodes, lt->service && lt->service[0] ? lt->service : NULL, &lr.n_port_errors);
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_TASKS_REPLY;
	reply.list_tasks_reply = &lr;
	reply_send(sc, &reply);
	nodes_port_errors_free(lr.port_errors, lr.n_port_errors);
	free(l.infos);
	free(l.ptrs);
}

static void
handle_scale(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__ScaleRequest *sr = env->scale;
	struct service_scale *scales = xcalloc(sr->n_scales + 1, sizeof(*scales));
	struct manifest_errors errs = {0};
	struct shoal_err err;

	uint64_t seq = sc->srv->events.last_seq;

	for (size_t i = 0; i < sr->n_scales; i++)
		scales[i] = (struct service_scale){sr->scales[i]->service, sr->scales[i]->replicas};
	if (service_scale(sc->srv, scales, sr->n_scales, &errs, &err) == -1)
		reply_error_lines(sc, env->id, (unsigned)err.code, err.msg, &errs);
	else
		reply_ok_since(sc, env->id, seq, "scaled");
	manifest_errors_free(&errs);
	free(scales);
}

static void
handle_remove_service(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__RemoveService *rs = env->remove_service;
	struct shoal_err err;

	/* Several at once: all or nothing, like scale. Every unknown name is named. */
	if (rs->n_names > 0) {
		char missing[512] = "";
		size_t nmiss = 0;
		for (size_t i = 0; i < rs->n_names; i++) {
			struct service *svc = services_find(&sc->srv->services, rs->names[i]);
			if (svc && !svc->removed)
				continue;
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing),
			         "%s%s", nmiss++ ? ", " : "", rs->names[i]);
		}
		if (nmiss) {
			reply_error(sc, env->id, ENOENT, "no such service%s: %s; nothing removed",
			            nmiss == 1 ? "" : "s", missing);
			return;
		}
		for (size_t i = 0; i < rs->n_names; i++) {
			if (service_remove(sc->srv, rs->names[i], &err) == -1) {
				reply_error(sc, env->id, (unsigned)err.code, "%s", err.msg);
				return;
			}
		}
		reply_ok(sc, env->id, "removed");
		return;
	}
	if (service_remove(sc->srv, env->remove_service->name, &err) == -1) {
		reply_error(sc, env->id, (unsigned)err.code, "%s", err.msg);
		return;
	}
	reply_ok(sc, env->id, "%s", env->remove_service->name);
}

static void
handle_set_availability(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__SetAvailability *sa = env->set_availability;
	struct node *n = nodes_find(&srv->nodes, sa->node);
	struct shoal_err err;

	if (n == NULL) {
		reply_error(sc, env->id, ENOENT, "no such node: %s", sa->node);
		return;
	}
	if (n->drain != sa->drain) {
		n->drain = sa->drain;
		if (nodes_persist(&srv->store, n, &err) == -1)
			shoal_log(LOG_ERR, "store: %s", err.msg);
		shoal_log(LOG_INFO, "node %s %s", n->name, n->drain ? "drained" : "active");
		events_emit(&srv->events, EVENTS_NODE, n->drain ? "drain" : "active", NULL, n->name,
		            NULL, NULL, 0, 0, NULL);
		for (size_t i = 0; i < srv->services.n; i++)
			reconcile_mark(srv, srv->services.v[i]);
	}
	reply_ok(sc, env->id, "%s %s", n->name, n->drain ? "drain" : "active");
}

/*
 * `shoal node rm`: forget a node, its subnet and its key, so that a node that lost its key can
 * join anew under its name. Like `docker node rm`, a node that is up is refused unless force
 * (its session is then closed; an agent still running there would join again as a new node).
 * Its tasks end ("node X removed") and are replaced elsewhere.
 */
static void
handle_remove_node(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__RemoveNode *rn = env->remove_node;
	struct node *n = nodes_find(&srv->nodes, rn->node);
	struct shoal_err err;
	uint32_t ntasks;

	if (n == NULL) {
		reply_error(sc, env->id, ENOENT, "no such node: %.64s", rn->node);
		return;
	}
	if ((n->status == NODE_READY || n->conn != NULL) && !rn->force) {
		reply_error(sc, env->id, EBUSY,
		            "node %s is %s: stop its agent first (or use --force to remove it "
		            "anyway)",
		            n->name, n->status == NODE_READY ? "ready" : "connected");
		return;
	}
	for (struct sched_conn *o = srv->conns, *next; o; o = next) {
		next = o->next;
		if (o->node != n)
			continue;
		o->node = NULL;
		n->conn = NULL;
		sched_conn_drop(o);
	}
	ntasks = n->ntasks;
	reconcile_node_removed(srv, n);
	if (nodes_remove(&srv->nodes, &srv->store, n, &err) == -1) {
		shoal_log(LOG_ERR, "node rm %s: %s", rn->node, err.msg);
		reply_error(sc, env->id, EIO, "%s", err.msg);
		return;
	}
	shoal_log(LOG_INFO, "node %s removed%s (%u task%s ended)", rn->node,
	          rn->force ? " (forced)" : "", ntasks, ntasks == 1 ? "" : "s");
	events_emit(&srv->events, EVENTS_NODE, "removed", NULL, rn->node, NULL, NULL, 0, 0,
	            "%s%u task%s ended", rn->force ? "forced; " : "", ntasks,
	            ntasks == 1 ? "" : "s");
	reply_ok(sc, env->id, "%s", rn->node);
}

/*
 * `shoal node update --label-add K=V --label-rm K`: admin labels, kept here and merged over
 * the agent's. Placement looks again at once (a pending task may fit now); running tasks stay
 * where they are, as in Swarm.
 */
static void
handle_update_node(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__UpdateNode *un = env->update_node;
	struct node *n = nodes_find(&srv->nodes, un->node);
	struct shoal_err err;

	if (n == NULL) {
		reply_error(sc, env->id, ENOENT, "no such node: %.64s", un->node);
		return;
	}
	if (nodes_update_labels(&srv->store, n, un->label_add, un->n_label_add, un->label_rm,
	                        un->n_label_rm, &err) == -1) {
		reply_error(sc, env->id, EINVAL, "%s", err.msg);
		return;
	}
	shoal_log(LOG_INFO, "node %s labels: %s", n->name, n->labels[0] ? n->labels : "-");
	events_emit(&srv->events, EVENTS_NODE, "updated", NULL, n->name, NULL, NULL, 0, 0,
	            "labels %s", n->labels[0] ? n->labels : "-");
	for (size_t i = 0; i < srv->services.n; i++)
		reconcile_mark(srv, srv->services.v[i]);
	reply_ok(sc, env->id, "%s", n->name);
}

static void
handle_rollback(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct service *svc = services_find(&sc->srv->services, env->rollback->name);
	uint64_t seq = sc->srv->events.last_seq;

	if (svc == NULL || svc->removed) {
		reply_error(sc, env->id, ENOENT, "no such service: %s", env->rollback->name);
		return;
	}
	if (update_rollback(sc->srv, svc, "rollback requested") == -1) {
		reply_error(sc, env->id, EINVAL, "service %s has no previous spec to roll back to",
		            svc->name);
		return;
	}
	reply_ok_since(sc, env->id, seq, "%s rolling back", svc->name);
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
	case SHOAL__ENVELOPE__BODY_EXEC_OUTPUT:
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
	case SHOAL__ENVELOPE__BODY_REMOVE_NODE:
	case SHOAL__ENVELOPE__BODY_EVENTS:
	case SHOAL__ENVELOPE__BODY_EXEC:
	case SHOAL__ENVELOPE__BODY_GET_VERSION:
	case SHOAL__ENVELOPE__BODY_EXEC_INPUT:
	case SHOAL__ENVELOPE__BODY_UPDATE_NODE:
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
		reply_error(sc, env->id, EOPNOTSUPP, "unsupported request (body %d)",
		            (int)env->body_case);
		return;
	}
	if (need != have) {
		shoal_log(LOG_WARNING, "%s: refused a %s request from a %s token",
		          rpc_conn_peer(sc->rpc), token_role_name(need), token_role_name(have));
		if (need == TOKEN_ROLE_ADMIN)
			reply_error(sc, env->id, EACCES,
			            "permission denied: this is a worker token; admin "
			            "requests need the admin token (admin.token in the "
			            "scheduler's data dir)");
		else
			reply_error(sc, env->id, EACCES,
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
	case SHOAL__ENVELOPE__BODY_REMOVE_NODE:
		handle_remove_node(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_EVENTS:
		evstream_start(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_EXEC:
		logs_exec_start(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_EXEC_OUTPUT:
		logs_exec_output(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_EXEC_INPUT:
		logs_exec_input(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_UPDATE_NODE:
		handle_update_node(sc, env);
		break;
	case SHOAL__ENVELOPE__BODY_GET_VERSION:
		reply_ok(sc, env->id, "%s", version_string());
		break;
	default:
		break;
	}
}
