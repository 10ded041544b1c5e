#include "logs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "err.h"
#include "log.h"
#include "rpc.h"
#include "server.h"
#include "shoal.pb-c.h"
#include "util.h"

static void
send_env(struct rpc_conn *c, Shoal__Envelope *env)
{
	struct shoal_err err;

	if (c && rpc_send(c, env, &err) == -1)
		shoal_log(LOG_WARNING, "logs: %s: %s", rpc_conn_peer(c), err.msg);
}

static void
send_chunk(struct sched_conn *cli, uint64_t id, const char *task, const ProtobufCBinaryData *data,
           bool eof)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__LogChunk ch = SHOAL__LOG_CHUNK__INIT;

	ch.task = (char *)(task ? task : "");
	if (data)
		ch.data = *data;
	ch.eof = eof;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_LOG_CHUNK;
	env.log_chunk = &ch;
	send_env(cli->rpc, &env);
}

static bool
others_open(struct sched_server *srv, const struct log_relay *r)
{
	for (const struct log_relay *o = srv->relays; o; o = o->next)
		if (o != r && o->cli == r->cli && o->cli_id == r->cli_id)
			return true;
	return false;
}

static void
relay_drop(struct sched_server *srv, struct log_relay *r)
{
	for (struct log_relay **p = &srv->relays; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	free(r);
}

/* End relay r: the CLI gets its final chunk when r was the request's last relay. */
static void
relay_end(struct sched_server *srv, struct log_relay *r)
{
	if (r->cli && !others_open(srv, r))
		send_chunk(r->cli, r->cli_id, "", NULL, true);
	relay_drop(srv, r);
}

static void
add_target(struct task **v, size_t *n, struct task *t)
{
	if (t && t->bound && t->node && t->node->conn && t->node->status == NODE_READY)
		v[(*n)++] = t;
}

void
logs_start(struct sched_conn *cli, const Shoal__Envelope *env)
{
	struct sched_server *srv = cli->srv;
	const Shoal__LogsRequest *req = env->logs;
	struct service *svc = services_find(&srv->services, req->task);
	struct task *one = task_map_get(&srv->tasks, req->task);
	struct task **targets;
	size_t n = 0, cap = 2;

	/* A task by name: look through the slots (names are unique, ids are in the map). */
	for (size_t i = 0; !svc && !one && i < srv->services.n; i++) {
		struct service *s = srv->services.v[i];
		for (size_t j = 0; !one && j < s->nslots; j++) {
			struct slot *sl = &s->slots[j];
			struct task *cands[] = {sl->cur, sl->next};
			for (size_t k = 0; k < ARRAY_SIZE(cands); k++)
				if (cands[k] && strcmp(cands[k]->name, req->task) == 0)
					one = cands[k];
			for (size_t k = 0; !one && k < sl->nstopping; k++)
				if (strcmp(sl->stopping[k]->name, req->task) == 0)
					one = sl->stopping[k];
		}
	}
	if (svc == NULL && one == NULL) {
		api_reply_error(cli, env->id, ENOENT, "no such service or task: %s", req->task);
		return;
	}
	if (svc)
		cap = 2 * svc->nslots + 1;
	targets = xcalloc(cap, sizeof(*targets));
	if (svc) {
		for (size_t j = 0; j < svc->nslots; j++) {
			add_target(targets, &n, svc->slots[j].cur);
			add_target(targets, &n, svc->slots[j].next);
		}
	} else {
		add_target(targets, &n, one);
	}
	if (n == 0) {
		api_reply_error(cli, env->id, EHOSTUNREACH,
		                "%s: no task of it is on a reachable node", req->task);
		free(targets);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct log_relay *r = xcalloc(1, sizeof(*r));
		Shoal__Envelope fwd = SHOAL__ENVELOPE__INIT;
		Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;

		r->agent_id = ++srv->next_relay_id;
		r->agent = targets[i]->node->conn;
		r->cli = cli;
		r->cli_id = env->id;
		r->next = srv->relays;
		srv->relays = r;
		lr.task = targets[i]->id;
		lr.follow = req->follow;
		lr.tail = req->tail;
		fwd.id = r->agent_id;
		fwd.body_case = SHOAL__ENVELOPE__BODY_LOGS;
		fwd.logs = &lr;
		send_env(r->agent, &fwd);
	}
	free(targets);
}

void
logs_chunk(struct sched_conn *agent, const Shoal__Envelope *env)
{
	struct sched_server *srv = agent->srv;
	const Shoal__LogChunk *ch = env->log_chunk;

	for (struct log_relay *r = srv->relays; r; r = r->next) {
		if (r->agent != agent->rpc || r->agent_id != env->id)
			continue;
		if (ch->data.len)
			send_chunk(r->cli, r->cli_id, ch->task, &ch->data, false);
		if (ch->eof)
			relay_end(srv, r);
		return;
	}
}

void
logs_conn_closed(struct sched_server *srv, struct sched_conn *sc)
{
	for (struct log_relay *r = srv->relays, *next; r; r = next) {
		next = r->next;
		if (r->cli == sc) {
			/* The user pressed ^C: stop the agent's follow too. */
			Shoal__Envelope fwd = SHOAL__ENVELOPE__INIT;
			Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;
			lr.task = "";
			lr.cancel = true;
			fwd.id = r->agent_id;
			fwd.body_case = SHOAL__ENVELOPE__BODY_LOGS;
			fwd.logs = &lr;
			send_env(r->agent, &fwd);
			relay_drop(srv, r);
		} else if (r->agent == sc->rpc) {
			r->agent = NULL;
			relay_end(srv, r);
		}
	}
}

void
logs_free(struct sched_server *srv)
{
	while (srv->relays)
		relay_drop(srv, srv->relays);
}
