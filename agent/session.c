#include "session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "addr.h"
#include "backoff.h"
#include "err.h"
#include "exec.h"
#include "log.h"
#include "ingress.h"
#include "rpc.h"
#include "server-t.h"
#include "logs.h"
#include "tasks.h"
#include "shoal.pb-c.h"
#include "timer.h"
#include "util.h"

/* The cap is kept short so that a scheduler coming back after a restart finds its agents
 * within ~2.4 s (with jitter), well inside its grace period for known nodes
 * (NODES_RESTART_GRACE_MS, 10 s): at 5 s, an agent could miss the 3-beat down timer of a
 * restarted scheduler and have its healthy replicas replaced. A lost session that was up
 * retries after 100 ms (failures reset at registration). */
static const struct backoff session_backoff = {.base_ms = 100, .cap_ms = 2000, .jitter_pct = 20};
/* Connect and handshake with one of several schedulers must finish within this. */
#define SESSION_LIST_CONNECT_MS 2500

static void session_connect(struct session *s);

int64_t
session_backoff_ms(int n)
{
	return backoff_ms(&session_backoff, n - 1);
}

static void
schedule_retry(struct session *s)
{
	int64_t ms;

	s->failures++;
	ms = backoff_delay_ms(&session_backoff, s->failures - 1);
	s->state = SESSION_IDLE;
	event_del(s->heartbeat);
	timer_add_ms(s->retry, ms);
	shoal_log(LOG_DEBUG, "reconnecting in %lldms", (long long)ms);
}

static void
send_heartbeat(struct session *s)
{
	struct agent_server *a = s->agent;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Heartbeat hb = SHOAL__HEARTBEAT__INIT;
	Shoal__Usage usage = SHOAL__USAGE__INIT;
	struct resources used;
	struct shoal_err err;

	resources_usage(&a->cpu_sample, a->capacity.cpu_millis, &used);
	usage.cpu_millis = (uint64_t)used.cpu_millis;
	usage.memory_bytes = (uint64_t)used.memory_bytes;
	hb.usage = &usage;
	/* What the node's proxy has applied, as its last report says: only a table of this
	 * session acknowledges (an ingress that outlived the agent may report one from before a
	 * scheduler restart, whose numbers mean nothing now). */
	const Shoal__IngressReport *r = ingress_report(&a->ingress);
	if (r && r->endpoints_generation == s->endpoints_gen)
		hb.endpoints_generation = s->endpoints_gen;
	if (r) {
		hb.proxy_stats = r->stats;
		hb.n_proxy_stats = r->n_stats;
		hb.port_status = r->ports;
		hb.n_port_status = r->n_ports;
	}
	hb.assignments_generation = a->tasks.generation;
	env.id = ++s->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "heartbeat: %s", err.msg);
}

void
session_ingress_report(const Shoal__IngressReport *r, void *arg)
{
	struct session *s = arg;

	/* The proxy serves that table now: DNS answers that waited for it go out. */
	if (r)
		dns_applied(&s->agent->dns, r->endpoints_generation);
	if (s->state == SESSION_READY && s->conn)
		send_heartbeat(s);
}

static void
on_heartbeat_timer(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (s->state != SESSION_READY)
		return;
	/* Fresh counters first: the heartbeat goes when they come (session_ingress_report), or
	 * now with the last ones when the ingress cannot answer. */
	if (!ingress_request_report(&s->agent->ingress))
		send_heartbeat(s);
	/* Jitter each beat (+/-10%) so a thousand agents started together do not beat together. */
	timer_add_ms(s->heartbeat, util_jitter(s->heartbeat_ms, 10));
}

static void
send_register(struct session *s)
{
	struct agent_server *a = s->agent;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Capacity cap = SHOAL__CAPACITY__INIT;
	Shoal__Label *labels = xcalloc(a->nlabels, sizeof(*labels));
	Shoal__Label **lp = xcalloc(a->nlabels, sizeof(*lp));
	cleanup_free char *copies = NULL;
	uint8_t sig[NODEKEY_SIG_BYTES];
	struct shoal_err err;

	reg.keeps_specs = true; /* tasks_apply takes a spec from a task of its version */

	for (size_t i = 0; i < a->nlabels; i++) {
		char *eq = strchr(a->labels[i], '=');
		shoal__label__init(&labels[i]);
		/* Labels are validated k=v at startup; split a copy so the original stays whole. */
		labels[i].key = xstrdup(a->labels[i]);
		labels[i].key[eq - a->labels[i]] = '\0';
		labels[i].value = labels[i].key + (eq - a->labels[i]) + 1;
		lp[i] = &labels[i];
	}
	cap.cpu_millis = (uint64_t)a->capacity.cpu_millis;
	cap.memory_bytes = (uint64_t)a->capacity.memory_bytes;
	reg.node_name = a->name;
	reg.address = a->address;
	reg.labels = lp;
	reg.n_labels = a->nlabels;
	reg.capacity = &cap;
	/* The tasks this node runs: a restarted scheduler adopts them instead of restarting. */
	reg.n_tasks_running = tasks_status_all(&a->tasks, &reg.tasks_running);
	reg.version = "0.1";
	/* What its DNS server follows: the first table then carries those tasks again. */
	reg.endpoints_subscribed = a->dns.subs;
	reg.n_endpoints_subscribed = a->dns.nsubs;
	/* The key proves itself on this connection only: the signature covers its binding. */
	nodekey_sign_register(&s->key, s->conn, &reg, sig);
	env.id = s->register_id = ++s->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	s->state = SESSION_REGISTERING;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "register: %s", err.msg);
	tasks_status_free(reg.tasks_running, reg.n_tasks_running);
	for (size_t i = 0; i < a->nlabels; i++)
		free(labels[i].key);
	free(labels);
	free(lp);
}

static void
on_ready(struct rpc_conn *c, void *arg)
{
	(void)c;
	send_register(arg);
}

static void
on_register_reply(struct session *s, const Shoal__RegisterReply *rr)
{
	struct shoal_err err;

	snprintf(s->node_id, sizeof(s->node_id), "%s", rr->node_id);
	snprintf(s->subnet, sizeof(s->subnet), "%s", rr->container_subnet);
	s->heartbeat_ms = rr->heartbeat_interval_ms ? rr->heartbeat_interval_ms : 1000;
	s->state = SESSION_READY;
	s->failures = 0;
	shoal_log(LOG_INFO, "registered with scheduler %s as %s id=%s subnet=%s heartbeat=%ums",
	          s->where, s->agent->name, s->node_id, s->subnet, s->heartbeat_ms);
	schedlist_connected(&s->agent->scheds);
	/* Before any Assignments: bridged tasks need the bridge and the subnet's addresses.
	 * Idempotent, so every re-registration repairs what is missing. */
	if (netnode_setup(&s->agent->netnode, s->subnet, &err) == -1) {
		shoal_log(LOG_ERR, "network: %s (bridge-network tasks will fail)", err.msg);
	} else {
		char gw[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &s->agent->netnode.gateway, gw, sizeof(gw));
		if (dns_listen(&s->agent->dns, gw, DNS_PORT, "/etc/resolv.conf", &err) == -1)
			shoal_log(LOG_ERR, "%s (containers cannot resolve service names)", err.msg);
	}
	/* The scheduler answers every heartbeat; silence for 5 intervals means it is gone even
	 * when TCP has not noticed (a partition, a frozen peer). */
	rpc_set_idle_timeout(s->conn, (int)(5 * s->heartbeat_ms));
	send_heartbeat(s);
	timer_add_ms(s->heartbeat, util_jitter(s->heartbeat_ms, 10));
}

/* The scheduler stretches the interval as its cluster grows (--max-heartbeats), and
 * shrinks it back: the next beat and the silence that means it is gone follow. */
static void
on_heartbeat_reply(struct session *s, const Shoal__HeartbeatReply *hr)
{
	if (hr->heartbeat_interval_ms == 0 || hr->heartbeat_interval_ms == s->heartbeat_ms)
		return;
	shoal_log(LOG_INFO, "scheduler %s: heartbeat=%ums (was %ums)", s->where,
	          hr->heartbeat_interval_ms, s->heartbeat_ms);
	s->heartbeat_ms = hr->heartbeat_interval_ms;
	rpc_set_idle_timeout(s->conn, (int)(5 * s->heartbeat_ms));
}

const char *
session_backend_refusal(const char *ip)
{
	return addr_backend_refusal_text(ip);
}

void
session_ingress_failure(const Shoal__ProxyHint *hint, void *arg)
{
	struct session *s = arg;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	struct shoal_err err;

	shoal_log(LOG_INFO, "proxy: %s backend %s (task %s) failed: %s; benched", hint->service,
	          hint->backend, hint->task_id, hint->reason);
	if (s->state != SESSION_READY || s->conn == NULL)
		return;
	env.id = ++s->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_PROXY_HINT;
	env.proxy_hint = (Shoal__ProxyHint *)hint;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_DEBUG, "proxy hint: %s", err.msg);
}

/* A new table for the proxy and the routes; acknowledged at once, because the scheduler
 * holds back stopping a task until every proxy confirmed it left the rotation. */
static void
on_endpoints(struct session *s, const Shoal__Endpoints *ep)
{
	struct shoal_err err;

	s->endpoints_gen = ep->generation;
	if (netnode_sync_routes(&s->agent->netnode, ep->nodes, ep->n_nodes, &err) == -1)
		shoal_log(LOG_DEBUG, "network: routes: %s", err.msg); /* each failure is logged */
	/* Every published service listens on this node's address, in the ingress process; its
	 * report acknowledges the table (session_ingress_report). */
	ingress_apply(&s->agent->ingress, ep, s->agent->address);
	dns_update(&s->agent->dns, ep, s->agent->address);
	if (s->agent->ingress.bev == NULL)
		dns_applied(&s->agent->dns, ep->generation);
	shoal_log(LOG_DEBUG, "endpoints generation %llu: %zu services, %zu nodes",
	          (unsigned long long)ep->generation, ep->n_services, ep->n_nodes);
	if (s->agent->ingress.bev == NULL)
		send_heartbeat(s);
}

/*
 * A follower (or a leader deposed since) answered: go to the scheduler it names at once, or,
 * when it names none or it was itself named by one, to the list's next one after the back-off.
 * The tasks keep running meanwhile: the leader adopts them at registration.
 */
static void
on_not_leader(struct session *s, const char *leader)
{
	bool was_ready = s->state == SESSION_READY;

	rpc_free(s->conn);
	s->conn = NULL;
	logs_reset(&s->agent->logs);
	event_del(s->heartbeat);
	if (schedlist_redirect(&s->agent->scheds, leader)) {
		shoal_log(LOG_INFO, "scheduler %s is not the leader; going to %s", s->where,
		          leader);
		/* A redirect costs no back-off step: the leader is known and up. */
		s->state = SESSION_IDLE;
		timer_add_ms(s->retry, 0);
		return;
	}
	if (was_ready || s->failures == 0) {
		if (leader[0])
			shoal_log(
			    LOG_WARNING,
			    "scheduler %s is not the leader (it names %s); trying the next one",
			    s->where, leader);
		else
			shoal_log(
			    LOG_WARNING,
			    "scheduler %s is not the leader and knows none; trying the next one",
			    s->where);
	}
	schedule_retry(s);
}

static void
on_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct session *s = arg;
	const char *leader;

	(void)c;
	switch (env->body_case) {
	case SHOAL__ENVELOPE__BODY_REGISTER_REPLY:
		if (s->state == SESSION_REGISTERING && env->id == s->register_id)
			on_register_reply(s, env->register_reply);
		break;
	case SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY:
		if (s->state == SESSION_READY)
			on_heartbeat_reply(s, env->heartbeat_reply);
		break;
	case SHOAL__ENVELOPE__BODY_ENDPOINTS:
		if (s->state == SESSION_READY)
			on_endpoints(s, env->endpoints);
		break;
	case SHOAL__ENVELOPE__BODY_LOGS:
		logs_request(&s->agent->logs, env->id, env->logs);
		break;
	case SHOAL__ENVELOPE__BODY_EXEC:
		exec_request(&s->agent->logs, env->id, env->exec);
		break;
	case SHOAL__ENVELOPE__BODY_EXEC_INPUT:
		exec_input(&s->agent->logs, env->id, env->exec_input);
		break;
	case SHOAL__ENVELOPE__BODY_ASSIGNMENTS:
		if (s->state == SESSION_READY)
			tasks_apply(&s->agent->tasks, env->assignments);
		break;
	case SHOAL__ENVELOPE__BODY_ERROR:
		if (schedlist_not_leader(env->error->code, env->error->leader, &leader)) {
			on_not_leader(s, leader);
			break;
		}
		shoal_log(LOG_ERR, "scheduler refused %s: %s",
		          env->id == s->register_id ? "registration" : "a request",
		          env->error->message);
		if (env->id == s->register_id) {
			rpc_free(s->conn);
			s->conn = NULL;
			schedlist_failed(&s->agent->scheds);
			schedule_retry(s);
		}
		break;
	default:
		shoal_log(LOG_DEBUG, "ignoring message body %d", (int)env->body_case);
		break;
	}
}

static void
on_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct session *s = arg;

	(void)c;
	s->conn = NULL;
	logs_reset(&s->agent->logs);
	if (s->state == SESSION_READY)
		shoal_log(LOG_WARNING, "lost scheduler %s: %s; reconnecting", s->where, reason);
	else if (s->failures == 0)
		shoal_log(LOG_WARNING, "cannot reach scheduler %s: %s; retrying with back-off",
		          s->where, reason);
	schedlist_failed(&s->agent->scheds);
	schedule_retry(s);
}

static const struct rpc_callbacks session_cbs = {
    .ready = on_ready,
    .message = on_message,
    .closed = on_closed,
};

static void
session_connect(struct session *s)
{
	struct agent_server *a = s->agent;
	const struct sched_addr *to = schedlist_target(&a->scheds);
	struct shoal_err err;

	/* With several schedulers, one that is cut off (a SYN never answered) must not hold the
	 * agent past the new leader's grace for known nodes (10 s): on the lab a follower still
	 * naming a dead leader cost a 5 s connect, and its 2 tasks were replaced. One scheduler
	 * keeps the default: there is nothing else to try. */
	struct rpc_limits limits = {.handshake_timeout_ms =
	                                a->scheds.n > 1 ? SESSION_LIST_CONNECT_MS : 0};

	schedlist_addr_str(to, s->where, sizeof(s->where));
	s->state = SESSION_CONNECTING;
	s->conn =
	    rpc_connect(a->base, to->host, to->port, &a->token, &limits, &session_cbs, s, &err);
	if (s->conn == NULL) {
		if (s->failures == 0)
			shoal_log(LOG_WARNING, "cannot reach scheduler: %s; retrying with back-off",
			          err.msg);
		schedlist_failed(&a->scheds);
		schedule_retry(s);
	}
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_connect(arg);
}

/*
 * The services the node's DNS server follows, kept in DATA_DIR/endpoints.follow (one a line):
 * after an agent restart its first Register names them again, so the VIP proxy (the ingress
 * process outlives the agent) keeps their backends for clients that resolved before.
 */
static char *
follow_path(const struct session *s)
{
	return xasprintf("%s/endpoints.follow", s->agent->data_dir);
}

static void
follow_load(struct session *s)
{
	struct dns_server *d = &s->agent->dns;
	cleanup_free char *path = follow_path(s);
	cleanup_free char *text = util_read_file(path, NULL, NULL);
	char *save = NULL;

	for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l && d->nsubs < DNS_MAX_SUBS;
	     l = strtok_r(NULL, "\n", &save)) {
		char name[256];
		if (!dns_service_of(l, name, sizeof(name)) || strcmp(name, l) != 0)
			continue; /* not a name this agent wrote */
		d->subs = xrealloc(d->subs, (d->nsubs + 1) * sizeof(*d->subs));
		d->subs[d->nsubs++] = xstrdup(name);
	}
	s->agent->dns.subs_saved = d->nsubs;
}

static void
follow_save(struct session *s)
{
	struct dns_server *d = &s->agent->dns;
	cleanup_free char *path = follow_path(s);
	char *text = xstrdup("");
	struct shoal_err err;

	if (d->nsubs == s->agent->dns.subs_saved)
		return;
	for (size_t i = 0; i < d->nsubs; i++) {
		char *t = xasprintf("%s%s\n", text, d->subs[i]);
		free(text);
		text = t;
	}
	if (util_write_file_atomic(path, text, strlen(text), 0600, &err) == -1)
		shoal_log(LOG_WARNING, "dns: %s (an agent restart forgets what it followed)",
		          err.msg);
	else
		s->agent->dns.subs_saved = d->nsubs;
	free(text);
}

/* The node's DNS server was asked for a service whose tasks it lacks. */
static void
on_dns_subscribe(const char *service, void *arg)
{
	struct session *s = arg;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__EndpointsSubscribe sub = SHOAL__ENDPOINTS_SUBSCRIBE__INIT;
	char *names[1] = {(char *)service};
	struct shoal_err err;

	follow_save(s);
	/* Not registered: the Register carries it. */
	if (s->state != SESSION_READY || s->conn == NULL)
		return;
	sub.services = names;
	sub.n_services = 1;
	env.id = ++s->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_ENDPOINTS_SUBSCRIBE;
	env.endpoints_subscribe = &sub;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "endpoints subscribe %s: %s", service, err.msg);
}

void
session_init(struct session *s, struct agent_server *a)
{
	memset(s, 0, sizeof(*s));
	s->agent = a;
	a->dns.subscribe = on_dns_subscribe;
	a->dns.subscribe_arg = s;
	if (a->data_dir)
		follow_load(s);
	s->retry = evtimer_new(a->base, on_retry, s);
	s->heartbeat = evtimer_new(a->base, on_heartbeat_timer, s);
}

int
session_load_key(struct session *s, const char *path, struct shoal_err *err)
{
	char fp[NODEKEY_FP_LEN];
	bool created;

	if (nodekey_load_or_create(path, &s->key, &created, err) == -1)
		return -1;
	shoal_log(LOG_INFO, "node key %s %s", nodekey_fingerprint(s->key.pk, fp),
	          created ? "created" : "loaded");
	return 0;
}

void
session_start(struct session *s)
{
	session_connect(s);
}

void
session_free(struct session *s)
{
	if (s->conn)
		rpc_free(s->conn);
	if (s->retry)
		event_free(s->retry);
	if (s->heartbeat)
		event_free(s->heartbeat);
	nodekey_wipe(&s->key);
	memset(s, 0, sizeof(*s));
}
