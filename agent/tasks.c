#include "tasks.h"
#include "health.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "runtime/container.h"
#include "err.h"
#include "runtime/image.h"
#include "runtime/logfile.h"
#include "runtime/prune.h"
#include "runtime/registry.h"
#include "log.h"
#include "manifest_json.h"
#include "metrics.h"
#include "reference.h"
#include "retired.h"
#include "netnode.h"
#include "rpc.h"
#include "server-t.h"
#include "shoal.pb-c.h"
#include "dnsmsg.h"
#include "util.h"

/* ---- worker operations ---- */

enum op_kind { OP_START, OP_STOP };

/* One blocking job. The worker reads only the op's own copies, never the task. */
struct op {
	enum op_kind kind;
	struct tasks *ts;
	struct agent_task *t; /* touched on the loop only */
	char *root, *image_dir, *node, *name;
	char *pin;               /* pinned manifest digest, or NULL */
	char *address, *gateway; /* bridge network: "a.b.c.d/len" and the gateway; else NULL */
	struct service_spec spec;
	char container_id[65];
	int64_t grace_ms;
	char *forget_service; /* stop: the service is being removed, keep none of its containers */
	/* results */
	int rc;
	struct shoal_err err;
	int exit_code;
	int sync_fd;
	pid_t pid;
	int64_t started_at;
	char image_digest[80]; /* the manifest digest of the image started */
	int64_t queued_ms;     /* monotonic ms it was queued (start latency for /metrics) */
};

/* What a worker writes to the done pipe: its op finished, or progress to show. One write of
 * at most PIPE_BUF bytes is atomic, so messages never interleave, and a worker's progress
 * always comes before its completion. */
struct op_msg {
	struct op *op;
	int done;
	char text[116]; /* progress: the task's message while it prepares */
};

static void
op_post(struct op *op, int done, const char *text)
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

static const char *
state_name(enum agent_task_state s)
{
	static const char *const names[] = {"",        "",         "preparing", "starting",
	                                    "running", "stopping", "stopped",   "failed"};
	return (size_t)s < ARRAY_SIZE(names) ? names[s] : "?";
}

char *
tasks_image_dirname(const char *ref)
{
	const char *slash = strrchr(ref, '/');
	const char *base = slash ? slash + 1 : ref;
	const char *colon = strrchr(base, ':');

	if (colon == NULL)
		return xasprintf("%s_latest", base);
	return xasprintf("%.*s_%s", (int)(colon - base), base, colon + 1);
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

/* Only a reference that names its registry host is pulled: a bare name (Docker Hub by
 * Docker's defaults) stays local, so a node never reaches out to the Internet unasked. */
static bool
names_registry(const char *ref)
{
	const char *slash = strchr(ref, '/');
	size_t n = slash ? (size_t)(slash - ref) : 0;

	return slash && (memchr(ref, '.', n) || memchr(ref, ':', n) ||
	                 (n == 9 && strncmp(ref, "localhost", 9) == 0));
}

/* The reference to run: the spec's image, or its name at the pinned digest. */
static char *
run_ref(const char *image, const char *pin, struct shoal_err *err)
{
	struct reference r;
	char *name, *out;

	if (pin == NULL || pin[0] == '\0')
		return xstrdup(image);
	if (reference_parse(image, &r, err) == -1)
		return NULL;
	name = reference_familiar_name(&r);
	out = xasprintf("%s@%s", name, pin);
	free(name);
	reference_free(&r);
	return out;
}

static void
human_bytes(uint64_t b, char *out, size_t len)
{
	if (b < (1u << 20))
		snprintf(out, len, "%.1f KiB", (double)b / 1024);
	else
		snprintf(out, len, "%.1f MiB", (double)b / (1 << 20));
}

static void
on_pull_progress(void *arg, size_t done, size_t layers, uint64_t bytes)
{
	struct op *op = arg;
	char b[32], text[116];

	human_bytes(bytes, b, sizeof(b));
	snprintf(text, sizeof(text), "pulling %zu/%zu layers, %s", done, layers, b);
	op_post(op, 0, text);
}

static bool
pulling_has(struct tasks *ts, const char *ref)
{
	for (size_t i = 0; i < ts->npulling; i++)
		if (strcmp(ts->pulling[i], ref) == 0)
			return true;
	return false;
}

/*
 * Pulls and imports run in shoalrt-image, the program beside ours, so that the agent links
 * none of libcurl, libarchive and libcrypto: loaded, those ~45 libraries held ~8 MiB of the
 * agent's RSS for its whole life (bench/agent_mem.sh), to serve a pull now and then.
 */
static char *
image_tool_path(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return xstrdup("shoalrt-image");
	self[n] = '\0';
	return xasprintf("%s/shoalrt-image", dirname(self));
}

/*
 * Run `shoalrt-image --root ROOT ARGS...` (args NULL-terminated) and wait for it: each line
 * of its stdout goes to on_line (may be NULL); when it fails, its last line on stderr is
 * op->err. Blocks: a worker's job. 0, or -1.
 */
static int
run_image_tool(struct op *op, char *const *args,
               void (*on_line)(struct op *op, const char *line, void *arg), void *arg)
{
	cleanup_free char *tool = image_tool_path();
	cleanup_free char **argv = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	char errbuf[1024], *line = NULL, *last;
	size_t n = 0, cap = 0, got = 0;
	int out[2], errp[2], status, rc;
	pid_t pid;
	FILE *f;

	while (args[n])
		n++;
	argv = xcalloc(n + 4, sizeof(char *));
	argv[0] = "shoalrt-image";
	argv[1] = "--root";
	argv[2] = op->root;
	memcpy(argv + 3, args, n * sizeof(char *));
	if (pipe2(out, O_CLOEXEC) == -1)
		return err_set(&op->err, errno, "pipe");
	if (pipe2(errp, O_CLOEXEC) == -1) {
		close(out[0]);
		close(out[1]);
		return err_set(&op->err, errno, "pipe");
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	/* None of the agent's sockets, whatever their flags. */
	if (rc == 0)
		rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	/* Workers block every signal, and the loop's handlers are ours: a clean slate. */
	if (rc == 0)
		rc =
		    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(&attr, &all);
	if (rc == 0)
		rc = posix_spawn(&pid, tool, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(out[1]);
	close(errp[1]);
	if (rc != 0) {
		close(out[0]);
		close(errp[0]);
		return err_set(&op->err, rc, "run %s", tool);
	}
	f = fdopen(out[0], "r");
	if (f == NULL) {
		close(out[0]);
	} else {
		ssize_t len;
		while ((len = getline(&line, &cap, f)) > 0) {
			if (line[len - 1] == '\n')
				line[len - 1] = '\0';
			if (on_line)
				on_line(op, line, arg);
		}
		free(line);
		fclose(f);
	}
	/* What it says on stderr is one line per failure: keep the last that fits. */
	for (;;) {
		ssize_t r = read(errp[0], errbuf + got, sizeof(errbuf) - 1 - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == sizeof(errbuf) - 1)
			got = 0; /* longer than we keep: its tail is what counts */
	}
	close(errp[0]);
	errbuf[got] = '\0';
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	while (got > 0 && errbuf[got - 1] == '\n')
		errbuf[--got] = '\0';
	last = strrchr(errbuf, '\n');
	last = last ? last + 1 : errbuf;
	if (strncmp(last, "shoalrt: ", 9) == 0)
		last += 9;
	if (last[0] == '\0')
		return err_set(&op->err, 0, "%s %s failed (status %d)", tool, args[0], status);
	return err_set(&op->err, 0, "%s", last);
}

/* A line of `shoalrt-image pull --progress`: progress reports and the final figures. */
static void
on_pull_line(struct op *op, const char *line, void *arg)
{
	struct registry_stats *st = arg;
	unsigned long long bytes;
	size_t done, layers;

	if (sscanf(line, "progress %zu %zu %llu", &done, &layers, &bytes) == 3)
		on_pull_progress(op, done, layers, bytes);
	else if (sscanf(line, "result %79s %zu %zu %llu", st->digest, &st->blobs,
	                &st->blobs_fetched, &bytes) == 4)
		st->bytes = bytes;
}

/*
 * Pull ref into st, once per reference in this agent: a worker that finds ref being pulled
 * waits for that pull and then looks in the store again. Blocks (a worker's job).
 */
static struct image *
op_pull(struct op *op, struct image_store *st, const char *ref)
{
	struct tasks *ts = op->ts;
	struct registry_stats stats = {0};
	cleanup_free char **args = NULL;
	struct image *img;
	size_t k = 0, ninsecure = 0;
	char b[32];
	int rc;

	pthread_mutex_lock(&ts->pull_mu);
	if (pulling_has(ts, ref)) {
		char text[116];
		snprintf(text, sizeof(text), "waiting for another task's pull of the image");
		op_post(op, 0, text);
		while (pulling_has(ts, ref))
			pthread_cond_wait(&ts->pull_cv, &ts->pull_mu);
	}
	img = image_get(st, ref, &op->err);
	if (img) {
		pthread_mutex_unlock(&ts->pull_mu);
		return img;
	}
	ts->pulling = xrealloc(ts->pulling, (ts->npulling + 1) * sizeof(char *));
	ts->pulling[ts->npulling++] = xstrdup(ref);
	while (ts->insecure && ts->insecure[ninsecure])
		ninsecure++;
	/* Under the mutex: tasks_set_registry may replace these on the loop's thread. */
	args = xcalloc(2 * ninsecure + 6, sizeof(char *));
	args[k++] = "pull";
	args[k++] = "--progress";
	if (ts->registry_auth) {
		args[k++] = "--registry-auth";
		args[k++] = xstrdup(ts->registry_auth);
	}
	for (size_t i = 0; i < ninsecure; i++) {
		args[k++] = "--insecure-registry";
		args[k++] = xstrdup(ts->insecure[i]);
	}
	args[k++] = (char *)ref;
	pthread_mutex_unlock(&ts->pull_mu);

	op_post(op, 0, "pulling");
	rc = run_image_tool(op, args, on_pull_line, &stats);
	for (size_t i = 2; i + 1 < k; i += 2)
		free(args[i + 1]);

	pthread_mutex_lock(&ts->pull_mu);
	for (size_t i = 0; i < ts->npulling; i++) {
		if (strcmp(ts->pulling[i], ref) == 0) {
			free(ts->pulling[i]);
			ts->pulling[i] = ts->pulling[--ts->npulling];
			break;
		}
	}
	pthread_cond_broadcast(&ts->pull_cv);
	pthread_mutex_unlock(&ts->pull_mu);
	if (rc == -1)
		return NULL;
	human_bytes(stats.bytes, b, sizeof(b));
	/* One line a test or an operator can grep: what the pull fetched and what the node
	 * already had (bytes= counts body bytes fetched). */
	shoal_log(LOG_INFO, "pulled %s digest=%s blobs=%zu fetched=%zu present=%zu bytes=%llu (%s)",
	          ref, stats.digest, stats.blobs, stats.blobs_fetched,
	          stats.blobs - stats.blobs_fetched, (unsigned long long)stats.bytes, b);
	return image_get(st, ref, &op->err);
}

/*
 * Make sure the image ref (run_ref) is in the store: there already, else imported from
 * --image-dir (the offline path), else pulled from the registry the reference names. With a
 * pinned digest only that manifest will do. 0, or -1 with op->err.
 */
static int
op_image(struct op *op, struct image_store *st, const char *ref)
{
	cleanup_free char *dir = NULL;
	cleanup_free char *base = NULL;
	struct image *img;

	img = image_get(st, ref, &op->err);
	if (img == NULL && op->image_dir) {
		base = tasks_image_dirname(op->spec.image);
		dir = xasprintf("%s/%s", op->image_dir, base);
		if (access(dir, F_OK) == 0) {
			char *args[] = {"import", dir, op->spec.image, NULL};
			/* Its message names the import and the directory. */
			if (run_image_tool(op, args, NULL, NULL) == -1)
				return -1;
			img = image_get(st, ref, &op->err);
		}
	}
	if (img == NULL && names_registry(op->spec.image))
		img = op_pull(op, st, ref);
	else if (img == NULL)
		err_set(&op->err, 0, "image %s not found on %s", op->spec.image, op->node);
	if (img == NULL)
		return -1;
	image_free(img);
	return 0;
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
	ref = run_ref(op->spec.image, op->pin, &op->err);
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
	rc = op_image(op, st, ref);
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
	op_post(op, 1, NULL);
	return NULL;
}

static void
op_free(struct op *op)
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
static void
run_op(struct tasks *ts, struct agent_task *t, enum op_kind kind, const char *address,
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
		op_post(op, 1, NULL);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}

/* ---- records and reports ---- */

static char *
record_path(struct tasks *ts, const struct agent_task *t)
{
	return xasprintf("%s/tasks/%s.json", ts->root, t->id);
}

static void
record_save(struct tasks *ts, struct agent_task *t)
{
	cleanup_free char *path = record_path(ts, t);
	json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:s?, s:s}", "id", t->id, "name",
	                      t->name, "service", t->service, "slot", (int)t->slot, "version",
	                      (json_int_t)t->version, "container_id", t->container_id, "spec",
	                      t->spec_json, "pin", t->pin, "image_digest", t->image_digest);
	char *text = json_dumps(j, JSON_COMPACT);
	struct shoal_err err;

	if (util_write_file_atomic(path, text, strlen(text), 0600, &err) == -1)
		shoal_log(LOG_ERR, "task %s: %s", t->name, err.msg);
	free(text);
	json_decref(j);
}

static void
fill_status(const struct agent_task *t, Shoal__TaskStatus *s)
{
	shoal__task_status__init(s);
	s->task_id = (char *)t->id;
	s->state = (Shoal__TaskState)t->state;
	s->timestamp_ms = t->state_since;
	s->exit_code = t->exit_code;
	s->oom_killed = t->oom_killed;
	s->message = t->message ? t->message : "";
	s->container_ip = (char *)t->ip;
	s->started_at_ms = t->started_at;
	s->image_digest = (char *)t->image_digest;
	s->last_output = t->last_output ? t->last_output : "";
	/* The text lives in a buffer the task owns, as long as the status is used. */
	s->health = (char *)health_text(&t->health, ((struct agent_task *)t)->health_buf,
	                                sizeof(t->health_buf));
	s->health_state = (Shoal__HealthState)health_wire_state(&t->health);
	s->health_reason = t->health.status == HEALTH_UNHEALTHY ? (char *)t->health.reason : "";
}

static void
report(struct tasks *ts, struct agent_task *t)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__TaskReport tr = SHOAL__TASK_REPORT__INIT;
	Shoal__TaskStatus st, *sp = &st;
	struct session *s = &ts->agent->session;
	struct shoal_err err;

	if (s->state != SESSION_READY || s->conn == NULL)
		return; /* the next Register carries every task's state */
	fill_status(t, &st);
	tr.statuses = &sp;
	tr.n_statuses = 1;
	env.id = ++s->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_TASK_REPORT;
	env.task_report = &tr;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "report %s: %s", t->name, err.msg);
}

static void
set_state(struct tasks *ts, struct agent_task *t, enum agent_task_state st, const char *msg)
{
	bool changed = t->state != st || (msg && (!t->message || strcmp(msg, t->message) != 0));

	t->state = st;
	t->state_since = util_wall_ms();
	free(t->message);
	t->message = msg && msg[0] ? xstrdup(msg) : NULL;
	if (!changed)
		return;
	if (st == ATASK_FAILED)
		shoal_log(LOG_WARNING, "task %s %s: %s", t->name, state_name(st),
		          msg ? msg : "exited");
	else
		shoal_log(LOG_INFO, "task %s %s%s%s", t->name, state_name(st), msg ? ": " : "",
		          msg ? msg : "");
	report(ts, t);
}

/* ---- task list ---- */

static struct agent_task *
task_add(struct tasks *ts, const char *id, const char *name, const char *service, uint32_t slot,
         uint64_t version, const char *spec_json, struct service_spec *spec)
{
	struct agent_task *t = xcalloc(1, sizeof(*t));

	snprintf(t->id, sizeof(t->id), "%s", id);
	t->name = xstrdup(name);
	t->service = xstrdup(service);
	t->slot = slot;
	t->version = version;
	t->spec_json = xstrdup(spec_json);
	t->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	t->exit_code = -1;
	t->sync_fd = t->pid_fd = -1;
	t->owner = ts;
	t->state_since = util_wall_ms();
	if (ts->n == ts->cap) {
		ts->cap = ts->cap ? ts->cap * 2 : 16;
		ts->v = xrealloc(ts->v, ts->cap * sizeof(*ts->v));
	}
	ts->v[ts->n++] = t;
	return t;
}

static void
unwatch(struct agent_task *t)
{
	health_stop(&t->health);
	t->pid = 0;
	if (t->unhealthy_ev)
		event_free(t->unhealthy_ev);
	t->unhealthy_ev = NULL;
	if (t->exit_ev)
		event_free(t->exit_ev);
	t->exit_ev = NULL;
	if (t->sync_fd >= 0)
		close(t->sync_fd);
	if (t->pid_fd >= 0)
		close(t->pid_fd);
	t->sync_fd = t->pid_fd = -1;
}

static void
task_destroy(struct tasks *ts, struct agent_task *t)
{
	for (size_t i = 0; i < ts->n; i++) {
		if (ts->v[i] == t) {
			ts->v[i] = ts->v[--ts->n];
			break;
		}
	}
	unwatch(t);
	free(t->name);
	free(t->service);
	free(t->spec_json);
	free(t->message);
	free(t->pin);
	free(t->kill_reason);
	free(t->last_output);
	manifest_spec_free(&t->spec);
	free(t);
}

struct agent_task *
tasks_find(struct tasks *ts, const char *id_or_name)
{
	for (size_t i = 0; i < ts->n; i++)
		if (strcmp(ts->v[i]->id, id_or_name) == 0 ||
		    strcmp(ts->v[i]->name, id_or_name) == 0)
			return ts->v[i];
	return NULL;
}

/* ---- exits ---- */

static void
exited(struct tasks *ts, struct agent_task *t, int code, int sig, bool oom)
{
	char msg[128];

	unwatch(t);
	if (t->removing || t->state >= ATASK_STOPPING)
		return; /* a stop we asked for: the stop op reports it */
	t->exit_code = oom ? 137 : sig ? 128 + sig : code;
	t->oom_killed = oom;
	if (t->kill_reason)
		snprintf(msg, sizeof(msg), "%s", t->kill_reason);
	else if (oom)
		snprintf(msg, sizeof(msg), "OOM-killed (exit 137)");
	else if (sig)
		snprintf(msg, sizeof(msg), "killed by signal %d (exit %d)", sig, 128 + sig);
	else
		snprintf(msg, sizeof(msg), "exited with code %d", code);
	free(t->last_output);
	t->last_output = NULL;
	if (t->container_id[0]) {
		cleanup_free char *dir = xasprintf("%s/containers/%s", ts->root, t->container_id);
		t->last_output = logfile_last(dir, 5, 1024);
	}
	set_state(ts, t, t->exit_code == 0 && !t->kill_reason ? ATASK_STOPPED : ATASK_FAILED, msg);
}

/* How long an unhealthy task keeps running after its report, so the scheduler can take it
 * out of every proxy's Endpoints before it dies: killed at once, connects still on their way
 * to it and requests in flight on it failed. (A wedged app serves nothing meanwhile either.) */
#define UNHEALTHY_DRAIN_MS 1000

static void
kill_unhealthy(evutil_socket_t fd, short what, void *arg)
{
	struct agent_task *t = arg;
	struct tasks *ts = t->owner;
	struct container *c;

	(void)fd;
	(void)what;
	/* Healthy again meanwhile, or being stopped anyway: nothing to kill. */
	if (t->health.status != HEALTH_UNHEALTHY || t->removing || t->state >= ATASK_STOPPING)
		return;
	free(t->kill_reason);
	t->kill_reason = xasprintf("unhealthy: %s", t->health.reason);
	c = container_load(ts->root, t->container_id, NULL);
	if (c && container_alive(c) && container_kill(c, SIGKILL, NULL) == 0)
		shoal_log(LOG_INFO, "task %s killed: unhealthy", t->name);
	container_free(c);
}

/*
 * The check's verdict changed. Tell the scheduler (an unhealthy task leaves Endpoints at
 * once); an unhealthy task is killed UNHEALTHY_DRAIN_MS later so its restart policy replaces
 * it, as in Swarm.
 */
static void
on_health(struct agent_task *t)
{
	struct tasks *ts = t->owner;
	struct timeval tv = {UNHEALTHY_DRAIN_MS / 1000, (UNHEALTHY_DRAIN_MS % 1000) * 1000};
	char buf[200];

	shoal_log(t->health.status == HEALTH_UNHEALTHY ? LOG_WARNING : LOG_INFO, "task %s %s",
	          t->name, health_text(&t->health, buf, sizeof(buf)));
	report(ts, t);
	if (t->health.status != HEALTH_UNHEALTHY || t->removing)
		return;
	if (t->unhealthy_ev == NULL)
		t->unhealthy_ev = evtimer_new(ts->agent->base, kill_unhealthy, t);
	if (!evtimer_pending(t->unhealthy_ev, NULL))
		evtimer_add(t->unhealthy_ev, &tv);
}

static void
on_sync(evutil_socket_t fd, short what, void *arg)
{
	struct agent_task *t = arg;
	struct container_msg m;
	struct shoal_err err;

	(void)fd;
	(void)what;
	if (container_wait_exit(t->sync_fd, &m, &err) == -1) {
		/* The shim went away without a word: read what it recorded. */
		struct container *c = container_load(t->owner->root, t->container_id, NULL);
		exited(t->owner, t, c ? c->exit_code : -1, c ? c->exit_signal : 0,
		       c ? c->oom_killed : false);
		container_free(c);
		return;
	}
	exited(t->owner, t, m.exit_code, m.signal, m.oom != 0);
}

/* The init of a re-adopted container exited; its shim writes the exit into state.json right
 * after. Read it, and look again on a timer (never sleeping on the loop) until it is there,
 * for at most half a second. */
static void
on_pidfd(evutil_socket_t fd, short what, void *arg)
{
	struct agent_task *t = arg;
	struct container *c = container_load(t->owner->root, t->container_id, NULL);

	(void)fd;
	(void)what;
	if (c != NULL && c->status != CONTAINER_EXITED && t->exit_polls++ < 50) {
		struct timeval tv = {0, 10000};
		container_free(c);
		if (t->exit_ev)
			event_free(t->exit_ev);
		t->exit_ev = evtimer_new(t->owner->agent->base, on_pidfd, t);
		evtimer_add(t->exit_ev, &tv);
		return;
	}
	exited(t->owner, t, c ? c->exit_code : -1, c ? c->exit_signal : 0,
	       c ? c->oom_killed : false);
	container_free(c);
}

static void
watch_sync(struct tasks *ts, struct agent_task *t, int fd)
{
	t->sync_fd = fd;
	t->exit_ev = event_new(ts->agent->base, fd, EV_READ, on_sync, t);
	event_add(t->exit_ev, NULL);
}

static bool
watch_pid(struct tasks *ts, struct agent_task *t, pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd == -1)
		return false;
	t->pid_fd = fd;
	t->exit_ev = event_new(ts->agent->base, fd, EV_READ, on_pidfd, t);
	event_add(t->exit_ev, NULL);
	return true;
}

/* ---- completions ---- */

static void stop_task(struct tasks *ts, struct agent_task *t);

static void
start_done(struct tasks *ts, struct op *op)
{
	struct agent_task *t = op->t;

	if (op->container_id[0]) {
		snprintf(t->container_id, sizeof(t->container_id), "%s", op->container_id);
		record_save(ts, t);
	}
	if (op->image_digest[0]) {
		snprintf(t->image_digest, sizeof(t->image_digest), "%s", op->image_digest);
		record_save(ts, t);
	}
	metrics_container_started(op->rc == 0, (double)(util_now_ms() - op->queued_ms) / 1000.0);
	if (op->rc == 0) {
		t->started_at = op->started_at;
		t->exit_code = -1;
		watch_sync(ts, t, op->sync_fd);
		t->pid = op->pid;
		health_start(&t->health, t, on_health);
		set_state(ts, t, ATASK_RUNNING, NULL);
	} else {
		t->exit_code = op->exit_code;
		set_state(ts, t, ATASK_FAILED, op->err.msg);
	}
	if (!t->wanted)
		stop_task(ts, t);
}

static void
stop_done(struct tasks *ts, struct op *op)
{
	struct agent_task *t = op->t;
	cleanup_free char *path = record_path(ts, t);

	if (op->rc == -1)
		shoal_log(LOG_WARNING, "task %s: remove: %s", t->name, op->err.msg);
	if (t->state == ATASK_STOPPING)
		set_state(ts, t, ATASK_STOPPED, NULL);
	if (t->wanted) {
		/* Listed again while it stopped (a scheduler that changed its mind). */
		t->removing = false;
		return;
	}
	unlink(path);
	/* The container is gone: its address can go to another task. */
	netnode_release(&ts->agent->netnode, t->id);
	task_destroy(ts, t);
}

static void
on_done(evutil_socket_t fd, short what, void *arg)
{
	struct tasks *ts = arg;
	struct op *op;

	(void)what;
	struct op_msg m;

	while (read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) {
		op = m.op;
		if (!m.done) {
			if (op->t->state == ATASK_PREPARING)
				set_state(ts, op->t, ATASK_PREPARING, m.text);
			continue;
		}
		op->t->busy = false;
		ts->workers--;
		if (op->kind == OP_START)
			start_done(ts, op);
		else
			stop_done(ts, op);
		op_free(op);
	}
}

/* ---- the supervisor ---- */

static void
start_task(struct tasks *ts, struct agent_task *t)
{
	char cidr[20] = "", gateway[16] = "";
	struct shoal_err err;
	int rc = 0;

	/* The address is leased here, on the loop, so two starts never race for one; and
	 * before the first report, which then carries it. */
	if (t->spec.network == MANIFEST_NETWORK_BRIDGE)
		rc = netnode_alloc(&ts->agent->netnode, t->id, t->ip, cidr, gateway, &err);
	record_save(ts, t);
	if (rc == -1) {
		set_state(ts, t, ATASK_FAILED, err.msg);
		return;
	}
	set_state(ts, t, ATASK_PREPARING, NULL);
	run_op(ts, t, OP_START, cidr[0] ? cidr : NULL, gateway[0] ? gateway : NULL);
}

static void
stop_task(struct tasks *ts, struct agent_task *t)
{
	if (t->busy)
		return; /* decided again when the running op completes */
	t->removing = true;
	if (t->state <= ATASK_RUNNING)
		set_state(ts, t, ATASK_STOPPING, NULL);
	run_op(ts, t, OP_STOP, NULL, NULL);
}

/* Whether the task or container name SERVICE.SLOT.xxxx belongs to a service of the list. */
static bool
service_listed(const Shoal__Assignments *as, const char *name)
{
	const char *last = strrchr(name, '.'), *slot = NULL;
	size_t len;

	for (const char *p = name; p < last; p++)
		if (*p == '.')
			slot = p;
	if (last == NULL || slot == NULL)
		return true; /* not a task's: not ours to judge */
	len = (size_t)(slot - name);
	for (size_t k = 0; k < as->n_services; k++)
		if (strlen(as->services[k]) == len && strncmp(as->services[k], name, len) == 0)
			return true;
	return false;
}

/*
 * The ended containers kept for the logs of services that are gone, or being removed, go (a
 * stop of a task of theirs removes its container whole). Stripped, each is two small files:
 * cheap enough for the loop. Containers of tasks still on the list are their stop op's.
 */
static void
forget_removed(struct tasks *ts, const Shoal__Assignments *as)
{
	struct shoal_err err = {0};
	struct container **v;
	size_t n = 0;

	v = container_list(ts->root, &n, &err);
	for (size_t i = 0; v && i < n; i++) {
		const char *name = v[i]->spec.name;
		if (name == NULL || v[i]->status != CONTAINER_EXITED || container_alive(v[i]) ||
		    tasks_find(ts, name) != NULL || service_listed(as, name))
			continue;
		if (container_remove(v[i], true, &err) == -1)
			shoal_log(LOG_WARNING, "forget %s: %s", name, err.msg);
	}
	if (v)
		container_list_free(v, n);
}

void
tasks_apply(struct tasks *ts, const Shoal__Assignments *as)
{
	size_t started = 0, stopped = 0;

	ts->generation = as->generation;
	for (size_t i = 0; i < ts->n; i++)
		ts->v[i]->wanted = false;
	for (size_t i = 0; i < as->n_tasks; i++) {
		const Shoal__TaskSpec *sp = as->tasks[i];
		struct agent_task *t = tasks_find(ts, sp->task_id);
		const char *json = NULL, *pin = NULL;
		struct service_spec spec;
		struct shoal_err err;

		if (t) {
			t->wanted = true;
			continue;
		}
		for (size_t k = 0; k < as->n_specs; k++)
			if (as->specs[k]->version == sp->version &&
			    strcmp(as->specs[k]->service, sp->service) == 0) {
				json = as->specs[k]->spec_json;
				pin = as->specs[k]->image_digest;
			}
		if (json == NULL || manifest_spec_from_json(json, &spec, &err) == -1) {
			shoal_log(LOG_ERR, "task %s: no usable spec in the assignments", sp->name);
			continue;
		}
		t = task_add(ts, sp->task_id, sp->name, sp->service, sp->slot, sp->version, json,
		             &spec);
		t->wanted = true;
		t->pin = pin && pin[0] ? xstrdup(pin) : NULL;
		start_task(ts, t);
		started++;
	}
	for (size_t i = 0; i < ts->n; i++) {
		struct agent_task *t = ts->v[i];
		if (!t->wanted && !service_listed(as, t->name))
			t->forget = true;
		if (t->wanted || t->removing || t->busy)
			continue;
		stop_task(ts, t);
		stopped++;
	}
	forget_removed(ts, as);
	shoal_log(LOG_DEBUG, "assignments gen=%llu: %zu tasks, %zu to start, %zu to stop",
	          (unsigned long long)as->generation, as->n_tasks, started, stopped);
}

size_t
tasks_status_all(struct tasks *ts, Shoal__TaskStatus ***out)
{
	Shoal__TaskStatus **v = xcalloc(ts->n ? ts->n : 1, sizeof(*v));

	for (size_t i = 0; i < ts->n; i++) {
		v[i] = xmalloc(sizeof(*v[i]));
		fill_status(ts->v[i], v[i]);
	}
	*out = v;
	return ts->n;
}

void
tasks_status_free(Shoal__TaskStatus **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- re-adoption ---- */

static void
load_one(struct tasks *ts, const char *path)
{
	cleanup_free char *text = util_read_file(path, NULL, NULL);
	json_t *j = text ? json_loads(text, 0, NULL) : NULL;
	const char *id = NULL, *name = NULL, *service = NULL, *cid = NULL, *spec_json = NULL;
	const char *pin = NULL, *image_digest = NULL;
	json_int_t slot = 0, version = 0;
	struct service_spec spec;
	struct shoal_err err;
	struct agent_task *t;
	struct container *c;

	if (j == NULL ||
	    json_unpack(j, "{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "id", &id, "name", &name,
	                "service", &service, "slot", &slot, "version", &version, "container_id",
	                &cid, "spec", &spec_json) == -1 ||
	    manifest_spec_from_json(spec_json, &spec, &err) == -1) {
		shoal_log(LOG_WARNING, "%s: unreadable task record, ignored", path);
		json_decref(j);
		return;
	}
	t = task_add(ts, id, name, service, (uint32_t)slot, (uint64_t)version, spec_json, &spec);
	snprintf(t->container_id, sizeof(t->container_id), "%s", cid);
	/* Records written before pinning have neither field. */
	json_unpack(j, "{s?:s, s?:s}", "pin", &pin, "image_digest", &image_digest);
	t->pin = pin && pin[0] ? xstrdup(pin) : NULL;
	snprintf(t->image_digest, sizeof(t->image_digest), "%s", image_digest ? image_digest : "");
	json_decref(j);
	c = container_load(ts->root, t->container_id[0] ? t->container_id : t->name, NULL);
	if (c == NULL) {
		t->state = ATASK_FAILED;
		t->message = xstrdup("container gone while the agent was down");
		return;
	}
	snprintf(t->container_id, sizeof(t->container_id), "%s", c->id);
	t->started_at = c->started_ms;
	if (c->ip && c->ip[0]) {
		/* The container holds its address whatever ipam.json says. */
		snprintf(t->ip, sizeof(t->ip), "%s", c->ip);
		if (netnode_hold(&ts->agent->netnode, t->id, c->ip, &err) == -1)
			shoal_log(LOG_ERR, "task %s: address %s: %s", t->name, c->ip, err.msg);
	}
	if (container_alive(c) && watch_pid(ts, t, c->pid)) {
		t->state = ATASK_RUNNING;
		t->pid = c->pid;
		health_start(&t->health, t, on_health);
	} else {
		t->state = c->exit_code == 0 ? ATASK_STOPPED : ATASK_FAILED;
		t->exit_code = c->oom_killed ? 137 : c->exit_code;
		t->oom_killed = c->oom_killed;
		t->message =
		    xasprintf("exited with code %d while the agent was down", c->exit_code);
	}
	container_free(c);
}

void
tasks_load(struct tasks *ts)
{
	cleanup_free char *dir = xasprintf("%s/tasks", ts->root);
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t running = 0;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		cleanup_free char *path = NULL;
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		load_one(ts, path);
	}
	closedir(d);
	/* Leases whose task record is gone (removed while the agent was down) are free. */
	for (size_t i = 0; i < ts->agent->netnode.ipam.n;) {
		char owner[sizeof(ts->agent->netnode.ipam.v[i].owner)];
		snprintf(owner, sizeof(owner), "%s", ts->agent->netnode.ipam.v[i].owner);
		if (tasks_find(ts, owner) != NULL) {
			i++;
			continue;
		}
		shoal_log(LOG_INFO, "network: released the address of task %s (no record)", owner);
		netnode_release(&ts->agent->netnode, owner);
	}
	for (size_t i = 0; i < ts->n; i++)
		running += ts->v[i]->state == ATASK_RUNNING;
	if (ts->n)
		shoal_log(LOG_INFO, "re-adopted %zu task%s (%zu running)", ts->n,
		          ts->n == 1 ? "" : "s", running);
}

int
tasks_init(struct tasks *ts, struct agent_server *a, const char *root, const char *image_dir,
           struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/tasks", root);

	memset(ts, 0, sizeof(*ts));
	ts->agent = a;
	ts->root = xstrdup(root);
	ts->image_dir = image_dir ? xstrdup(image_dir) : NULL;
	ts->insecure = xcalloc(1, sizeof(char *));
	pthread_mutex_init(&ts->pull_mu, NULL);
	pthread_rwlock_init(&ts->image_lock, NULL);
	pthread_cond_init(&ts->pull_cv, NULL);
	ts->done_pipe[0] = ts->done_pipe[1] = -1;
	if (util_mkdir_p(dir, 0700, err) == -1)
		return -1;
	if (pipe2(ts->done_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
		return err_set(err, errno, "pipe");
	ts->done_ev = event_new(a->base, ts->done_pipe[0], EV_READ | EV_PERSIST, on_done, ts);
	event_add(ts->done_ev, NULL);
	return 0;
}

void
tasks_free(struct tasks *ts)
{
	/* Workers still running hold ops that point at tasks: wait for them (bounded by the
	 * stop grace), so nothing they touch is freed under them. */
	for (int i = 0; ts->workers > 0 && i < 3000; i++) {
		on_done(ts->done_pipe[0], EV_READ, ts);
		if (ts->workers)
			usleep(10000);
	}
	for (int i = 0; __atomic_load_n(&ts->gc_running, __ATOMIC_ACQUIRE) && i < 3000; i++)
		usleep(10000);
	if (ts->gc_ev)
		event_free(ts->gc_ev);
	while (ts->n)
		task_destroy(ts, ts->v[0]);
	free(ts->v);
	if (ts->done_ev)
		event_free(ts->done_ev);
	if (ts->done_pipe[0] >= 0)
		close(ts->done_pipe[0]);
	if (ts->done_pipe[1] >= 0)
		close(ts->done_pipe[1]);
	free(ts->root);
	free(ts->image_dir);
	free(ts->registry_auth);
	for (size_t i = 0; ts->insecure && ts->insecure[i]; i++)
		free(ts->insecure[i]);
	free(ts->insecure);
	for (size_t i = 0; i < ts->npulling; i++)
		free(ts->pulling[i]);
	free(ts->pulling);
	pthread_mutex_destroy(&ts->pull_mu);
	pthread_rwlock_destroy(&ts->image_lock);
	pthread_cond_destroy(&ts->pull_cv);
	memset(ts, 0, sizeof(*ts));
}

void
tasks_set_registry(struct tasks *ts, const char *auth_file, char *const *insecure)
{
	size_t n = 0;

	free(ts->registry_auth);
	ts->registry_auth = auth_file ? xstrdup(auth_file) : NULL;
	for (size_t i = 0; ts->insecure && ts->insecure[i]; i++)
		free(ts->insecure[i]);
	free(ts->insecure);
	while (insecure && insecure[n])
		n++;
	ts->insecure = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		ts->insecure[i] = xstrdup(insecure[i]);
}

int
tasks_cleanup(const char *root, size_t *removed, struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/tasks", root);
	struct container **v;
	size_t n = 0;
	DIR *d;
	struct dirent *de;

	*removed = 0;
	v = container_list(root, &n, err);
	if (v == NULL && n == 0 && err->msg[0])
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct shoal_err e2;
		/* Ended tasks' containers (kept for their logs, retired.h) go too, uncounted: the
		 * count is of containers that were still there to run. */
		bool ended = v[i]->status == CONTAINER_EXITED && !container_alive(v[i]);
		if (container_remove(v[i], true, &e2) == -1)
			shoal_log(LOG_WARNING, "cleanup: container %.12s: %s", v[i]->id, e2.msg);
		else if (!ended)
			(*removed)++;
	}
	container_list_free(v, n);
	/* The task records describe containers that no longer exist. */
	d = opendir(dir);
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		cleanup_free char *path = xasprintf("%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	return 0;
}

/* ---- image garbage collection ---- */

static void *
gc_worker(void *arg)
{
	struct tasks *ts = arg;
	struct prune_stats st = {0};
	struct shoal_err err = {0};
	struct image_store *s = image_store_open(ts->root, &err);
	int rc = -1;

	if (s) {
		pthread_rwlock_wrlock(&ts->image_lock);
		rc = prune_images(s, ts->image_gc_after_ms, &st, &err);
		pthread_rwlock_unlock(&ts->image_lock);
		image_store_close(s);
	}
	if (rc == -1)
		shoal_log(LOG_WARNING, "image gc: %s", err.msg);
	else if (st.images)
		shoal_log(LOG_INFO, "image gc: pruned %zu unused image%s (%zu blobs, %zu layers)",
		          st.images, st.images == 1 ? "" : "s", st.blobs, st.layers);
	__atomic_store_n(&ts->gc_running, 0, __ATOMIC_RELEASE);
	return NULL;
}

static void
on_gc(evutil_socket_t fd, short what, void *arg)
{
	struct tasks *ts = arg;
	pthread_attr_t attr;
	pthread_t th;
	sigset_t all, old;

	(void)fd;
	(void)what;
	if (__atomic_load_n(&ts->gc_running, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&ts->gc_running, 1, __ATOMIC_RELEASE);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&th, &attr, gc_worker, ts) != 0) {
		__atomic_store_n(&ts->gc_running, 0, __ATOMIC_RELEASE);
		shoal_log(LOG_WARNING, "image gc: cannot start a worker thread");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}

void
tasks_set_image_gc(struct tasks *ts, int64_t after_ms)
{
	int64_t every = after_ms < 60000 ? after_ms : 60000;
	struct timeval tv;

	ts->image_gc_after_ms = after_ms;
	if (ts->gc_ev)
		event_free(ts->gc_ev);
	ts->gc_ev = NULL;
	if (after_ms <= 0)
		return;
	if (every < 1000)
		every = 1000;
	tv.tv_sec = every / 1000;
	tv.tv_usec = (every % 1000) * 1000;
	ts->gc_ev = event_new(ts->agent->base, -1, EV_PERSIST, on_gc, ts);
	event_add(ts->gc_ev, &tv);
}
