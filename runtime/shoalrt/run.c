/* shoalrt run: create and start a container from an image, in the foreground or detached. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "runtime/container.h"
#include "runtime/shim.h"
#include "util.h"
#include "verb.h"

static pid_t fg_pid;

/* Ctrl-C and a polite kill reach the container, as docker run's signal proxy does. */
static void
forward(int sig)
{
	if (fg_pid > 0)
		kill(fg_pid, sig);
}

static int
usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "shoalrt: run: %s%s%s (see shoalrt run --help)\n", msg, arg ? " " : "",
	        arg ? arg : "");
	return 1;
}

static int
run_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct container_spec spec = {0};
	struct container_attach attach = {1, 2};
	struct container_msg m;
	struct container *c;
	struct shoal_err err;
	bool detach = false;
	char **env = xcalloc((size_t)argc + 1, sizeof(char *));
	size_t nenv = 0;
	int i, code, sync_fd;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;

		if (strcmp(o, "-d") == 0 || strcmp(o, "--detach") == 0) {
			detach = true;
			takes = false;
		} else if (strcmp(o, "--rm") == 0) {
			spec.autoremove = true;
			takes = false;
		} else if (strcmp(o, "--no-new-privileges") == 0) {
			spec.no_new_privs = true;
			takes = false;
		} else if (v == NULL) {
			return usage_error("missing value for", o);
		} else if (strcmp(o, "--name") == 0) {
			free(spec.name);
			spec.name = xstrdup(v);
		} else if (strcmp(o, "--env") == 0 || strcmp(o, "-e") == 0) {
			if (strchr(v, '=') == NULL || v[0] == '=')
				return usage_error("--env wants KEY=VALUE, got", v);
			env[nenv++] = (char *)v;
		} else if (strcmp(o, "--cpus") == 0) {
			if (cgroup_parse_cpus(v, &spec.limits.cpu_quota_us,
			                      &spec.limits.cpu_period_us, &err) == -1)
				goto fail;
		} else if (strcmp(o, "--memory") == 0 || strcmp(o, "-m") == 0) {
			if (cgroup_parse_memory(v, &spec.limits.memory_bytes, &err) == -1)
				goto fail;
		} else if (strcmp(o, "--pids") == 0) {
			if (cgroup_parse_pids(v, &spec.limits.pids, &err) == -1)
				goto fail;
		} else if (strcmp(o, "--network") == 0 || strcmp(o, "--net") == 0) {
			if (netns_parse_mode(v, &spec.net, &err) == -1)
				goto fail;
		} else if (strcmp(o, "--ip") == 0) {
			free(spec.address);
			spec.address = xstrdup(v);
		} else if (strcmp(o, "--gateway") == 0) {
			free(spec.gateway);
			spec.gateway = xstrdup(v);
		} else if (strcmp(o, "--bridge") == 0) {
			free(spec.bridge);
			spec.bridge = xstrdup(v);
		} else if (strcmp(o, "--hostname") == 0) {
			free(spec.hostname);
			spec.hostname = xstrdup(v);
		} else if (strcmp(o, "--user") == 0 || strcmp(o, "-u") == 0) {
			free(spec.user);
			spec.user = xstrdup(v);
		} else if (strcmp(o, "--workdir") == 0 || strcmp(o, "-w") == 0) {
			free(spec.cwd);
			spec.cwd = xstrdup(v);
		} else {
			return usage_error("unknown option", o);
		}
		if (takes)
			i++;
	}
	if (i >= argc)
		return usage_error("missing IMAGE", NULL);
	if (spec.net != NETNS_BRIDGE && (spec.address || spec.gateway || spec.bridge))
		return usage_error("--ip, --gateway and --bridge need", "--network bridge");
	spec.image = xstrdup(argv[i]);
	c = container_create_from_image(ctx->root, &spec, argv[i], argv + i + 1, env, &err);
	free(env);
	env = NULL;
	if (c == NULL)
		goto fail;
	/* The shim is a fork of ours: shoalrt is small, static and single-threaded, so a fork
	 * costs less than an exec of shoal-shim and its reload of the state just written. */
	if (container_start_via(c, detach ? NULL : &attach, shim_fork, &sync_fd, &code, &err) ==
	    -1) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		container_free(c);
		return code;
	}
	if (detach) {
		printf("%s\n", c->id);
		close(sync_fd);
		container_free(c);
		return 0;
	}
	fg_pid = c->pid;
	struct sigaction sa = {.sa_handler = forward};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	code = container_wait_exit(sync_fd, &m, &err);
	close(sync_fd);
	container_free(c);
	if (code == -1) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		return 125;
	}
	return code;
fail:
	fprintf(stderr, "shoalrt: %s\n", err.msg);
	free(env);
	container_spec_clear(&spec);
	return 1;
}

SHOALRT_VERB(run, "run", "create and start a container",
             "usage: shoalrt run [OPTIONS] IMAGE [CMD...]\n\n"
             "Run CMD (default: the image's entrypoint and cmd) in a new container. In the\n"
             "foreground, output is streamed and shoalrt exits with the container's status\n"
             "(125 runtime error, 126 not executable, 127 not found, 128+N killed by signal N).\n\n"
             "  --name NAME          container name (default: the short id)\n"
             "  -d, --detach         print the id and return once the container runs\n"
             "  --rm                 remove the container when it exits\n"
             "  -e, --env K=V        set an environment variable (repeatable)\n"
             "  --cpus N             CPU quota in CPUs, e.g. 0.5\n"
             "  -m, --memory SIZE    memory limit, e.g. 64Mi (an excess is OOM-killed)\n"
             "  --pids N             maximum number of tasks\n"
             "  --network none|host|bridge\n"
             "                       own network namespace with lo only (default), the host's,\n"
             "                       or own with eth0 on a bridge of the host (a veth pair)\n"
             "  --ip ADDR/PREFIX     bridge: eth0's address, e.g. 10.244.1.5/24\n"
             "  --gateway ADDR       bridge: the default route, the bridge's address\n"
             "  --bridge NAME        bridge: an existing bridge to plug into\n"
             "  --hostname NAME      hostname (default: the short id)\n"
             "  -u, --user U[:G]     user (default: the image's, else root)\n"
             "  -w, --workdir DIR    working directory (default: the image's, else /)\n"
             "  --no-new-privileges  set no_new_privs: setuid binaries and file capabilities\n"
             "                       grant nothing (default: they work, as in Docker)\n",
             run_main)
