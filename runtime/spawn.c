#include "spawn.h"
#include "spawn_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/close_range.h>

#include "cgroup.h"
#include "err.h"
#include "rootfs.h"
#include "seccomp.h"
#include "trace.h"
#include "util.h"

#define CAP(c) (1ULL << (c))

uint64_t
spawn_default_caps(void)
{
	return CAP(CAP_CHOWN) | CAP(CAP_DAC_OVERRIDE) | CAP(CAP_FSETID) | CAP(CAP_FOWNER) |
	       CAP(CAP_MKNOD) | CAP(CAP_NET_RAW) | CAP(CAP_SETGID) | CAP(CAP_SETUID) |
	       CAP(CAP_SETFCAP) | CAP(CAP_SETPCAP) | CAP(CAP_NET_BIND_SERVICE) |
	       CAP(CAP_SYS_CHROOT) | CAP(CAP_KILL) | CAP(CAP_AUDIT_WRITE);
}

uint64_t
spawn_proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	cleanup_close int fd = -1;
	ssize_t n;
	char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields restart after the last ')'. */
	p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	/* After ")" come fields 3.. ; starttime is field 22, i.e. the 20th from here. */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* ---- user ---- */

#define USER_DB_MAX (4 << 20) /* far more than any real passwd or group file */

/* The container's passwd or group file, read as the runtime still holding its privileges: it
 * is the container root's to replace (by a FIFO, a link to /dev/zero...), so only a regular
 * file, and only so much of it. NULL when it is not one. */
static char *
read_user_db(const char *file)
{
	cleanup_close int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	char *buf;
	ssize_t n;

	if (fd == -1 || fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size > USER_DB_MAX)
		return NULL;
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* Look NAME (or a number) up in a passwd/group-format file: returns the id, fills the home dir
 * (passwd) or gid field. -1 when absent. */
static long
lookup_db(const char *file, const char *name, long *gid, char *home, size_t homelen)
{
	cleanup_free char *data = read_user_db(file);
	char *save = NULL;

	if (data == NULL)
		return -1;
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* name:x:id:gid:gecos:home:shell */
		char *f[7] = {0};
		int nf = 0;
		for (char *p = line; nf < 7; nf++) {
			f[nf] = p;
			p = strchr(p, ':');
			if (p == NULL) {
				nf++;
				break;
			}
			*p++ = '\0';
		}
		if (nf < 3)
			continue;
		int numeric = isdigit((unsigned char)name[0]);
		if (numeric ? strcmp(f[2], name) != 0 : strcmp(f[0], name) != 0)
			continue;
		if (gid && nf >= 4)
			*gid = strtol(f[3], NULL, 10);
		if (home && nf >= 6)
			snprintf(home, homelen, "%s", f[5]);
		return strtol(f[2], NULL, 10);
	}
	return -1;
}

static int
resolve_user(const char *spec, uid_t *uid, gid_t *gid, char *home, size_t homelen,
             struct shoal_err *err)
{
	char buf[256];
	char *group;
	long u, g = -1;

	snprintf(home, homelen, "/");
	if (spec == NULL || spec[0] == '\0') {
		*uid = 0;
		*gid = 0;
		(void)lookup_db("/etc/passwd", "0", NULL, home, homelen);
		if (strcmp(home, "/") == 0)
			snprintf(home, homelen, "/root");
		return 0;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	group = strchr(buf, ':');
	if (group)
		*group++ = '\0';
	u = lookup_db("/etc/passwd", buf, &g, home, homelen);
	if (u == -1) {
		char *end;
		u = strtol(buf, &end, 10);
		if (buf[0] == '\0' || *end != '\0' || u < 0)
			return err_set(err, 0,
			               "unable to find user %s: no matching entries in passwd file",
			               buf);
		g = -1;
	}
	if (group != NULL) {
		g = lookup_db("/etc/group", group, NULL, NULL, 0);
		if (g == -1) {
			char *end;
			g = strtol(group, &end, 10);
			if (group[0] == '\0' || *end != '\0' || g < 0)
				return err_set(err, 0, "unable to find group %s", group);
		}
	}
	*uid = (uid_t)u;
	*gid = (gid_t)(g < 0 ? 0 : g);
	return 0;
}

/* ---- capabilities ---- */

static int
drop_capabilities(uid_t uid, gid_t gid, struct shoal_err *err)
{
	uint64_t keep = spawn_default_caps();
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];

	/* Bounding set first: that needs CAP_SETPCAP, which we still have. EINVAL marks the
	 * first capability this kernel does not know. */
	for (int c = 0; c < 64; c++) {
		if (keep & CAP(c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == -1) {
			if (errno == EINVAL)
				break;
			return err_set(err, errno, "drop capability %d from the bounding set", c);
		}
	}
	if (setgroups(1, &gid) == -1)
		return err_set(err, errno, "setgroups");
	if (setresgid(gid, gid, gid) == -1)
		return err_set(err, errno, "setgid %d", (int)gid);
	/* A non-root uid clears the permitted and effective sets on its own (no keepcaps): as in
	 * Docker, a non-root user keeps only the bounding set. */
	if (setresuid(uid, uid, uid) == -1)
		return err_set(err, errno, "setuid %d", (int)uid);
	if (uid != 0)
		return 0;
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)keep;
	data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
	/* Inheritable stays empty (moby since CVE-2022-24769). */
	if (syscall(SYS_capset, &hdr, data) == -1)
		return err_set(err, errno, "capset");
	return 0;
}

/* ---- exec ---- */

static const char *
env_get(char *const *env, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; env && env[i]; i++)
		if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=')
			return env[i] + kl + 1;
	return NULL;
}

/* Resolve argv0 against PATH of the container's env, in the container's root. */
static int
find_executable(const char *argv0, char *const *env, char *out, size_t outlen,
                struct shoal_err *err)
{
	const char *path = env_get(env, "PATH");
	struct stat st;

	if (strchr(argv0, '/') != NULL) {
		if (stat(argv0, &st) == -1)
			return err_set(err, 0, "executable file not found: %s", argv0);
		snprintf(out, outlen, "%s", argv0);
		return 0;
	}
	if (path == NULL)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *p = path; *p;) {
		const char *colon = strchrnul(p, ':');
		int n = snprintf(out, outlen, "%.*s/%s", (int)(colon - p), p, argv0);
		if (n > 0 && (size_t)n < outlen && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(out, X_OK) == 0)
			return 0;
		p = *colon ? colon + 1 : colon;
	}
	return err_set(err, 0, "executable file not found in $PATH: %s", argv0);
}

/* Env plus what docker run always sets when the image does not: PATH, HOME. */
static char **
complete_env(char *const *env, const char *home)
{
	size_t n = 0;
	char **out;

	while (env && env[n])
		n++;
	out = xcalloc(n + 3, sizeof(char *));
	memcpy(out, env, n * sizeof(char *));
	if (env_get(env, "PATH") == NULL)
		out[n++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	if (env_get(env, "HOME") == NULL)
		out[n++] = xasprintf("HOME=%s", home);
	return out;
}

static void
set_rlimits(void)
{
	/* Docker's default open-files limit, clamped to what this host allows: raising a hard
	 * limit past fs.nr_open fails with EPERM, and podman trips on exactly that. */
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t want = 1048576;
		if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
			want = rl.rlim_max;
		rl.rlim_cur = rl.rlim_max = want;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ---- the steps every container process goes through ---- */

int
spawn_signals_default(struct shoal_err *err)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) == -1)
		return err_set(err, errno, "sigprocmask");
	return 0;
}

/*
 * First thing in a new child, init or exec alike: default signals (the shim blocks SIGCHLD
 * and ignores SIGPIPE; both would survive exec), death with the parent while we set up, not
 * dumpable (until the exec, no process of the container may ptrace us or open our
 * /proc/PID/{exe,fd,root}, which still lead to the runtime's binary and the host), stdio.
 */
int
spawn_child_begin(const struct spawn_process *p, struct shoal_err *err)
{
	if (spawn_signals_default(err) == -1)
		return -1;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		return err_set(err, errno, "prctl PDEATHSIG");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		return err_set(err, errno, "prctl DUMPABLE");
	for (int i = 0; i < 3; i++)
		if (p->stdio[i] >= 0 && p->stdio[i] != i && dup2(p->stdio[i], i) == -1)
			return err_set(err, errno, "dup2 stdio");
	return 0;
}

/*
 * Last, in the container's namespaces, cgroups and root, with its rlimits: the user, the
 * working directory, the capabilities, no_new_privs (if asked), the seccomp filter, and the
 * exec. Returns only on failure. parent: -1 for a container's init, which outlives its
 * starter; else a pidfd of the starter, whose death the program does not outlive (SIGKILL).
 */
int
spawn_child_exec(const struct spawn_process *p, int parent, int *stage, struct shoal_err *err)
{
	char exe[PATH_MAX], home[PATH_MAX];
	uid_t uid = 0;
	gid_t gid = 0;
	char **env;

	*stage = SPAWN_SETUP;
	if (resolve_user(p->user, &uid, &gid, home, sizeof(home), err) == -1)
		return -1;
	/* The terminal is the user's, as a login's is (docker exec -t does the same): a program
	 * that opens it by name (ttyname) can. */
	if (p->tty && fchown(0, uid, (gid_t)-1) == -1)
		return err_set(err, errno, "chown the pseudo-terminal");
	if (p->cwd && p->cwd[0]) {
		/* docker run creates a missing working directory. */
		if (util_mkdir_p(p->cwd, 0755, err) == -1 || chdir(p->cwd) == -1)
			return err_set(err, errno, "chdir to working directory %s", p->cwd);
	}
	/* Without no_new_privs, installing a filter takes CAP_SYS_ADMIN, which the container
	 * never holds: install it while we still do, before the capabilities go (runc and crun
	 * do the same). The filter allows all that is left to do here (setgroups, setres[ug]id,
	 * capset, prctl, stat, close_range, poll, execve), as Docker's profile does. */
	if (!p->no_new_privs && p->seccomp && seccomp_install(p->seccomp, err) == -1)
		return -1;
	if (drop_capabilities(uid, gid, err) == -1)
		return -1;
	trace_mark("ct-user-caps");
	env = complete_env(p->env, home);
	*stage = SPAWN_EXEC;
	if (p->argv == NULL || p->argv[0] == NULL)
		return err_set(err, 0, "no command specified");
	if (find_executable(p->argv[0], env, exe, sizeof(exe), err) == -1)
		return -1;
	*stage = SPAWN_SETUP;
	/* Off by default, as in Docker: an image's setuid binaries and file capabilities (a
	 * non-root server given cap_net_bind_service) work, within the bounding set. */
	if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return err_set(err, errno, "no_new_privs");
	/* A uid change cleared the parent-death signal: set what the program keeps anew. */
	if (prctl(PR_SET_PDEATHSIG, parent >= 0 ? SIGKILL : 0) == -1)
		return err_set(err, errno, "prctl PDEATHSIG");
	/* Did the starter die before the signal was armed? getppid() cannot tell: it lives
	 * outside our pid namespace, as does whoever we would be reparented to. Its pidfd can. */
	if (parent >= 0) {
		struct pollfd pf = {parent, POLLIN, 0};
		if (poll(&pf, 1, 0) != 0)
			return err_set(err, 0, "the runtime exited during the setup");
	}
	/* Every fd but stdio closes at exec, the sync pipe included: that EOF is our success. */
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == -1)
		return err_set(err, errno, "close_range");
	/* Last: the filter refuses syscalls the setup above needs (mount, pivot_root...). */
	if (p->no_new_privs && p->seccomp && seccomp_install(p->seccomp, err) == -1)
		return -1;
	*stage = SPAWN_EXEC;
	trace_mark("ct-seccomp-execve");
	execve(exe, p->argv, env);
	if (errno == ENOENT)
		return err_set(err, 0, "executable file not found: %s", p->argv[0]);
	return err_set(err, errno, "exec %s", p->argv[0]);
}

/*
 * The starter's half of the sync pipe: EOF means the child exec'd; a report means it failed
 * (then it is reaped here). Closes fd.
 */
pid_t
spawn_await_exec(pid_t pid, int fd, int *exit_code, struct shoal_err *err)
{
	struct spawn_report rep;
	ssize_t n;

	do
		n = read(fd, &rep, sizeof(rep));
	while (n == -1 && errno == EINTR);
	close(fd);
	if (n == 0)
		return pid;
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(rep))
		return err_set(err, n == -1 ? errno : EIO, "container setup: short report");
	*err = rep.err;
	if (rep.stage == SPAWN_EXEC)
		*exit_code = strncmp(rep.err.msg, "executable file not found", 25) == 0 ? 127 : 126;
	return -1;
}

/* ---- a container's first process ---- */

/*
 * Wait for the starter's go (spawn_container): one byte, with the join files of our cgroup
 * when there is one. Then join it and unshare the cgroup namespace (join first: the new
 * namespace is rooted at our cgroup), and with a bridge, configure the eth0 it has made.
 * Nothing of the image has run yet: the cgroup holds every process of the container.
 */
static int
child_go(const struct spawn_config *c, int go_fd, struct shoal_err *err)
{
	char cbuf[CMSG_SPACE(sizeof(int) * CGROUP_MAX_FDS)];
	char b;
	struct iovec iov = {&b, 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int fds[CGROUP_MAX_FDS], nfds = 0, rc = 0;
	ssize_t n;

	do
		n = recvmsg(go_fd, &mh, MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	close(go_fd);
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfds > CGROUP_MAX_FDS)
				nfds = CGROUP_MAX_FDS;
			memcpy(fds, CMSG_DATA(cm), (size_t)nfds * sizeof(int));
		}
	if (n != 1)
		rc = err_set(err, 0, "the runtime did not prepare the container");
	else if (mh.msg_flags & MSG_CTRUNC)
		rc = err_set(err, 0, "cgroup: too many join files");
	/* v1: "tasks" with "0" moves this thread alone (cgroup.c: no global lock). */
	for (int i = 0; i < nfds; i++) {
		if (rc == 0 && write(fds[i], "0", 1) != 1)
			rc = err_set(err, errno, "join cgroup %s", c->cg ? c->cg->path : "?");
		close(fds[i]);
	}
	if (rc == -1)
		return -1;
	if (c->cg != NULL && unshare(CLONE_NEWCGROUP) == -1)
		return err_set(err, errno, "unshare cgroup namespace");
	if (netns_needs_attach(&c->net) && netns_configure(&c->net, err) == -1)
		return err_prefix(err, "network");
	return 0;
}

/* The child: runs in the new namespaces, returns only on failure. go_fd: see spawn_container. */
static int
child_main(const struct spawn_config *c, int go_fd, int *stage, struct shoal_err *err)
{
	*stage = SPAWN_SETUP;
	trace_mark("ct-clone");
	if (spawn_child_begin(&c->proc, err) == -1)
		return -1;
	if (netns_enter(&c->net, err) == -1)
		return err_prefix(err, "network");
	if (c->hostname && sethostname(c->hostname, strlen(c->hostname)) == -1)
		return err_set(err, errno, "sethostname %s", c->hostname);
	/* Nothing we mount may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)
		return err_set(err, errno, "make / private");
	trace_mark("ct-netns-uts");
	if (rootfs_mount_overlay(c->layers, c->nlayers, c->upper, c->work, c->rootfs, err) == -1)
		return -1;
	trace_mark("ct-overlay");
	if (rootfs_setup_mounts(c->rootfs, err) == -1)
		return -1;
	if (c->etc_dir && rootfs_bind_etc_files(c->rootfs, c->etc_dir, err) == -1)
		return -1;
	trace_mark("ct-mounts");
	/* As late as possible: the starter creates our cgroup (and our veth) meanwhile. */
	if (go_fd >= 0 && child_go(c, go_fd, err) == -1)
		return -1;
	trace_mark("ct-cgroup-join");
	if (rootfs_pivot(c->rootfs, err) == -1)
		return -1;
	trace_mark("ct-pivot-root");
	set_rlimits();
	/* The container's init outlives the shim's death: it is the container. */
	return spawn_child_exec(&c->proc, -1, stage, err);
}

/* The starter's go (child_go): one byte, and the cgroup's join files if there is one. */
static int
send_go(int fd, const struct cgroup *cg, struct shoal_err *err)
{
	char cbuf[CMSG_SPACE(sizeof(int) * CGROUP_MAX_FDS)] = {0};
	char b = 'g';
	struct iovec iov = {&b, 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (cg != NULL && cg->nprocs > 0) {
		struct cmsghdr *cm;
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)cg->nprocs);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)cg->nprocs);
		memcpy(CMSG_DATA(cm), cg->procs_fd, sizeof(int) * (size_t)cg->nprocs);
	}
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) != 1)
		return err_set(err, errno, "tell the container to go on");
	return 0;
}

pid_t
spawn_container(const struct spawn_config *c, int *exit_code, struct shoal_err *err)
{
	int flags =
	    CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | netns_clone_flags(&c->net);
	struct spawn_report rep;
	int sync[2], go[2] = {-1, -1};
	pid_t pid;

	*exit_code = 125;
	if (pipe2(sync, O_CLOEXEC) == -1)
		return err_set(err, errno, "pipe");
	/* The child builds its root while we create its cgroup (and, bridged, its veth, which
	 * only we in the host's namespace can make once its namespace exists): work of two
	 * processes that need not wait for each other until the child must join. It waits on
	 * this socket for one byte saying "go", with the cgroup's join files. */
	if ((c->cg != NULL || netns_needs_attach(&c->net)) &&
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, go) == -1) {
		err_set(err, errno, "socketpair");
		close(sync[0]);
		close(sync[1]);
		return -1;
	}
	/* A fork-like clone (no new stack): the child runs on a copy of ours. We are single-
	 * threaded here, which this needs. The cgroup namespace is unshared by the child once it
	 * joined its cgroup. The trace file is opened first, so the child has it after its
	 * pivot_root. */
	trace_init();
	trace_mark("shim-clone-start");
	pid = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid == -1) {
		err_set(err, errno, "clone");
		close(sync[0]);
		close(sync[1]);
		if (go[0] >= 0) {
			close(go[0]);
			close(go[1]);
		}
		return -1;
	}
	if (pid == 0) {
		close(sync[0]);
		if (go[0] >= 0)
			close(go[0]);
		memset(&rep, 0, sizeof(rep));
		child_main(c, go[1], &rep.stage, &rep.err);
		(void)!write(sync[1], &rep, sizeof(rep));
		_exit(127);
	}
	close(sync[1]);
	if (go[0] >= 0) {
		int rc = 0;

		close(go[1]);
		if (c->cg != NULL) {
			rc = cgroup_create(c->cg, c->limits, err);
			trace_mark("shim-cgroup");
		}
		if (rc == 0 && netns_needs_attach(&c->net) && netns_attach(&c->net, pid, err) == -1)
			rc = err_prefix(err, "network");
		/* A child that failed meanwhile has left: its report is on sync. */
		if (rc == 0 && send_go(go[0], c->cg, err) == -1 && err->code != EPIPE)
			rc = -1;
		close(go[0]);
		if (rc == -1) {
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
				;
			close(sync[0]);
			return -1;
		}
	}
	return spawn_await_exec(pid, sync[0], exit_code, err);
}
