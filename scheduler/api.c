#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "server.h"
#include "shoal.pb-c.h"
#include "util.h"

static void
send_or_log(struct sched_conn *sc, Shoal__Envelope *env)
{
	struct shoal_err err;

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

static char *
labels_join(Shoal__Label **labels, size_t n)
{
	size_t len = 1;
	char *out;

	for (size_t i = 0; i < n; i++)
		len += strlen(labels[i]->key) + strlen(labels[i]->value) + 2;
	out = xmalloc(len);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, labels[i]->key);
		strcat(out, "=");
		strcat(out, labels[i]->value);
	}
	return out;
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
	labels = labels_join(r->labels, r->n_labels);
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
	rr.node_id = n->id;
	rr.container_subnet = subnet;
	rr.heartbeat_interval_ms = srv->heartbeat_ms;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_REGISTER_REPLY;
	reply.register_reply = &rr;
	send_or_log(sc, &reply);
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
	if (n->status != NODE_READY) {
		n->status = NODE_READY;
		shoal_log(LOG_INFO, "node %s ready (heartbeats resumed)", n->name);
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
		ni->status = n->status == NODE_READY ? "ready" : "down";
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

/* Which role may send which message: agents report, the CLI administers. */
static enum token_role
required_role(Shoal__Envelope__BodyCase c)
{
	switch (c) {
	case SHOAL__ENVELOPE__BODY_REGISTER:
	case SHOAL__ENVELOPE__BODY_HEARTBEAT:
		return TOKEN_ROLE_WORKER;
	case SHOAL__ENVELOPE__BODY_LIST_NODES:
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
	default:
		break;
	}
}
