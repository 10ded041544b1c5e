/*
 * rtinproc: start containers the way the agent does (agent/tasks_op.c op_start), in-process
 * through the runtime library: container_create_from_image, then container_start, which execs
 * shoal-shim. For bench/runtime.sh's "agent's path" row: the agent never execs shoalrt, so the
 * start request that matters is this call, not a command.
 *
 *   rtinproc [-j N] ROOT IMAGE CMD...
 *
 * A long-lived, multi-threaded process like the agent (warm: the library's code, the page
 * cache). Each line read from stdin starts one container (network none, --rm, the bench's
 * limits: 1 CPU, 256 MiB, 1024 pids, no_new_privs) running CMD with its stdout attached, waits
 * for its exit and prints "START_US EXIT_STATUS OUTPUT": START_US is the wall clock (us) just
 * before container_create_from_image, OUTPUT the container's first line (for the bench, the
 * $EPOCHREALTIME its sh prints first thing after its execve). With SHOALRT_TRACE=FILE
 * (runtime/trace.h) every start is traced into FILE, between "bench-start" and "bench-end"
 * marks of our own around the call, as bench/runtime.sh writes around a shoalrt run.
 * With -j N each line starts N containers at once, each from a thread of its own, as the
 * agent's op threads do when several replicas are assigned together (tests: runtime.bats).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "runtime/container.h"
#include "util.h"

static long long
wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* The agent runs libevent and worker threads: so do we have more than one thread, so that
 * nothing on the start path may assume a single-threaded caller. */
static void *
idle(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void
bench_mark(const char *file, const char *what, long long us)
{
	FILE *f = fopen(file, "a");

	if (f) {
		fprintf(f, "%s 0 0 %lld\n", what, us);
		fclose(f);
	}
}

static int
start_one(const char *root, const char *image, char **cmd)
{
	const char *trace = getenv("SHOALRT_TRACE");
	struct container_spec spec = {0};
	struct container_attach at = {.stdout_fd = -1, .stderr_fd = -1};
	struct container_msg m;
	struct container *c;
	struct shoal_err err;
	char out[256] = "";
	int p[2], sync_fd = -1, code, status;
	long long start;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) == -1) {
		perror("rtinproc: pipe");
		return -1;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	at.stdout_fd = p[1];
	spec.image = xstrdup(image);
	spec.autoremove = true;
	spec.no_new_privs = true;
	spec.net = NETNS_NONE;
	spec.limits.cpu_period_us = 100000;
	spec.limits.cpu_quota_us = 100000;
	spec.limits.memory_bytes = 256LL << 20;
	spec.limits.pids = 1024;
	start = wall_us();
	if (trace)
		bench_mark(trace, "bench-start", start);
	c = container_create_from_image(root, &spec, image, cmd, NULL, &err);
	if (c == NULL || container_start(c, &at, &sync_fd, &code, &err) == -1) {
		fprintf(stderr, "rtinproc: %s\n", err.msg);
		container_free(c);
		close(p[0]);
		close(p[1]);
		return -1;
	}
	close(p[1]);
	status = container_wait_exit(sync_fd, &m, &err);
	if (trace)
		bench_mark(trace, "bench-end", wall_us());
	close(sync_fd);
	container_free(c);
	/* The shim relays the output before it reports the exit: it is in the pipe by now. */
	n = read(p[0], out, sizeof(out) - 1);
	close(p[0]);
	out[n > 0 ? n : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	printf("%lld %d %s\n", start, status, out[0] ? out : "-");
	fflush(stdout);
	return 0;
}

struct job {
	const char *root, *image;
	char **cmd;
	int rc;
};

static void *
job_run(void *arg)
{
	struct job *j = arg;

	j->rc = start_one(j->root, j->image, j->cmd);
	return NULL;
}

int
main(int argc, char **argv)
{
	char line[256];
	pthread_t t, th[64];
	int n = 1;

	if (argc >= 3 && strcmp(argv[1], "-j") == 0) {
		n = atoi(argv[2]);
		argc -= 2;
		argv += 2;
	}
	if (argc < 4 || n < 1 || n > 64) {
		fputs("usage: rtinproc [-j N<=64] ROOT IMAGE CMD... (N starts per line of stdin)\n",
		      stderr);
		return 2;
	}
	if (pthread_create(&t, NULL, idle, NULL) != 0) {
		fputs("rtinproc: pthread_create failed\n", stderr);
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		struct job jobs[64];
		int rc = 0;

		if (n == 1) {
			if (start_one(argv[1], argv[2], argv + 3) == -1)
				return 1;
			continue;
		}
		for (int i = 0; i < n; i++) {
			jobs[i] = (struct job){argv[1], argv[2], argv + 3, -1};
			if (pthread_create(&th[i], NULL, job_run, &jobs[i]) != 0) {
				fputs("rtinproc: pthread_create failed\n", stderr);
				return 1;
			}
		}
		for (int i = 0; i < n; i++) {
			pthread_join(th[i], NULL);
			rc |= jobs[i].rc;
		}
		if (rc != 0)
			return 1;
	}
	return 0;
}
