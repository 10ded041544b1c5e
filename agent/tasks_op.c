/*
 * The task supervisor's blocking jobs (tasks.h): a start (image, container create and start)
 * or a stop (drain, SIGTERM, grace, SIGKILL, strip or remove), each in a worker thread whose
 * completion goes to the loop through the done pipe.
 */
#include "tasks_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/container.h"
#include "runtime/image.h"
#include "log.h"
#include "netnode.h"
#include "retired.h"
#include "server-t.h"
#include "dnsmsg.h"
#include "util.h"

void
tasks_op_post(struct op *op, int done, const char *text)
{
	struct op_msg m = {.op = op, .done = done};
	ssize_t w;

	snprintf(m.text, sizeof(m.text), "%s", text ? text : "");
	do
		w = write(op->ts->done_pipe[1], &m, sizeof(m));
	while (w == -1 && errno == EINTR);
	/* A full pipe drops a progress line (the next one says more); completions are few
	 * (one per worker) and the pipe holds hundreds. */
	if (w != (ssize_t)sizeof(m) && done)
		shoal_log(LOG_ERR, "task %s: lost a completion", op->name);
}

static char **
strv_from_argv(const struct manifest_argv *a)
{
	char **v;

	if (!a->set)
		return NULL;
	v = xcalloc(a->n + 1, sizeof(*v));
	for (size_t i = 0; i < a->n; i++)
		v[i] = a->v[i];
	return v;
}

/* The spec's parts that are not the image's: names, entrypoint, limits, network. */
static void
op_container_spec(const struct op *op, struct container_spec *cs)
{
	cs->name = xstrdup(op->name);
	cs->hostname = xstrdup(op->name);
	cs->image = xstrdup(op->spec.image);
	if (op->spec.entrypoint.set) {
		/* An entrypoint given in the manifest drops the image's command, as in Docker. */
		cs->entrypoint = xcalloc(op->spec.entrypoint.n + 1, sizeof(char *));
		for (size_t i = 0; i < op->spec.entrypoint.n; i++)
			cs->entrypoint[i] = xstrdup(op->spec.entrypoint.v[i]);
	}
	if (op->spec.resources.cpu_millis) {
		cs->limits.cpu_period_us = 100000;
		cs->limits.cpu_quota_us = (int64_t)op->spec.resources.cpu_millis * 100;
	}
	cs->limits.memory_bytes = op->spec.resources.memory_bytes;
	cs->limits.pids = op->spec.resources.pids;
	cs->no_new_privs = op->spec.no_new_privileges;
	if (op->spec.network == MANIFEST_NETWORK_HOST) {
		cs->net = NETNS_HOST;
	} else if (op->address) {
		cs->net = NETNS_BRIDGE;
		cs->bridge = xstrdup(NETNODE_BRIDGE);
		cs->address = xstrdup(op->address);
		cs->gateway = xstrdup(op->gateway);
		/* The agent's DNS server listens on the bridge address (agent/dns.h). */
		cs->dns = xcalloc(2, sizeof(char *));
		cs->dns[0] = xstrdup(op->gateway);
		/* The cluster domain as the first search domain: "web" is then also asked as
		 * "web.shoal", never as "web.<the task name's tail>". */
		cs->dns_search = xcalloc(2, sizeof(char *));
		cs->dns_search[0] = xstrdup(DNSMSG_DOMAIN);
	} else {
		cs->net = NETNS_NONE;
	}
}

static void
op_start(struct op *op)
{
	struct container_spec cs = {0};
	struct container_attach at = {.stdout_fd = -1, .stderr_fd = -1};
	cleanup_free char *ref = NULL;
	struct image_store *st;
	struct container *c = NULL, *old;
	char **cmd = strv_from_argv(&op->spec.command);
	char **env = xcalloc(op->spec.n_env + 1, sizeof(*env));
	int rc;

	op->rc = -1;
	op->sync_fd = -1;
	op->exit_code = 125;
	for (size_t i = 0; i < op->spec.n_env; i++)
		env[i] = xasprintf("%s=%s", op->spec.env[i].name, op->spec.env[i].value);
	ref = tasks_image_run_ref(op->spec.image, op->pin, &op->err);
	if (ref == NULL)
		goto out;
	st = image_store_open(op->root, &op->err);
	if (st == NULL)
		goto out;
	/* No prune of our own gc worker between finding the image and the container recording
	 * its layers; container_create_from_image holds the store's lock against any other
	 * process's rmi or gc for its part (it finds the image again under that lock: if an rmi
	 * came in between, the start fails cleanly and is retried). */
	pthread_rwlock_rdlock(&op->ts->image_lock);
	rc = tasks_image_ensure(op, st, ref);
	image_store_close(st);
	if (rc == 0) {
		op_container_spec(op, &cs);
		/* A container of this name is left from an attempt the agent did not see finish. */
		old = container_load(op->root, op->name, NULL);
		if (old) {
			container_remove(old, true, NULL);
			container_free(old);
		}
		c = container_create_from_image(op->root, &cs, ref, cmd, env, &op->err);
	}
	pthread_rwlock_unlock(&op->ts->image_lock);
	if (c == NULL)
		goto out;
	snprintf(op->container_id, sizeof(op->container_id), "%s", c->id);
	snprintf(op->image_digest, sizeof(op->image_digest), "%s",
	         c->spec.image_digest ? c->spec.image_digest : "");
	if (container_start(c, &at, &op->sync_fd, &op->exit_code, &op->err) == -1)
		goto out;
	op->pid = c->pid;
	/* The shim recorded the start time: read it back, so this report and any later
	 * re-adoption agree on it. */
	{
		struct container *rec = container_load(op->root, c->id, NULL);
		op->started_at = rec && rec->started_ms ? rec->started_ms : util_wall_ms();
		container_free(rec);
	}
	op->rc = 0;
out:
	container_spec_clear(&cs);
	container_free(c);
	free(cmd);
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
}

/*
 * TCP connections to one of the ports inside pid's network namespace that still matter to
 * a client: open (ESTABLISHED, SYN_RECV, CLOSE_WAIT) or closed by the app with bytes or the
 * FIN not yet acknowledged (FIN_WAIT1, CLOSING, LAST_ACK). A server that wrote a whole
 * response and closed is in FIN_WAIT1 while the response drains through the proxy: stopping
 * the container then would drop what is left (seen with a 32 MiB download). FIN_WAIT2 and
 * TIME_WAIT mean the peer has everything.
 */
/* include/net/tcp_states.h: ESTABLISHED 1, SYN_RECV 3, FIN_WAIT1 4, CLOSE_WAIT 8, LAST_ACK 9,
 * CLOSING 11 */
#define PENDING_TCP_STATES (1u << 1 | 1u << 3 | 1u << 4 | 1u << 8 | 1u << 9 | 1u << 11)

static int
open_connections(pid_t pid, const struct service_spec *spec)
{
	static const char *const files[] = {"tcp", "tcp6"};
	int n = 0;

	for (size_t f = 0; f < ARRAY_SIZE(files); f++) {
		cleanup_free char *path = xasprintf("/proc/%d/net/%s", (int)pid, files[f]);
		cleanup_free char *text = util_read_file(path, NULL, NULL);
		char *save = NULL;
		if (text == NULL)
			continue;
		for (char *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char local[64];
			unsigned st, port;
			char *colon;
			if (sscanf(line, " %*u: %63s %*s %x", local, &st) != 2 || st > 15 ||
			    !(PENDING_TCP_STATES & (1u << st)))
				continue;
			colon = strrchr(local, ':');
			if (colon == NULL || sscanf(colon + 1, "%x", &port) != 1)
				continue;
			for (size_t p = 0; p < spec->n_ports; p++)
				if (spec->ports[p].target == port)
					n++;
		}
	}
	return n;
}

/*
 * The scheduler took the task out of every proxy's rotation before unassigning it; what is
 * left are requests in flight. Give them up to the stop grace to finish before SIGTERM, so a
 * scale-down or an update fails no request. Returns the time spent.
 */
static int64_t
drain_connections(struct op *op, pid_t pid)
{
	int64_t start = util_now_ms(), deadline = start + op->grace_ms;

	if (op->spec.n_ports == 0)
		return 0;
	while (util_now_ms() < deadline && open_connections(pid, &op->spec) > 0)
		usleep(50000);
	return util_now_ms() - start;
}

static void
op_stop(struct op *op)
{
	struct container *c;
	int grace_s = (int)((op->grace_ms + 999) / 1000);

	op->rc = 0;
	if (op->container_id[0] == '\0')
		return;
	c = container_load(op->root, op->container_id, &op->err);
	if (c == NULL)
		return; /* already gone */
	if (container_alive(c)) {
		int64_t spent = drain_connections(op, c->pid);
		grace_s = (int)((op->grace_ms - spent + 999) / 1000);
		if (grace_s < 1)
			grace_s = 1;
	}
	if (container_alive(c) && container_stop(c, grace_s, &op->err) == -1)
		shoal_log(LOG_WARNING, "stop %s: %s", op->name, op->err.msg);
	op->exit_code = c->exit_code;
	/* An ended container keeps its output for `shoal logs` (retired.h); one that would not
	 * die goes whole. */
	if (container_alive(c) || op->forget_service ? container_remove(c, true, &op->err) == -1
	                                             : container_strip(c, &op->err) == -1)
		op->rc = -1;
	container_free(c);
	{
		struct shoal_err e2;
		size_t gone = retired_prune(op->root, op->forget_service, &e2);
		if (e2.msg[0])
			shoal_log(LOG_WARNING, "retired containers: %s", e2.msg);
		else if (gone)
			shoal_log(LOG_DEBUG, "retired containers: removed %zu", gone);
	}
}

static void *
worker(void *arg)
{
	struct op *op = arg;

	/* Named, so that ps, top and a test can tell a start from a stop. */
	pthread_setname_np(pthread_self(), op->kind == OP_START ? "shoal-start" : "shoal-stop");
	if (op->kind == OP_START)
		op_start(op);
	else
		op_stop(op);
	tasks_op_post(op, 1, NULL);
	return NULL;
}

void
tasks_op_free(struct op *op)
{
	free(op->root);
	free(op->image_dir);
	free(op->node);
	free(op->name);
	free(op->pin);
	free(op->address);
	free(op->gateway);
	free(op->forget_service);
	manifest_spec_free(&op->spec);
	free(op);
}

/* address, gateway: the bridge network of a start (NULL otherwise), copied. */
void
tasks_op_run(struct tasks *ts, struct agent_task *t, enum op_kind kind, const char *address,
             const char *gateway)
{
	struct op *op = xcalloc(1, sizeof(*op));
	pthread_attr_t attr;
	pthread_t th;
	sigset_t all, old;

	op->kind = kind;
	op->ts = ts;
	op->t = t;
	op->queued_ms = util_now_ms();
	op->root = xstrdup(ts->root);
	op->image_dir = ts->image_dir ? xstrdup(ts->image_dir) : NULL;
	op->node = xstrdup(ts->agent->name);
	op->name = xstrdup(t->name);
	op->pin = t->pin ? xstrdup(t->pin) : NULL;
	op->address = address ? xstrdup(address) : NULL;
	op->gateway = gateway ? xstrdup(gateway) : NULL;
	manifest_spec_copy(&op->spec, &t->spec);
	snprintf(op->container_id, sizeof(op->container_id), "%s", t->container_id);
	op->grace_ms = t->spec.stop_grace_ms;
	op->forget_service = kind == OP_STOP && t->forget ? xstrdup(t->service) : NULL;
	t->busy = true;
	ts->workers++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Workers block every signal: SIGTERM and SIGCHLD belong to the loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&th, &attr, worker, op) != 0) {
		err_set(&op->err, errno, "cannot start a worker thread");
		op->rc = -1;
		op->sync_fd = -1;
		tasks_op_post(op, 1, NULL);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}
