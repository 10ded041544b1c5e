/* shoalrt exec: run a command inside a running container, confined as its init. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "err.h"
#include "runtime/container.h"
#include "verb.h"

static int
exec_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err;
	struct container *c;
	int status, i = 1;
	pid_t pid;

	if (i < argc && strcmp(argv[i], "--") == 0)
		i++;
	if (argc - i < 2) {
		fprintf(stderr, "shoalrt: exec: usage: shoalrt exec CONTAINER CMD...\n");
		return 125;
	}
	/* By name or id prefix here; the shim then works with the full id. */
	c = container_load(ctx->root, argv[i], &err);
	if (c == NULL) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		return 125;
	}
	pid = container_exec_start(ctx->root, c->id, argv + i + 1, (const int[3]){0, 1, 2}, &err);
	container_free(c);
	if (pid == -1) {
		fprintf(stderr, "shoalrt: exec: %s\n", err.msg);
		return 125;
	}
	/* Our terminal's ^C reaches the shim too (same process group): it ends the command. */
	signal(SIGINT, SIG_IGN);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return 125;
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

SHOALRT_VERB(exec, "exec", "run a command in a running container",
             "usage: shoalrt exec CONTAINER CMD...\n\n"
             "Run CMD inside the running CONTAINER exactly as confined as its init: its\n"
             "namespaces and cgroups, capabilities, no_new_privs, seccomp filter, user,\n"
             "resource limits, environment and working directory. stdin, stdout and stderr\n"
             "are shoalrt's. Exits with CMD's status (128+N when killed by signal N), or\n"
             "125 when the container cannot be entered, 126/127 when CMD cannot be run or\n"
             "is not found.\n",
             exec_main)
