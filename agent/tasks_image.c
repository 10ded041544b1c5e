/*
 * A start's image (tasks.h): found in the node's store, imported from --image-dir, or pulled
 * from the registry its reference names, by shoalrt-image; and the image GC worker.
 */
#include "tasks.h"
#include "tasks_internal.h"

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
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "runtime/image.h"
#include "runtime/prune.h"
#include "runtime/registry.h"
#include "log.h"
#include "reference.h"
#include "server-t.h"
#include "util.h"

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
char *
tasks_image_run_ref(const char *image, const char *pin, struct shoal_err *err)
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
	tasks_op_post(op, 0, text);
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
		tasks_op_post(op, 0, text);
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

	tasks_op_post(op, 0, "pulling");
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
int
tasks_image_ensure(struct op *op, struct image_store *st, const char *ref)
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
