#include "logs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "reply.h"
#include "rpc.h"
#include "server-t.h"
#include "service.h"
#include "task.h"
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
	free(r->watch);
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
	/* Ended tasks too: their nodes keep their output while they are in the history. */
	if (t && t->node && t->node->conn && t->node->status == NODE_READY)
		v[(*n)++] = t;
}

/* Every task of slot sl, oldest first, into v (room for 3 + nstopping + SLOT_HISTORY). */
static void
slot_tasks(struct slot *sl, struct task **v, size_t *n)
{
	for (size_t k = SLOT_HISTORY; k-- > 0;)
		add_target(v, n, sl->history[k]);
	for (size_t k = 0; k < sl->nstopping; k++)
		add_target(v, n, sl->stopping[k]);
	add_target(v, n, sl->cur);
	add_target(v, n, sl->next);
}

/* The task named by arg (id, name, or SERVICE.SLOT: the slot's newest), and its slot. */
static struct task *
find_task(struct sched_server *srv, const char *arg, struct slot **slot_out)
{
	struct task *one = task_map_get(&srv->tasks, arg);
	const char *dot = strrchr(arg, '.');

	*slot_out = NULL;
	/* SERVICE.SLOT */
	if (dot && strchr(arg, '.') == dot && dot[1] >= '0' && dot[1] <= '9') {
		cleanup_free char *svcname = xasprintf("%.*s", (int)(dot - arg), arg);
		struct service *svc = services_find(&srv->services, svcname);
		char *end;
		unsigned long num = strtoul(dot + 1, &end, 10);
		for (size_t j = 0; svc && *end == '\0' && j < svc->nslots; j++) {
			struct slot *sl = &svc->slots[j];
			if (sl->num != num)
				continue;
			*slot_out = sl;
			return sl->next && !sl->cur ? sl->next : sl->cur ? sl->cur : sl->history[0];
		}
		return NULL;
	}
	for (size_t i = 0; i < srv->services.n; i++) {
		struct service *s = srv->services.v[i];
		for (size_t j = 0; j < s->nslots; j++) {
			struct slot *sl = &s->slots[j];
			struct task *v[3 + SLOT_HISTORY];
			size_t n = 0;
			v[n++] = sl->cur;
			v[n++] = sl->next;
			for (size_t k = 0; k < SLOT_HISTORY; k++)
				v[n++] = sl->history[k];
			for (size_t k = 0; k < n; k++)
				if (v[k] && (v[k] == one || strcmp(v[k]->name, arg) == 0)) {
					*slot_out = sl;
					return v[k];
				}
			for (size_t k = 0; k < sl->nstopping; k++)
				if (sl->stopping[k] == one ||
				    strcmp(sl->stopping[k]->name, arg) == 0) {
					*slot_out = sl;
					return sl->stopping[k];
				}
		}
	}
	return one;
}

/* The slot's task before t: the newest history entry older than t. */
static struct task *
previous_of(struct slot *sl, struct task *t)
{
	for (size_t k = 0; k + 1 < SLOT_HISTORY; k++)
		if (sl->history[k] == t)
			return sl->history[k + 1];
	if (sl->history[SLOT_HISTORY - 1] == t)
		return NULL;
	/* t is cur, next or stopping: the newest ended task is before it (unless t is it). */
	return sl->history[0] != t ? sl->history[0] : NULL;
}

/* One relay of the CLI's request cli_id to the agent of t (logs, or an exec), listed. */
static struct log_relay *
relay_new(struct sched_server *srv, struct sched_conn *cli, uint64_t cli_id, const struct task *t,
          bool exec)
{
	struct log_relay *r = xcalloc(1, sizeof(*r));

	r->agent_id = ++srv->next_relay_id;
	r->agent = t->node->conn;
	r->cli = cli;
	r->cli_id = cli_id;
	r->exec = exec;
	snprintf(r->task_id, sizeof(r->task_id), "%s", t->id);
	r->next = srv->relays;
	srv->relays = r;
	return r;
}

/* Tell the agent to end what r relays (the CLI cancelled or went away): the same request
 * with cancel set, an Exec for a command, a Logs for a follow. Then forget r. */
static void
relay_cancel(struct sched_server *srv, struct log_relay *r)
{
	Shoal__Envelope fwd = SHOAL__ENVELOPE__INIT;
	Shoal__ExecRequest er = SHOAL__EXEC_REQUEST__INIT;
	Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;

	fwd.id = r->agent_id;
	if (r->exec) {
		er.task = "";
		er.cancel = true;
		fwd.body_case = SHOAL__ENVELOPE__BODY_EXEC;
		fwd.exec = &er;
	} else {
		lr.task = "";
		lr.cancel = true;
		fwd.body_case = SHOAL__ENVELOPE__BODY_LOGS;
		fwd.logs = &lr;
	}
	send_env(r->agent, &fwd);
	relay_drop(srv, r);
}

static void
relay_task(struct sched_server *srv, struct sched_conn *cli, uint64_t cli_id, struct task *t,
           bool follow, int32_t tail, int64_t since_ms, bool timestamps)
{
	struct log_relay *r = relay_new(srv, cli, cli_id, t, false);
	Shoal__Envelope fwd = SHOAL__ENVELOPE__INIT;
	Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;

	/* By name: an ended task is no longer on the agent's list, its kept container is
	 * found by its name. */
	lr.task = t->name;
	lr.follow = follow;
	lr.tail = tail;
	lr.since_ms = since_ms;
	lr.timestamps = timestamps;
	fwd.id = r->agent_id;
	fwd.body_case = SHOAL__ENVELOPE__BODY_LOGS;
	fwd.logs = &lr;
	send_env(r->agent, &fwd);
}

void
logs_start(struct sched_conn *cli, const Shoal__Envelope *env)
{
	struct sched_server *srv = cli->srv;
	const Shoal__LogsRequest *req = env->logs;
	struct service *svc = services_find(&srv->services, req->task);
	struct slot *sl = NULL;
	struct task *one = svc ? NULL : find_task(srv, req->task, &sl);
	struct task **targets;
	size_t n = 0, cap = 2;

	if (svc == NULL && one == NULL && sl == NULL) {
		reply_error(cli, env->id, ENOENT, "no such service or task: %s", req->task);
		return;
	}
	if (req->previous) {
		if (svc) {
			reply_error(cli, env->id, EINVAL,
			            "--previous wants a task or SERVICE.SLOT, not the service %s",
			            req->task);
			return;
		}
		one = sl ? previous_of(sl, one) : NULL;
		if (one == NULL) {
			reply_error(cli, env->id, ENOENT, "%s: no earlier task in the history",
			            req->task);
			return;
		}
	}
	if (svc)
		for (size_t j = 0; j < svc->nslots; j++)
			cap += 3 + svc->slots[j].nstopping + SLOT_HISTORY;
	targets = xcalloc(cap, sizeof(*targets));
	if (svc) {
		for (size_t j = 0; j < svc->nslots; j++)
			slot_tasks(&svc->slots[j], targets, &n);
	} else {
		add_target(targets, &n, one);
	}
	if (n == 0 && !(svc && req->follow)) {
		reply_error(cli, env->id, EHOSTUNREACH, "%s: no task of it is on a reachable node",
		            req->task);
		free(targets);
		return;
	}
	for (size_t i = 0; i < n; i++)
		relay_task(srv, cli, env->id, targets[i], req->follow, req->tail, req->since_ms,
		           req->timestamps);
	free(targets);
	if (svc && req->follow) {
		struct log_relay *w = xcalloc(1, sizeof(*w));
		w->cli = cli;
		w->cli_id = env->id;
		w->watch = xstrdup(svc->name);
		w->timestamps = req->timestamps;
		w->next = srv->relays;
		srv->relays = w;
	}
}

void
logs_task_running(struct sched_server *srv, struct task *t)
{
	for (struct log_relay *w = srv->relays; w; w = w->next) {
		bool have = false;
		if (w->watch == NULL || strcmp(w->watch, t->svc->name) != 0)
			continue;
		for (const struct log_relay *o = srv->relays; o && !have; o = o->next)
			have = o->cli == w->cli && o->cli_id == w->cli_id &&
			       strcmp(o->task_id, t->id) == 0;
		if (have || t->node == NULL || t->node->conn == NULL)
			continue;
		/* Inserted at the head: the walk goes on past it safely. */
		relay_task(srv, w->cli, w->cli_id, t, true, -1, 0, w->timestamps);
	}
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
logs_exec_start(struct sched_conn *cli, const Shoal__Envelope *env)
{
	struct sched_server *srv = cli->srv;
	const Shoal__ExecRequest *req = env->exec;
	struct slot *sl;
	struct task *t = find_task(srv, req->task, &sl);
	struct log_relay *r;
	Shoal__Envelope fwd = SHOAL__ENVELOPE__INIT;
	Shoal__ExecRequest er = SHOAL__EXEC_REQUEST__INIT;

	if (req->cancel) {
		for (r = srv->relays; r; r = r->next)
			if (r->exec && r->cli == cli && r->cli_id == env->id)
				break;
		if (r)
			relay_cancel(srv, r);
		return;
	}
	if (t == NULL) {
		reply_error(cli, env->id, ENOENT, "no such task: %s", req->task);
		return;
	}
	if (req->n_argv == 0) {
		reply_error(cli, env->id, EINVAL, "exec: no command");
		return;
	}
	if (t->state != TASK_STATE_RUNNING || !t->bound || t->node == NULL ||
	    t->node->conn == NULL || t->node->status != NODE_READY) {
		reply_error(cli, env->id, EHOSTUNREACH,
		            "task %s is not running on a reachable node", t->name);
		return;
	}
	r = relay_new(srv, cli, env->id, t, true);
	er.task = t->name;
	er.argv = req->argv;
	er.n_argv = req->n_argv;
	er.stdin = req->stdin;
	er.tty = req->tty;
	er.rows = req->rows;
	er.cols = req->cols;
	fwd.id = r->agent_id;
	fwd.body_case = SHOAL__ENVELOPE__BODY_EXEC;
	fwd.exec = &er;
	shoal_log(LOG_INFO, "exec in %s on %s: %s%s", t->name, t->node->name, req->argv[0],
	          req->n_argv > 1 ? " ..." : "");
	send_env(r->agent, &fwd);
}

void
logs_exec_input(struct sched_conn *cli, const Shoal__Envelope *env)
{
	for (struct log_relay *r = cli->srv->relays; r; r = r->next) {
		Shoal__Envelope fwd = SHOAL__ENVELOPE__INIT;
		if (!r->exec || r->cli != cli || r->cli_id != env->id)
			continue;
		fwd.id = r->agent_id;
		fwd.body_case = SHOAL__ENVELOPE__BODY_EXEC_INPUT;
		fwd.exec_input = env->exec_input;
		send_env(r->agent, &fwd);
		return;
	}
	/* The command ended meanwhile: its input goes nowhere. */
}

void
logs_exec_output(struct sched_conn *agent, const Shoal__Envelope *env)
{
	struct sched_server *srv = agent->srv;

	for (struct log_relay *r = srv->relays; r; r = r->next) {
		Shoal__Envelope out = SHOAL__ENVELOPE__INIT;
		if (!r->exec || r->agent != agent->rpc || r->agent_id != env->id)
			continue;
		out.id = r->cli_id;
		out.body_case = SHOAL__ENVELOPE__BODY_EXEC_OUTPUT;
		out.exec_output = env->exec_output;
		send_env(r->cli->rpc, &out);
		if (env->exec_output->exited)
			relay_drop(srv, r);
		return;
	}
}

void
logs_conn_closed(struct sched_server *srv, struct sched_conn *sc)
{
	for (struct log_relay *r = srv->relays, *next; r; r = next) {
		next = r->next;
		if (r->cli == sc) {
			/* The user pressed ^C (or went away): the agent ends the command or the
			 * follow too. */
			relay_cancel(srv, r);
		} else if (r->agent == sc->rpc && r->exec) {
			reply_error(r->cli, r->cli_id, EHOSTUNREACH,
			            "the task's node went away while the command ran");
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
