/*
 * shoal-shim: the parent of one container. Started (double-forked, in its own session) by
 * container_start(), it spawns the container, tells its starter "exec happened" or why not
 * over the sync socket, relays the container's output to ROOT/containers/<id>/log (rotated to
 * log.1 at CONTAINER_LOG_MAX) and to the starter's stdout/stderr when attached, waits for it,
 * records exit code, signal, OOM kill and times in state.json, removes the cgroup, and for
 * --rm everything else. It outlives whoever started it.
 *
 * usage: shoal-shim [--daemon] --root ROOT --id ID [--sync-fd N] [--stdout-fd N] [--stderr-fd N]
 *
 * `shoal-shim exec --root ROOT --id ID -- CMD...` runs CMD inside that running container,
 * confined exactly as its init (spawn_exec), for health checks and `shoalrt exec`.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/container.h"
#include "fdio.h"
#include "runtime/cgroup.h"
#include "runtime/logfile.h"
#include "err.h"
#include "runtime/seccomp.h"
#include "runtime/spawn.h"
#include "runtime/trace.h"
#include "util.h"

/* The shim's whole state: one container, its output pipes and where the output goes. */
struct shim {
	struct container *c;
	struct cgroup *cg;
	int sync_fd;    /* to the starter; -1 once it is gone */
	int attach[2];  /* starter's stdout, stderr; -1 when not attached or gone */
	int pipe_rd[2]; /* container's stdout, stderr (read ends); -1 at EOF */
	int log_fd;
	off_t log_size;
	char *log_path, *log1_path;
};

static void
notify(struct shim *s, const struct container_msg *m)
{
	if (s->sync_fd < 0)
		return;
	if (send(s->sync_fd, m, sizeof(*m), MSG_NOSIGNAL) == -1) {
		close(s->sync_fd);
		s->sync_fd = -1;
	}
}

static void
log_rotate(struct shim *s)
{
	close(s->log_fd);
	(void)rename(s->log_path, s->log1_path);
	s->log_fd = open(s->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	s->log_size = 0;
}

static void
log_write(struct shim *s, const char *p, size_t n)
{
	if (s->log_size > 0 && s->log_size + (off_t)n > CONTAINER_LOG_MAX)
		log_rotate(s);
	/* A full disk must not stop the relay (the container would block on a full pipe): the
	 * output is then lost, not the container. */
	if (s->log_fd >= 0 && fdio_write_all(s->log_fd, p, n) == 0)
		s->log_size += (off_t)n;
}

/* Write one read of stream (1 stdout, 2 stderr) as timestamped records (logfile.h). */
static void
log_records(struct shim *s, int stream, const char *p, size_t n)
{
	struct timespec ts;
	size_t lines = 1;
	char *rec;

	for (size_t k = 0; k < n; k++)
		lines += p[k] == '\n';
	clock_gettime(CLOCK_REALTIME, &ts);
	rec = xmalloc(n + LOGFILE_HEADER_MAX * lines);
	n = logfile_encode(rec, stream, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, p, n);
	log_write(s, rec, n);
	free(rec);
}

/* Relay what one pipe has; returns 0 at EOF. */
static int
relay(struct shim *s, int i)
{
	char buf[65536];
	ssize_t n = read(s->pipe_rd[i], buf, sizeof(buf));

	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0) {
		close(s->pipe_rd[i]);
		s->pipe_rd[i] = -1;
		return 0;
	}
	log_records(s, i + 1, buf, (size_t)n);
	if (s->attach[i] >= 0 && fdio_write_all(s->attach[i], buf, (size_t)n) == -1) {
		close(s->attach[i]);
		s->attach[i] = -1;
	}
	return 1;
}

static void
finish(struct shim *s, int status)
{
	struct container *c = s->c;
	struct container_msg m = {.type = CONTAINER_MSG_EXITED};
	cleanup_free char *trash = NULL;
	struct shoal_err err;
	bool oom = false;

	c->status = CONTAINER_EXITED;
	c->finished_ms = util_wall_ms();
	if (WIFSIGNALED(status)) {
		c->exit_signal = WTERMSIG(status);
		c->exit_code = 128 + c->exit_signal;
	} else {
		c->exit_signal = 0;
		c->exit_code = WEXITSTATUS(status);
	}
	if (cgroup_oom_killed(s->cg, &oom, &err) == 0)
		c->oom_killed = oom;
	(void)cgroup_destroy(s->cg, &err);
	trace_mark("exit-cgroup-rm");
	/* A state about to be removed is not worth writing (--rm). */
	if (!c->spec.autoremove)
		(void)container_save(c, &err);
	trace_mark("exit-state-saved");
	/* --rm: out of sight (and the name free) before we tell; the tree walk comes after. */
	if (c->spec.autoremove) {
		trash = container_trash(c, &err);
		trace_mark("exit-files-rm");
	}
	m.exit_code = c->exit_code;
	m.signal = c->exit_signal;
	m.oom = c->oom_killed;
	m.pid = c->pid;
	notify(s, &m);
	/* The veth pair dies with the container's namespace, but the kernel frees a namespace
	 * asynchronously: remove the host end now, so an exited container holds nothing. After
	 * the notification: a link deletion waits for an RCU grace period (~14 ms measured), which
	 * nobody waiting for the exit should pay. */
	if (c->spec.net == NETNS_BRIDGE)
		(void)container_unplug(c, &err);
	if (trash)
		(void)container_remove_tree(trash, &err);
}

/* Spawn failed: record it as an exit with the 125/126/127 code docker uses, and tell. */
static int
fail_start(struct shim *s, int code, const struct shoal_err *e)
{
	struct container_msg m = {.type = CONTAINER_MSG_ERROR, .exit_code = code, .err = *e};
	struct shoal_err err;
	struct container *c = s->c;

	c->status = CONTAINER_EXITED;
	c->exit_code = code;
	c->started_ms = c->finished_ms = util_wall_ms();
	free(c->error);
	c->error = xstrdup(e->msg);
	if (s->cg)
		(void)cgroup_destroy(s->cg, &err);
	(void)container_save(c, &err);
	if (c->spec.autoremove)
		(void)container_remove_files(c, &err);
	notify(s, &m);
	return 1;
}

static int
run(struct shim *s, const char *root)
{
	struct container *c = s->c;
	struct spawn_config sc = {0};
	struct shoal_err err = {0};
	int out[2] = {-1, -1}, errp[2] = {-1, -1}, code, sfd, status = 0;
	bool reaped = false;
	sigset_t mask;
	pid_t pid;
	int64_t reaped_at = 0;

	s->log_path = xasprintf("%s/log", c->dir);
	s->log1_path = xasprintf("%s/log.1", c->dir);
	s->log_fd = open(s->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (s->log_fd == -1) {
		err_set(&err, errno, "open %s", s->log_path);
		return fail_start(s, 125, &err);
	}
	struct stat st;
	if (fstat(s->log_fd, &st) == 0)
		s->log_size = st.st_size;

	s->cg = cgroup_new(NULL, c->cgroup, NULL);
	free(c->cgroup_manager);
	c->cgroup_manager = xstrdup(s->cg->ops->name);
	if (cgroup_create(s->cg, &c->spec.limits, &err) == -1)
		return fail_start(s, 125, &err);
	trace_mark("shim-cgroup");
	cleanup_free char *cache = xasprintf("%s/cache", root);
	const struct sock_fprog *prog = seccomp_default_prog(cache, &err);
	if (prog == NULL)
		return fail_start(s, 125, &err);
	trace_mark("shim-seccomp-load");
	if (pipe2(out, O_CLOEXEC) == -1 || pipe2(errp, O_CLOEXEC) == -1) {
		err_set(&err, errno, "pipe");
		return fail_start(s, 125, &err);
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) == -1 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) == -1) {
		err_set(&err, errno, "signalfd");
		return fail_start(s, 125, &err);
	}

	cleanup_free char *upper = xasprintf("%s/upper", c->dir);
	cleanup_free char *work = xasprintf("%s/work", c->dir);
	cleanup_free char *rootfs = xasprintf("%s/rootfs", c->dir);
	sc.layers = c->spec.layers;
	sc.nlayers = c->spec.nlayers;
	sc.upper = upper;
	sc.work = work;
	sc.rootfs = rootfs;
	sc.proc.argv = c->spec.argv;
	sc.proc.env = c->spec.env;
	sc.proc.cwd = c->spec.cwd;
	sc.proc.user = c->spec.user;
	sc.proc.no_new_privs = c->spec.no_new_privs;
	sc.hostname = c->spec.hostname;
	sc.etc_dir = c->dir;
	sc.net.mode = c->spec.net;
	sc.net.path = c->spec.netns_path;
	sc.net.fd = -1;
	if (c->spec.net == NETNS_BRIDGE) {
		if (netns_bridge_parse(&sc.net.br, c->spec.bridge, c->spec.address, c->spec.gateway,
		                       &err) == -1)
			return fail_start(s, 125, &err);
		netns_host_ifname(c->id, sc.net.br.host_if);
	}
	sc.cg = s->cg;
	sc.proc.seccomp = prog;
	sc.proc.stdio[0] = 0; /* /dev/null: the shim's own stdin */
	sc.proc.stdio[1] = out[1];
	sc.proc.stdio[2] = errp[1];
	pid = spawn_container(&sc, &code, &err);
	close(out[1]);
	close(errp[1]);
	cgroup_close_fds(s->cg);
	s->pipe_rd[0] = out[0];
	s->pipe_rd[1] = errp[0];
	if (pid == -1)
		return fail_start(s, code, &err);
	trace_mark("shim-exec-seen");

	c->pid = pid;
	c->pid_start = spawn_proc_start_time(pid);
	c->started_ms = util_wall_ms();
	c->status = CONTAINER_RUNNING;
	/* state.json first: whoever hears "started" can see it running at once. */
	(void)container_save(c, &err);
	struct container_msg m = {.type = CONTAINER_MSG_STARTED, .pid = pid};
	trace_mark("shim-state-running");
	notify(s, &m);

	for (;;) {
		struct pollfd p[3] = {
		    {sfd, POLLIN, 0}, {s->pipe_rd[0], POLLIN, 0}, {s->pipe_rd[1], POLLIN, 0}};
		int timeout = -1;

		if (reaped) {
			if (s->pipe_rd[0] < 0 && s->pipe_rd[1] < 0)
				break;
			/* Every writer died with the pid namespace; EOF is due. Bound it anyway. */
			timeout = (int)(reaped_at + 1000 - util_now_ms());
			if (timeout <= 0)
				break;
		}
		if (poll(p, 3, timeout) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++)
			if (p[i + 1].revents)
				relay(s, i);
		if (p[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) > 0)
				;
			if (!reaped && waitpid(pid, &status, WNOHANG) == pid) {
				trace_mark("exit-reaped");
				reaped = true;
				reaped_at = util_now_ms();
			}
		}
	}
	close(sfd);
	trace_mark("exit-output-drained");
	finish(s, status);
	return 0;
}

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
	struct shim s = {.sync_fd = -1, .attach = {-1, -1}, .pipe_rd = {-1, -1}, .log_fd = -1};
	const char *root = NULL, *id = NULL;
	struct shoal_err err;
	bool daemon = false;

	trace_mark("shim-exec");
	if (argc > 1 && strcmp(argv[1], "exec") == 0)
		return exec_main(argc - 1, argv + 1);
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
			s.sync_fd = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--stdout-fd") == 0)
			s.attach[0] = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--stderr-fd") == 0)
			s.attach[1] = atoi(argv[i + 1]);
	}
	if (root == NULL || id == NULL) {
		fputs("usage: shoal-shim [--daemon] --root ROOT --id ID [--sync-fd N] "
		      "[--stdout-fd N] [--stderr-fd N]\n",
		      stderr);
		return 2;
	}
	for (int i = 0; i < 2; i++)
		if (s.attach[i] >= 0)
			fcntl(s.attach[i], F_SETFD, FD_CLOEXEC);
	if (s.sync_fd >= 0)
		fcntl(s.sync_fd, F_SETFD, FD_CLOEXEC);
	/* --daemon: the starter waits for this process to exit, and we go on in a child, which
	 * is then nobody's but init's (container_start). A fork of this small static program is
	 * cheap; a fork of the starter (the agent) would copy its page tables. */
	if (daemon) {
		pid_t pid = fork();
		if (pid == -1) {
			struct container_msg m = {.type = CONTAINER_MSG_ERROR, .exit_code = 125};
			err_set(&m.err, errno, "shim: fork");
			notify(&s, &m);
			return 1;
		}
		if (pid > 0)
			_exit(0);
	}
	/* The starter may go away at any time: a closed attach pipe or socket is not fatal. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	if (chdir("/") == -1)
		return 1;
	s.c = container_load(root, id, &err);
	if (s.c == NULL) {
		struct container_msg m = {
		    .type = CONTAINER_MSG_ERROR, .exit_code = 125, .err = err};
		notify(&s, &m);
		return 1;
	}
	s.c->shim_pid = getpid();
	s.c->shim_start = spawn_proc_start_time(s.c->shim_pid);
	trace_mark("shim-load");
	int rc = run(&s, root);
	cgroup_free(s.cg);
	container_free(s.c);
	free(s.log_path);
	free(s.log1_path);
	if (s.log_fd >= 0)
		close(s.log_fd);
	return rc;
}
