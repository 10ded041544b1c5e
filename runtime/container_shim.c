/*
 * A container's shim (shoal-shim, runtime/shim.h) seen from its starter: where the binary is,
 * spawning it detached and reading what it reports over the sync socket (started, failed,
 * exited), and running a command in a running container through a `shoal-shim exec` child.
 */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/close_range.h>

#include "err.h"
#include "shim.h"
#include "spawn.h"
#include "trace.h"
#include "util.h"

char *
container_shim_path(void)
{
	const char *env = getenv("SHOAL_SHIM");
	char self[PATH_MAX];
	ssize_t n;

	if (env && env[0])
		return xstrdup(env);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return xstrdup("shoal-shim");
	self[n] = '\0';
	return xasprintf("%s/shoal-shim", dirname(self));
}

/*
 * posix_spawn bin (a vfork-like clone, no copy of our page tables: the agent's are large)
 * into a new session, with /dev/null on 0-2, fds[i] on 3 + i (those >= 0; sources above 5,
 * so placing one cannot clobber another) and none of our blocked signals. Returns 0 or the
 * error number.
 */
static int
spawn_detached(const char *bin, char *const argv[], const int fds[3], pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
	int rc = 0;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	/* dup2 onto a target clears its close-on-exec flag: these are the fds it keeps. */
	for (int i = 0; i < 3 && rc == 0; i++)
		if (fds[i] >= 0)
			rc = posix_spawn_file_actions_adddup2(&fa, fds[i], 3 + i);
	if (rc == 0)
		rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, 0, 1);
	if (rc == 0)
		rc = posix_spawn_file_actions_adddup2(&fa, 0, 2);
	/* A session of its own (no terminal's signals), and none of our blocked signals. */
	if (rc == 0)
		rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (rc == 0)
		rc = posix_spawn(pid, bin, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return rc;
}

/*
 * Start the shim (spawn_detached) with the sync socket on 3 and the attached stdout/stderr
 * on 4 and 5. The shim forks once more and its first process exits at once (--daemon), so
 * the shim is nobody's child but init's (or the subreaper's) and outlives its starter, as
 * after a double fork. Returns that first process's pid, or -1 with err.
 */
static pid_t
spawn_shim(const char *shim, const struct container *c, int sync, const struct container_attach *a,
           struct shoal_err *err)
{
	/* Sources above 5 first, so placing one cannot clobber another. */
	cleanup_close int s = fcntl(sync, F_DUPFD_CLOEXEC, 6);
	cleanup_close int o = a && a->stdout_fd >= 0 ? fcntl(a->stdout_fd, F_DUPFD_CLOEXEC, 6) : -1;
	cleanup_close int e = a && a->stderr_fd >= 0 ? fcntl(a->stderr_fd, F_DUPFD_CLOEXEC, 6) : -1;
	char *argv[13];
	pid_t pid = -1;
	int k = 0, rc;

	if (s == -1 || (a && a->stdout_fd >= 0 && o == -1) || (a && a->stderr_fd >= 0 && e == -1))
		return err_set(err, errno, "shim: arrange fds");
	argv[k++] = "shoal-shim";
	argv[k++] = "--daemon";
	argv[k++] = "--root";
	argv[k++] = c->root;
	argv[k++] = "--id";
	argv[k++] = (char *)c->id;
	argv[k++] = "--sync-fd";
	argv[k++] = "3";
	if (o >= 0) {
		argv[k++] = "--stdout-fd";
		argv[k++] = "4";
	}
	if (e >= 0) {
		argv[k++] = "--stderr-fd";
		argv[k++] = "5";
	}
	argv[k] = NULL;
	rc = spawn_detached(shim, argv, (const int[3]){s, o, e}, &pid);
	if (rc != 0)
		return err_set(err, rc, "exec %s", shim);
	return pid;
}

/* container_start's launcher: exec shoal-shim --daemon and wait for its first process, which
 * exits once the shim proper is on its own. */
static int
exec_shim(struct container *c, int sync, const struct container_attach *a, struct shoal_err *err)
{
	cleanup_free char *shim = container_shim_path();
	int status;
	pid_t pid;

	pid = spawn_shim(shim, c, sync, a, err);
	if (pid == -1)
		return -1;
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return err_set(err, 0, "could not start the shim %s", shim);
	return 0;
}

/*
 * The shim server of this process (shoal-shim --server, runtime/shim.h): started at the first
 * start, then asked for a shim per start. Its shims are its children, so none is ours and
 * none waits on a middle process; it exits at EOF on its socket, i.e. with us.
 */
static pthread_mutex_t server_lock = PTHREAD_MUTEX_INITIALIZER;
static int server_fd = -1;
static pid_t server_pid = -1;
/* The binary it runs: another $SHOAL_SHIM, or a new file there (an upgrade: its identity is
 * device, inode, size and mtime), gets a new server. */
static char *server_bin;
static struct stat server_st;

static bool
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* With server_lock held. */
static void
server_drop(void)
{
	if (server_fd >= 0)
		close(server_fd);
	server_fd = -1;
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		while (waitpid(server_pid, NULL, 0) == -1 && errno == EINTR)
			;
	}
	server_pid = -1;
	free(server_bin);
	server_bin = NULL;
}

/* With server_lock held. */
static int
server_start(const char *shim, struct shoal_err *err)
{
	char *argv[] = {"shoal-shim", "--server", NULL};
	int sv[2], rc, s;
	ssize_t n;
	char b;

	if (stat(shim, &server_st) == -1)
		return err_set(err, errno, "stat %s", shim);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return err_set(err, errno, "socketpair");
	/* Above 5, as spawn_detached wants its sources. */
	s = fcntl(sv[1], F_DUPFD_CLOEXEC, 6);
	close(sv[1]);
	rc = s == -1 ? errno : spawn_detached(shim, argv, (const int[3]){s, -1, -1}, &server_pid);
	if (s >= 0)
		close(s);
	if (rc != 0) {
		close(sv[0]);
		server_pid = -1;
		return err_set(err, rc, "exec %s --server", shim);
	}
	server_fd = sv[0];
	server_bin = xstrdup(shim);
	/* Its hello, or EOF: a shim that is no server (an older one) has exited. */
	do
		n = recv(server_fd, &b, 1, 0);
	while (n == -1 && errno == EINTR);
	if (n != 1) {
		server_drop();
		return err_set(err, 0, "%s is no shim server", shim);
	}
	return 0;
}

/* Ask the server for c's shim. -1: no server to ask (the caller execs a shim instead). */
static int
server_request(const char *shim, struct container *c, int sync, const struct container_attach *a)
{
	struct shim_request rq = {.has_stdout = a && a->stdout_fd >= 0,
	                          .has_stderr = a && a->stderr_fd >= 0};
	char cbuf[CMSG_SPACE(sizeof(int) * 3)] = {0};
	struct iovec iov = {&rq, sizeof(rq)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf};
	struct shoal_err ignored;
	struct cmsghdr *cm;
	struct stat st;
	int fds[3], n = 0, rc = -1;

	if (snprintf(rq.root, sizeof(rq.root), "%s", c->root) >= (int)sizeof(rq.root))
		return -1;
	memcpy(rq.id, c->id, sizeof(rq.id));
	fds[n++] = sync;
	if (rq.has_stdout)
		fds[n++] = a->stdout_fd;
	if (rq.has_stderr)
		fds[n++] = a->stderr_fd;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
	pthread_mutex_lock(&server_lock);
	if (server_fd >= 0 &&
	    (strcmp(server_bin, shim) != 0 || stat(shim, &st) == -1 || !same_file(&st, &server_st)))
		server_drop();
	if (server_fd < 0 && server_start(shim, &ignored) == -1)
		goto out;
	/* A server killed since: start a new one, once. */
	for (int attempt = 0; attempt < 2 && rc == -1; attempt++) {
		if (sendmsg(server_fd, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(rq)) {
			rc = 0;
			break;
		}
		server_drop();
		if (attempt == 0 && server_start(shim, &ignored) == -1)
			break;
	}
out:
	pthread_mutex_unlock(&server_lock);
	return rc;
}

/* container_start's launcher: a shim forked by our shim server; without one, an exec'd
 * shoal-shim --daemon. */
static int
server_shim(struct container *c, int sync, const struct container_attach *a, struct shoal_err *err)
{
	cleanup_free char *shim = container_shim_path();

	if (server_request(shim, c, sync, a) == 0)
		return 0;
	return exec_shim(c, sync, a, err);
}

int
container_start(struct container *c, const struct container_attach *a, int *sync_fd, int *exit_code,
                struct shoal_err *err)
{
	return container_start_via(c, a, server_shim, sync_fd, exit_code, err);
}

int
container_start_via(struct container *c, const struct container_attach *a,
                    container_shim_launcher launch, int *sync_fd, int *exit_code,
                    struct shoal_err *err)
{
	cleanup_close int mine = -1;
	struct container_msg m;
	int sv[2], rc;
	ssize_t n;

	*exit_code = 125;
	*sync_fd = -1;
	if (c->status != CONTAINER_CREATED)
		return err_set(err, 0, "container %s is %s", c->spec.name,
		               container_status_name(c->status));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return err_set(err, errno, "socketpair");
	mine = sv[0];
	rc = launch(c, sv[1], a, err);
	close(sv[1]);
	if (rc == -1)
		return -1;
	trace_mark("shim-fork");
	do
		n = recv(mine, &m, sizeof(m), 0);
	while (n == -1 && errno == EINTR);
	trace_mark("started-reported");
	if (n != (ssize_t)sizeof(m))
		return err_set(err, n == -1 ? errno : EIO, "the shim exited before reporting");
	if (m.type == CONTAINER_MSG_ERROR) {
		*exit_code = m.exit_code;
		*err = m.err;
		return -1;
	}
	if (m.type != CONTAINER_MSG_STARTED)
		return err_set(err, EPROTO, "shim sent message %d", m.type);
	c->status = CONTAINER_RUNNING;
	c->pid = m.pid;
	*exit_code = 0;
	*sync_fd = steal_fd(&mine);
	return 0;
}

pid_t
container_exec_start(const char *root, const char *id, char *const *argv, const int stdio[3],
                     struct shoal_err *err)
{
	return container_exec_start_tty(root, id, argv, stdio, -1, err);
}

int
container_exec_recv_tty(int console)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	char byte;
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	ssize_t n;
	int fd = -1;

	do
		n = recvmsg(console, &mh, MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (fd == -1)
		errno = 0;
	return fd;
}

pid_t
container_exec_start_tty(const char *root, const char *id, char *const *argv, const int stdio[3],
                         int console, struct shoal_err *err)
{
	cleanup_free char *shim = container_shim_path();
	cleanup_close int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	cleanup_free char **args = NULL;
	size_t n = 0, k = 0;
	int fds[3];
	pid_t pid;

	if (null == -1)
		return err_set(err, errno, "open /dev/null");
	while (argv && argv[n])
		n++;
	if (n == 0)
		return err_set(err, 0, "exec: no command");
	/* Everything the child needs is made here: after a fork from a threaded process (the
	 * agent), it may only make async-signal-safe calls. */
	args = xcalloc(n + 9, sizeof(char *));
	args[k++] = "shoal-shim";
	args[k++] = "exec";
	if (console >= 0)
		args[k++] = "--tty"; /* the socket is its fd 3 */
	args[k++] = "--root";
	args[k++] = (char *)root;
	args[k++] = "--id";
	args[k++] = (char *)id;
	args[k++] = "--";
	for (size_t i = 0; i < n; i++)
		args[k++] = argv[i];
	for (int i = 0; i < 3; i++)
		fds[i] = stdio && stdio[i] >= 0 ? stdio[i] : null;
	pid = fork();
	if (pid == -1)
		return err_set(err, errno, "fork");
	if (pid == 0) {
		struct shoal_err ignored;

		/* The caller's handlers (libevent's) and mask must not reach the shim. */
		(void)spawn_signals_default(&ignored);
		/* Above 2 first, so placing one cannot clobber another. */
		for (int i = 0; i < 3; i++)
			if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 4)) == -1)
				_exit(125);
		if (console >= 0 && (console = fcntl(console, F_DUPFD_CLOEXEC, 4)) == -1)
			_exit(125);
		for (int i = 0; i < 3; i++)
			if (dup2(fds[i], i) == -1)
				_exit(125);
		if (console >= 0 && dup2(console, 3) == -1)
			_exit(125);
		/* Nothing else of the caller's reaches the shim. */
		(void)syscall(SYS_close_range, console >= 0 ? 4U : 3U, ~0U, CLOSE_RANGE_CLOEXEC);
		execv(shim, args);
		_exit(125);
	}
	return pid;
}

int
container_wait_exit(int sync_fd, struct container_msg *m, struct shoal_err *err)
{
	ssize_t n;

	do
		n = recv(sync_fd, m, sizeof(*m), 0);
	while (n == -1 && errno == EINTR);
	if (n != (ssize_t)sizeof(*m) || m->type != CONTAINER_MSG_EXITED)
		return err_set(err, n == -1 ? errno : 0, "shim exited without reporting the exit");
	trace_mark("exit-reported");
	return m->signal ? 128 + m->signal : m->exit_code;
}
