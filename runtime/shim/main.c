/*
 * shoal-shim: the parent of one container (runtime/shim.h), for a starter that must not fork
 * itself (the agent: a copy of its page tables, and a threaded process). Started by
 * container_start (double-forked, in its own session), it loads the container's state and
 * serves it (shim_serve); it outlives whoever started it. shoalrt forks its shims instead
 * (shim_fork).
 *
 * usage: shoal-shim [--daemon] --root ROOT --id ID [--sync-fd N] [--stdout-fd N] [--stderr-fd N]
 *        shoal-shim --server   (fd 3: a starter's socket; runtime/shim.h shim_server)
 *
 * `shoal-shim exec --root ROOT --id ID -- CMD...` runs CMD inside that running container,
 * confined exactly as its init (spawn_exec), for health checks and `shoalrt exec`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/container.h"
#include "err.h"
#include "runtime/seccomp.h"
#include "runtime/shim.h"
#include "runtime/spawn_exec.h"
#include "runtime/trace.h"
#include "util.h"

/* ---- shoal-shim exec ---- */

static volatile sig_atomic_t exec_pid; /* the exec'd command, once it runs */

static void
on_exec_signal(int sig)
{
	/* End the command and everything it started, then go as we were told to. */
	if (exec_pid > 0)
		kill(-(pid_t)exec_pid, SIGKILL);
	_exit(128 + sig);
}

/*
 * shoal-shim exec --root ROOT --id ID [--] CMD...: run CMD in the running container ID,
 * confined as its init, with our stdio; exit with its status, or die of the signal that
 * killed it. SIGTERM, SIGINT or SIGHUP kill the command's whole process group and end us.
 * Setup failures exit 125 (126, 127 when CMD cannot be run or found) with the reason on
 * stderr. We stay outside the container: only the command joins it.
 */
static int
exec_main(int argc, char **argv)
{
	const char *root = NULL, *id = NULL;
	struct spawn_process p = {.stdio = {0, 1, 2}};
	struct shoal_err err = {0};
	struct container *c;
	struct sigaction sa = {.sa_handler = on_exec_signal};
	int i, code, status;
	pid_t pid;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--tty") == 0) {
			/* fd 3: where the command sends its terminal's master
			 * (container_exec_start_tty); nothing of ours is left on it once it is
			 * sent, so the relay sees the end. */
			p.tty = true;
			p.console = 3;
			if (fcntl(3, F_SETFD, FD_CLOEXEC) == -1) {
				perror("shoal-shim exec: --tty wants a socket on fd 3");
				return 125;
			}
		} else if (strcmp(argv[i], "--root") == 0 && i + 1 < argc)
			root = argv[++i];
		else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
			id = argv[++i];
		else
			break;
	}
	if (root == NULL || id == NULL || i >= argc) {
		fputs("usage: shoal-shim exec [--tty] --root ROOT --id ID [--] CMD...\n", stderr);
		return 125;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (chdir("/") == -1) {
		perror("shoal-shim exec: chdir /");
		return 125;
	}
	c = container_load(root, id, &err);
	if (c == NULL) {
		fprintf(stderr, "shoal-shim exec: %s\n", err.msg);
		return 125;
	}
	if (c->status != CONTAINER_RUNNING || !container_alive(c)) {
		fprintf(stderr, "shoal-shim exec: container %s is not running\n", c->spec.name);
		container_free(c);
		return 125;
	}
	cleanup_free char *cache = xasprintf("%s/cache", root);
	/* The filter the init got: same profile, same cache. */
	p.seccomp = seccomp_default_prog(cache, &err);
	if (p.seccomp == NULL) {
		fprintf(stderr, "shoal-shim exec: %s\n", err.msg);
		container_free(c);
		return 125;
	}
	p.argv = argv + i;
	p.env = c->spec.env;
	p.cwd = c->spec.cwd;
	p.user = c->spec.user;
	p.no_new_privs = c->spec.no_new_privs;
	pid = spawn_exec(c->pid, c->pid_start, &p, &code, &err);
	container_free(c);
	if (p.tty)
		close(3); /* the command has sent the master (or failed): the relay sees EOF */
	if (pid == -1) {
		fprintf(stderr, "shoal-shim exec: %s\n", err.msg);
		_exit(code);
	}
	exec_pid = pid;
	/* From here on, _exit: any child of ours would be born in the container's pid namespace,
	 * and LeakSanitizer's exit-time check (make check) clones one to inspect us from there,
	 * where it cannot, and hangs. */
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			_exit(125);
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		/* Die the same way, without a core dump of ours. */
		(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		signal(sig, SIG_DFL);
		raise(sig);
		_exit(128 + sig);
	}
	_exit(WEXITSTATUS(status));
}

int
main(int argc, char **argv)
{
	const char *root = NULL, *id = NULL;
	int sync_fd = -1, attach[2] = {-1, -1};
	struct container *c;
	struct shoal_err err;
	bool daemon = false;

	trace_mark("shim-exec");
	if (argc > 1 && strcmp(argv[1], "exec") == 0)
		return exec_main(argc - 1, argv + 1);
	/* container_start's shim maker: requests on fd 3 (runtime/shim.h). */
	if (argc > 1 && strcmp(argv[1], "--server") == 0)
		return shim_server(3);
	if (argc > 1 && strcmp(argv[1], "--daemon") == 0) {
		argc--;
		argv++;
		daemon = true;
	}
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--root") == 0)
			root = argv[i + 1];
		else if (strcmp(argv[i], "--id") == 0)
			id = argv[i + 1];
		else if (strcmp(argv[i], "--sync-fd") == 0)
			sync_fd = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--stdout-fd") == 0)
			attach[0] = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--stderr-fd") == 0)
			attach[1] = atoi(argv[i + 1]);
	}
	if (root == NULL || id == NULL) {
		fputs("usage: shoal-shim [--daemon] --root ROOT --id ID [--sync-fd N] "
		      "[--stdout-fd N] [--stderr-fd N]\n",
		      stderr);
		return 2;
	}
	/* --daemon: the starter waits for this process to exit, and we go on in a child, which
	 * is then nobody's but init's (container_start). A fork of this small static program is
	 * cheap; a fork of the starter (the agent) would copy its page tables. */
	if (daemon) {
		pid_t pid = fork();
		if (pid == -1) {
			struct container_msg m = {.type = CONTAINER_MSG_ERROR, .exit_code = 125};
			err_set(&m.err, errno, "shim: fork");
			if (sync_fd >= 0)
				(void)send(sync_fd, &m, sizeof(m), MSG_NOSIGNAL);
			return 1;
		}
		if (pid > 0)
			_exit(0);
		trace_mark("shim-daemon");
	}
	c = container_load(root, id, &err);
	if (c == NULL) {
		struct container_msg m = {
		    .type = CONTAINER_MSG_ERROR, .exit_code = 125, .err = err};
		if (sync_fd >= 0)
			(void)send(sync_fd, &m, sizeof(m), MSG_NOSIGNAL);
		return 1;
	}
	trace_mark("shim-load");
	return shim_serve(c, sync_fd, attach);
}
