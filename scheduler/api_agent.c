#include "api_agent.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "err.h"
#include "log.h"
#include "reconcile_report.h"
#include "conn.h"
#include "reconcile_pass.h"
#include "reply.h"
#include "server-t.h"
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

void
api_agent_register(struct sched_conn *sc, const Shoal__Envelope *env)
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
	nodes_seen(&srv->nodes, n, util_now_ms());
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
	/* A new session: the agent holds what it says it runs, and is sent every spec again. */
	n->keeps_specs = r->keeps_specs;
	for (struct task *t = n->tasks; t; t = t->node_next)
		t->sent = false;
	reconcile_node_registered(srv, n, r->tasks_running, r->n_tasks_running);
	rr.node_id = n->id;
	rr.container_subnet = subnet;
	rr.heartbeat_interval_ms =
	    nodes_heartbeat_ms(&srv->nodes, srv->heartbeat_ms, srv->max_heartbeats);
	nodes_told(n, rr.heartbeat_interval_ms);
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_REGISTER_REPLY;
	reply.register_reply = &rr;
	reply_send(sc, &reply);
	/* Its proxy and routes start from the current table; acknowledgements restart too. */
	n->endpoints_acked = 0;
	endpoints_subscribe(srv, n, r->endpoints_subscribed, r->n_endpoints_subscribed);
	endpoints_send(srv, n);
}

void
api_agent_heartbeat(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__Heartbeat *hb = env->heartbeat;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__HeartbeatReply hr = SHOAL__HEARTBEAT_REPLY__INIT;
	struct node *n = sc->node;

	if (n == NULL) {
		reply_error(sc, env->id, EPROTO, "heartbeat before register");
		return;
	}
	nodes_seen(&sc->srv->nodes, n, util_now_ms());
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
	hr.heartbeat_interval_ms =
	    nodes_heartbeat_ms(&sc->srv->nodes, sc->srv->heartbeat_ms, sc->srv->max_heartbeats);
	nodes_told(n, hr.heartbeat_interval_ms);
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY;
	reply.heartbeat_reply = &hr;
	reply_send(sc, &reply);
}

void
api_agent_task_report(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__TaskReport *tr = env->task_report;

	if (sc->node == NULL)
		return;
	nodes_seen(&sc->srv->nodes, sc->node, util_now_ms());
	for (size_t i = 0; i < tr->n_statuses; i++)
		reconcile_task_status(sc->srv, sc->node, tr->statuses[i]);
}

void
api_agent_proxy_hint(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__ProxyHint *h = env->proxy_hint;
	struct task *t = task_map_get(&sc->srv->tasks, h->task_id);

	/* A hint, not a verdict: the task's health check decides whether it is replaced. */
	shoal_log(LOG_INFO, "hint: the proxy on %s could not reach %s (task %s, %s): %s",
	          sc->node ? sc->node->name : "?", h->backend, t ? t->name : h->task_id, h->service,
	          h->reason);
}

void
api_agent_endpoints_subscribe(struct sched_conn *sc, const Shoal__Envelope *env)
{
	/* No reply: the Endpoints that follow are the answer. */
	endpoints_subscribe(sc->srv, sc->node, env->endpoints_subscribe->services,
	                    env->endpoints_subscribe->n_services);
}
