/*
 * The shim of one container (shim.h): what shoal-shim runs after parsing its arguments, and
 * what a shim forked by shim_fork or by the shim server (shim_server) runs at once.
 */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/close_range.h>

#include <jansson.h>

#include "cgroup.h"
#include "container.h"
#include "err.h"
#include "fdio.h"
#include "logfile.h"
#include "seccomp.h"
#include "spawn.h"
#include "trace.h"
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
run(struct shim *s)
{
	const char *root = s->c->root;
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
	sc.limits = &c->spec.limits;
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

int
shim_serve(struct container *c, int sync_fd, const int attach[2])
{
	struct shim s = {.c = c,
	                 .sync_fd = sync_fd,
	                 .attach = {attach[0], attach[1]},
	                 .pipe_rd = {-1, -1},
	                 .log_fd = -1};
	int rc;

	for (int i = 0; i < 2; i++)
		if (s.attach[i] >= 0)
			fcntl(s.attach[i], F_SETFD, FD_CLOEXEC);
	if (s.sync_fd >= 0)
		fcntl(s.sync_fd, F_SETFD, FD_CLOEXEC);
	/* The starter may go away at any time: a closed attach pipe or socket is not fatal. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	c->shim_pid = getpid();
	c->shim_start = spawn_proc_start_time(c->shim_pid);
	/* Hold no directory of the starter's (a mount point someone wants to unmount). */
	if (chdir("/") == -1) {
		struct shoal_err err;
		err_set(&err, errno, "shim: chdir /");
		rc = fail_start(&s, 125, &err);
	} else {
		rc = run(&s);
	}
	cgroup_free(s.cg);
	container_free(s.c);
	free(s.log_path);
	free(s.log1_path);
	if (s.log_fd >= 0)
		close(s.log_fd);
	for (int i = 0; i < 2; i++)
		if (s.attach[i] >= 0)
			close(s.attach[i]);
	if (s.sync_fd >= 0)
		close(s.sync_fd);
	return rc;
}

/*
 * Our command line as ps and pgrep -f show it: "shoal-shim --root ROOT --id ID", as for an
 * exec'd shim (the starter's would name an image and a command, nothing that tells one shim
 * from another). Written over the starter's arguments and environment, setproctitle's way:
 * the kernel reads a command line whose last NUL is gone as one string up to the end of the
 * environment. PR_SET_MM would move it instead, but takes CAP_SYS_RESOURCE, which a root
 * runtime may not hold (not on this project's build machine). The environment is copied
 * first: getenv still works.
 */
static void
set_title(const struct container *c)
{
	unsigned long long a[4]; /* arg_start, arg_end, env_start, env_end */
	char buf[1024], *p;
	ssize_t n;
	size_t len;
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* Fields 48-51, counted after comm's ')' (field 2), which may hold spaces. */
	p = strrchr(buf, ')');
	for (int field = 2; p && field < 48; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %llu %llu %llu %llu", &a[0], &a[1], &a[2], &a[3]) != 4 ||
	    a[1] <= a[0])
		return;
	len = (size_t)((a[2] == a[1] && a[3] > a[2] ? a[3] : a[1]) - a[0]);
	if (a[2] == a[1] && a[3] > a[2]) {
		size_t ne = 0;
		char **copy;
		while (environ && environ[ne])
			ne++;
		copy = xcalloc(ne + 1, sizeof(char *));
		for (size_t i = 0; i < ne; i++)
			copy[i] = xstrdup(environ[i]);
		environ = copy;
	}
	p = (char *)(uintptr_t)a[0];
	memset(p, 0, len);
	/* Longer than the arguments: no NUL at their end, so the kernel reads on (see above). */
	snprintf(p, len, "shoal-shim --root %s --id %s", c->root, c->id);
}

/* The forked shim's first steps, before it knows its container: none of the starter's
 * handlers (shoalrt run's signal forwarding) nor its mask; a session of our own (no
 * terminal's signals, and out of the starter's process group: a Ctrl-C in the shell reaches
 * the container through shoalrt's forwarding, not us); "shoal-shim" in ps and pgrep -x. */
static void
fork_child_prepare(void)
{
	struct shoal_err ignored;

	(void)spawn_signals_default(&ignored);
	setsid();
	prctl(PR_SET_NAME, "shoal-shim", 0, 0, 0);
}

/* Then, with c: a process like the one shoal-shim --daemon becomes. Never returns. */
static void
fork_child_serve(struct container *c, const int keep[3])
{
	struct container_msg m = {.type = CONTAINER_MSG_ERROR, .exit_code = 125};
	int moved[3] = {-1, -1, -1}, attach[2] = {-1, -1}, null, tell = keep[0];

	/* What ps and pgrep -f show, as for an exec'd shoal-shim. */
	set_title(c);
	/* Keep the sync socket and the outputs on 3, 4, 5 (sources moved above 5 first, so
	 * placing one cannot clobber another), /dev/null on 0-2, and nothing else of the
	 * starter's: its other fds would stay open as long as the container lives. */
	for (int i = 0; i < 3; i++)
		if (keep[i] >= 0 && (moved[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, 6)) == -1)
			goto fail;
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null == -1)
		goto fail;
	for (int i = 0; i < 3; i++)
		if (dup2(null, i) == -1)
			goto fail;
	for (int i = 0; i < 3; i++) {
		if (moved[i] >= 0 && dup2(moved[i], 3 + i) == -1)
			goto fail;
		if (moved[i] < 0)
			close(3 + i); /* whatever of the starter's was there (its end of sync) */
	}
	tell = moved[0] >= 0 ? 3 : -1;
	if (syscall(SYS_close_range, 6U, ~0U, 0U) == -1)
		goto fail;
	/* The trace file (if any) was one of the fds just closed. */
	trace_reopen();
	trace_mark("shim-forked");
	attach[0] = moved[1] >= 0 ? 4 : -1;
	attach[1] = moved[2] >= 0 ? 5 : -1;
	_exit(shim_serve(c, moved[0] >= 0 ? 3 : -1, attach));
fail:
	err_set(&m.err, errno, "shim: arrange fds");
	if (tell >= 0)
		(void)send(tell, &m, sizeof(m), MSG_NOSIGNAL);
	_exit(1);
}

int
shim_fork(struct container *c, int sync, const struct container_attach *a, struct shoal_err *err)
{
	const int keep[3] = {sync, a ? a->stdout_fd : -1, a ? a->stderr_fd : -1};
	pid_t pid;

	/* One fork, not two: the caller is short-lived (it exits once the container has, or at
	 * once when detached), so the shim soon belongs to init (or the subreaper) as after
	 * shoal-shim's double fork, and never waits on a middle process. */
	pid = fork();
	if (pid == -1)
		return err_set(err, errno, "fork the shim");
	if (pid == 0) {
		fork_child_prepare();
		fork_child_serve(c, keep);
	}
	return 0;
}

/* A failed request: tell its starter over its sync socket, the only channel it reads. */
static void
server_refuse(int sync, const struct shoal_err *e)
{
	struct container_msg m = {.type = CONTAINER_MSG_ERROR, .exit_code = 125, .err = *e};

	(void)send(sync, &m, sizeof(m), MSG_NOSIGNAL);
}

/* Take now, while idle, the copy-on-write faults a start would: the pages of the stack and
 * of the heap that loading a container's state writes (we share them with the server). */
static void __attribute__((noinline)) spare_prefault(void)
{
	volatile char stack[128 * 1024];
	void *p[64];

	for (size_t i = 0; i < sizeof(stack); i += 4096)
		stack[i] = 0;
	for (int i = 0; i < 64; i++)
		p[i] = xmalloc((size_t)(16 << (i % 8)));
	for (int i = 0; i < 64; i++)
		free(p[i]);
	json_decref(json_loads("{\"a\": [1, 2, {\"b\": \"c\"}], \"d\": {\"e\": 1.5, \"f\": null}}",
	                       0, NULL));
}

/*
 * The spare: a shim forked before there is a container for it, waiting for the next request
 * on fd. It tells the server on note that it took one ('r', the server then forks the next
 * spare) or that the starter is gone ('e'), and becomes that container's shim. Never returns.
 */
static void
server_spare(int fd, int note)
{
	struct shim_request rq;
	char cbuf[CMSG_SPACE(sizeof(int) * 3)];
	struct iovec iov = {&rq, sizeof(rq)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int fds[3] = {-1, -1, -1}, nfds = 0;
	struct shoal_err err;
	struct container *c;
	ssize_t n;

	fork_child_prepare();
	spare_prefault();
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (write(note, n > 0 ? "r" : "e", 1) != 1 || n <= 0)
		_exit(0);
	close(note);
	trace_mark("server-request");
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfds > 3)
				nfds = 3;
			memcpy(fds, CMSG_DATA(cm), (size_t)nfds * sizeof(int));
		}
	/* A malformed request has nobody to answer but its sync socket, if any. */
	if (n != (ssize_t)sizeof(rq) || nfds != 1 + !!rq.has_stdout + !!rq.has_stderr ||
	    memchr(rq.root, '\0', sizeof(rq.root)) == NULL ||
	    memchr(rq.id, '\0', sizeof(rq.id)) == NULL) {
		err_set(&err, EPROTO, "shim server: malformed request");
		if (nfds > 0)
			server_refuse(fds[0], &err);
		_exit(1);
	}
	c = container_load(rq.root, rq.id, &err);
	if (c == NULL) {
		server_refuse(fds[0], &err);
		_exit(1);
	}
	trace_mark("server-load");
	const int keep[3] = {fds[0], rq.has_stdout ? fds[1] : -1,
	                     rq.has_stderr ? fds[rq.has_stdout ? 2 : 1] : -1};
	fork_child_serve(c, keep);
}

int
shim_server(int fd)
{
	struct sigaction sa = {.sa_handler = SIG_IGN};

	/* Our shims are reaped by the kernel as they exit (each resets its signals first). */
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	/* Hello: the starter sends nothing before it knows we are a server (an older shim
	 * would exit with a usage error, taking a request with it). */
	if (send(fd, "s", 1, MSG_NOSIGNAL) != 1)
		return 1;
	/* One spare at a time, forked ahead: a start then costs no fork, only the spare's
	 * wake-up. A spare that dies without a word ends us too: the starter sees the EOF and
	 * starts a server anew, or execs its shims. */
	for (;;) {
		int note[2];
		pid_t pid;
		ssize_t n;
		char b = 0;

		if (pipe2(note, O_CLOEXEC) == -1)
			return 1;
		pid = fork();
		if (pid == 0) {
			close(note[0]);
			server_spare(fd, note[1]);
		}
		close(note[1]);
		if (pid == -1) {
			close(note[0]);
			return 1;
		}
		do
			n = read(note[0], &b, 1);
		while (n == -1 && errno == EINTR);
		close(note[0]);
		if (n != 1 || b != 'r')
			return n == 1 && b == 'e' ? 0 : 1;
	}
}
