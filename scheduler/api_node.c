#include "api_node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "reconcile_report.h"
#include "conn.h"
#include "reconcile_pass.h"
#include "reply.h"
#include "server-t.h"
#include "shoal.pb-c.h"
#include "util.h"

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

void
api_node_list(struct sched_conn *sc, const Shoal__Envelope *env)
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

void
api_node_set_availability(struct sched_conn *sc, const Shoal__Envelope *env)
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
void
api_node_remove(struct sched_conn *sc, const Shoal__Envelope *env)
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
void
api_node_update(struct sched_conn *sc, const Shoal__Envelope *env)
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
