/*
 * A process exec'd into a running container (health checks, shoalrt exec): it joins the
 * init's cgroups, namespaces and limits, then takes the same last steps as the init.
 */
#include "spawn_exec.h"
#include "spawn_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "err.h"
#include "util.h"

/* The namespaces of the container's init an exec'd process joins, besides its pid namespace
 * (which the starter joins for its children) and its cgroup namespace (joined after the
 * cgroups, as the init unshared it after joining them). */
static const struct {
	const char *name;
	int type;
} exec_ns[] = {
    {"mnt", CLONE_NEWNS}, {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC}, {"net", CLONE_NEWNET}};

/* What the starter opens on the host's side for the child, before anything is joined. */
struct exec_fds {
	int ns[ARRAY_SIZE(exec_ns)];
	int cgroupns;
	int procs[CGROUP_MAX_FDS * 2]; /* cgroup.procs of the init's cgroup in each hierarchy */
	int nprocs;
	struct rlimit limits[RLIM_NLIMITS];
	bool no_new_privs; /* the init has it */
	int parent;        /* a pidfd of the starter */
};

static void
exec_fds_close(struct exec_fds *f)
{
	for (size_t i = 0; i < ARRAY_SIZE(f->ns); i++)
		if (f->ns[i] >= 0)
			close(f->ns[i]);
	if (f->cgroupns >= 0)
		close(f->cgroupns);
	for (int i = 0; i < f->nprocs; i++)
		close(f->procs[i]);
	f->nprocs = 0;
	if (f->parent >= 0)
		close(f->parent);
	f->parent = -1;
}

/* Does the comma-separated list opts hold every entry of the comma-separated list want? */
static bool
opts_cover(const char *opts, size_t optslen, const char *want, size_t wantlen)
{
	for (const char *w = want; w < want + wantlen;) {
		const char *wend = memchr(w, ',', (size_t)(want + wantlen - w));
		size_t wl = (size_t)((wend ? wend : want + wantlen) - w);
		bool found = false;

		for (const char *o = opts; o < opts + optslen && !found;) {
			const char *oend = memchr(o, ',', (size_t)(opts + optslen - o));
			size_t ol = (size_t)((oend ? oend : opts + optslen) - o);
			found = ol == wl && memcmp(o, w, wl) == 0;
			o += ol + 1;
		}
		if (!found)
			return false;
		w += wl + 1;
	}
	return true;
}

int
spawn_exec_cgroup_dir(const char *mountinfo, const char *line, char *out, size_t outlen)
{
	/* line: ID:CONTROLLERS:PATH; ID 0 with no controllers is the unified hierarchy. */
	const char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	const char *want, *path;
	size_t wantlen, pathlen;
	bool unified;

	if (c2 == NULL)
		return -1;
	want = c1 + 1;
	wantlen = (size_t)(c2 - want);
	path = c2 + 1;
	pathlen = strcspn(path, "\n");
	unified = wantlen == 0;
	if (pathlen == 0 || path[0] != '/')
		return -1;
	for (const char *l = mountinfo; l && *l;) {
		const char *end = strchrnul(l, '\n');
		const char *f[5], *p = l, *sep;
		size_t flen[5];
		int nf;

		/* mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE SRC SUPER
		 */
		for (nf = 0; nf < 5 && p < end; nf++) {
			f[nf] = p;
			flen[nf] = strcspn(p, " \n");
			p += flen[nf];
			if (*p == ' ')
				p++;
		}
		sep = strstr(l, " - ");
		if (nf == 5 && sep && sep < end) {
			const char *type = sep + 3, *src, *super;
			size_t typelen = strcspn(type, " \n"), superlen;
			const char *root = f[3], *rel = NULL;
			size_t rootlen = flen[3];

			src = type + typelen + (type[typelen] == ' ');
			super = src + strcspn(src, " \n");
			super += *super == ' ';
			superlen = strcspn(super, " \n");
			bool match = unified ? typelen == 7 && memcmp(type, "cgroup2", 7) == 0
			                     : typelen == 6 && memcmp(type, "cgroup", 6) == 0 &&
			                           opts_cover(super, superlen, want, wantlen);
			/* A mount of a subtree shows only what is under its root. */
			if (match && rootlen == 1 && root[0] == '/')
				rel = path;
			else if (match && pathlen >= rootlen && memcmp(path, root, rootlen) == 0 &&
			         (path[rootlen] == '/' || pathlen == rootlen))
				rel = path + rootlen;
			if (rel) {
				size_t rellen = pathlen - (size_t)(rel - path);
				int n =
				    snprintf(out, outlen, "%.*s%.*s", (int)flen[4], f[4],
				             (int)(rellen == 1 && rel[0] == '/' ? 0 : rellen), rel);
				return n > 0 && (size_t)n < outlen ? 0 : -1;
			}
		}
		l = *end ? end + 1 : end;
	}
	return -1;
}

/* The line of /proc/self/cgroup for the same hierarchy as line, if the same: then there is
 * nothing to join in that hierarchy (and it may not even be mounted here). */
static bool
same_cgroup_as_ours(const char *ours, const char *line)
{
	size_t len = strcspn(line, "\n");
	const char *c1 = memchr(line, ':', len);

	if (c1 == NULL)
		return false;
	for (const char *l = ours; l && *l;) {
		const char *end = strchrnul(l, '\n');
		if (strncmp(l, line, (size_t)(c1 - line) + 1) == 0)
			return (size_t)(end - l) == len && memcmp(l, line, len) == 0;
		l = *end ? end + 1 : end;
	}
	return false;
}

/* "unlimited" or a number. */
static int
parse_limit(const char *s, rlim_t *v)
{
	char *end;

	if (strcmp(s, "unlimited") == 0) {
		*v = RLIM_INFINITY;
		return 0;
	}
	errno = 0;
	*v = (rlim_t)strtoull(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

int
spawn_exec_parse_limits(const char *text, struct rlimit *limits, struct shoal_err *err)
{
	int r = 0;

	/* The header first, then one row per resource in RLIMIT_* order: the name in 25 columns
	 * and a space, then the soft and hard values. */
	for (const char *l = strchr(text, '\n'); l && l[1] && r < RLIM_NLIMITS; r++) {
		const char *line = l + 1, *end = strchrnul(line, '\n');
		char soft[32], hard[32];

		l = *end ? end : NULL;
		if (end - line <= 26 || sscanf(line + 26, "%31s %31s", soft, hard) != 2 ||
		    parse_limit(soft, &limits[r].rlim_cur) == -1 ||
		    parse_limit(hard, &limits[r].rlim_max) == -1)
			return err_set(err, 0, "cannot parse limit \"%.*s\"", (int)(end - line),
			               line);
	}
	if (r != RLIM_NLIMITS)
		return err_set(err, 0, "%d limits, want %d", r, RLIM_NLIMITS);
	return 0;
}

/* The resource limits of pid: prlimit() would need CAP_SYS_RESOURCE for another uid's
 * process, which a runtime may not have; /proc/PID/limits is readable by all. */
static int
read_limits(pid_t pid, struct rlimit *limits, struct shoal_err *err)
{
	cleanup_free char *path = xasprintf("/proc/%d/limits", (int)pid);
	cleanup_free char *data = util_read_file(path, NULL, err);

	if (data == NULL)
		return -1;
	if (spawn_exec_parse_limits(data, limits, err) == -1)
		return err_prefix(err, "%s", path);
	return 0;
}

/* Does pid have no_new_privs? Read from its /proc/PID/status ("NoNewPrivs:\t1"). */
static int
read_no_new_privs(pid_t pid, bool *out, struct shoal_err *err)
{
	cleanup_free char *path = xasprintf("/proc/%d/status", (int)pid);
	cleanup_free char *data = util_read_file(path, NULL, err);
	const char *l;

	if (data == NULL)
		return -1;
	/* Never the first line (Name: is). */
	l = strstr(data, "\nNoNewPrivs:");
	if (l == NULL)
		return err_set(err, 0, "%s: no NoNewPrivs field", path);
	*out = strtol(l + 12, NULL, 10) != 0;
	return 0;
}

/* Open, on the host's side, everything the child needs to become like the init at pid. */
static int
exec_open(pid_t pid, uint64_t pid_start, struct exec_fds *f, struct shoal_err *err)
{
	cleanup_free char *cgpath = xasprintf("/proc/%d/cgroup", (int)pid);
	cleanup_free char *theirs = NULL, *ours = NULL, *mountinfo = NULL;
	char path[PATH_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(exec_ns); i++) {
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, exec_ns[i].name);
		f->ns[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (f->ns[i] == -1)
			return err_set(err, errno, "open %s", path);
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/cgroup", (int)pid);
	f->cgroupns = open(path, O_RDONLY | O_CLOEXEC);
	if (f->cgroupns == -1)
		return err_set(err, errno, "open %s", path);
	/* Every cgroup of the init, not only those the runtime limits: the check must be where
	 * the container is in each hierarchy (devices, freezer... and a v1 host's unified one). */
	theirs = util_read_file(cgpath, NULL, err);
	ours = util_read_file("/proc/self/cgroup", NULL, err);
	mountinfo = util_read_file("/proc/self/mountinfo", NULL, err);
	if (theirs == NULL || ours == NULL || mountinfo == NULL)
		return -1;
	for (const char *l = theirs; *l;) {
		const char *end = strchrnul(l, '\n');
		cleanup_free char *line = xasprintf("%.*s", (int)(end - l), l);
		char dir[PATH_MAX - 16];

		l = *end ? end + 1 : end;
		if (line[0] == '\0' || same_cgroup_as_ours(ours, line))
			continue;
		if (spawn_exec_cgroup_dir(mountinfo, line, dir, sizeof(dir)) == -1)
			return err_set(err, 0, "cgroup %s of the container: no such hierarchy here",
			               line);
		if (f->nprocs == (int)ARRAY_SIZE(f->procs))
			return err_set(err, 0, "the container is in too many cgroup hierarchies");
		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		f->procs[f->nprocs] = open(path, O_WRONLY | O_CLOEXEC);
		if (f->procs[f->nprocs] == -1)
			return err_set(err, errno, "open %s", path);
		f->nprocs++;
	}
	if (read_limits(pid, f->limits, err) == -1 ||
	    read_no_new_privs(pid, &f->no_new_privs, err) == -1)
		return -1;
	/* Checked after opening: if pid is still the init we mean, every fd above is its. */
	if (spawn_proc_start_time(pid) != pid_start)
		return err_set(err, ESRCH, "the container is not running");
	return 0;
}

/*
 * -t: a pseudo-terminal from the container's own devpts (we are in its mount namespace, so
 * /dev/ptmx is its), made our controlling terminal and stdio; the master goes down console.
 * Opened in here, never from the host through the container's root, whose paths the
 * container controls.
 */
static int
exec_child_tty(int console, struct shoal_err *err)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	char byte = 't';
	struct iovec iov = {&byte, 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	int unlock = 0, m, s;

	m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m == -1)
		return err_set(err, errno, "open the container's /dev/ptmx");
	/* TIOCGPTPEER opens the slave of this very master: no path to look up. */
	if (ioctl(m, TIOCSPTLCK, &unlock) == -1 ||
	    (s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) == -1) {
		close(m);
		return err_set(err, errno, "pseudo-terminal");
	}
	if (setsid() == -1 || ioctl(s, TIOCSCTTY, 0) == -1) {
		close(m);
		close(s);
		return err_set(err, errno, "make the pseudo-terminal ours");
	}
	for (int i = 0; i < 3; i++)
		if (dup2(s, i) == -1) {
			close(m);
			close(s);
			return err_set(err, errno, "dup2 the pseudo-terminal");
		}
	close(s);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &m, sizeof(int));
	if (sendmsg(console, &mh, MSG_NOSIGNAL) != 1) {
		close(m);
		return err_set(err, errno, "send the pseudo-terminal");
	}
	close(m);
	return 0;
}

/* The exec'd child: born in the container's pid namespace; returns only on failure. */
static int
exec_child_main(const struct spawn_process *p, const struct exec_fds *f, int *stage,
                struct shoal_err *err)
{
	*stage = SPAWN_SETUP;
	if (spawn_child_begin(p, err) == -1)
		return -1;
	/* A group of its own: whoever ends it (a check's timeout) ends what it started too. With
	 * a terminal, a session of its own (setsid, below), which is a group of its own too. */
	if (!p->tty && setpgid(0, 0) == -1)
		return err_set(err, errno, "setpgid");
	/* Cgroups first, then the cgroup namespace, as the init did it (and a v2 host refuses a
	 * move by a writer whose cgroup namespace does not hold the source cgroup). */
	for (int i = 0; i < f->nprocs; i++)
		if (write(f->procs[i], "0", 1) != 1)
			return err_set(err, errno, "join the container's cgroup");
	if (setns(f->cgroupns, CLONE_NEWCGROUP) == -1)
		return err_set(err, errno, "join the cgroup namespace");
	/* The mount namespace also makes the container's root our root and cwd. */
	for (size_t i = 0; i < ARRAY_SIZE(exec_ns); i++)
		if (setns(f->ns[i], exec_ns[i].type) == -1)
			return err_set(err, errno, "join the %s namespace", exec_ns[i].name);
	if (p->tty && exec_child_tty(p->console, err) == -1)
		return -1;
	/* The init's limits, whatever it did with them since (it can only have lowered a hard
	 * limit): ours are the agent's, which may be higher. */
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		struct rlimit want = f->limits[r], ours;

		if (setrlimit((enum __rlimit_resource)r, &want) == 0)
			continue;
		/* Raising a hard limit past ours takes CAP_SYS_RESOURCE: without it, never more
		 * than the init's, within ours. */
		if (errno != EPERM || getrlimit((enum __rlimit_resource)r, &ours) == -1)
			return err_set(err, errno, "setrlimit %d", r);
		if (want.rlim_max > ours.rlim_max)
			want.rlim_max = ours.rlim_max;
		if (want.rlim_cur > want.rlim_max)
			want.rlim_cur = want.rlim_max;
		if (setrlimit((enum __rlimit_resource)r, &want) == -1)
			return err_set(err, errno, "setrlimit %d", r);
	}
	/* Never less confined than the init: its no_new_privs too, whatever p says. */
	struct spawn_process q = *p;
	q.no_new_privs = p->no_new_privs || f->no_new_privs;
	return spawn_child_exec(&q, f->parent, stage, err);
}

pid_t
spawn_exec(pid_t pid, uint64_t pid_start, const struct spawn_process *p, int *exit_code,
           struct shoal_err *err)
{
	struct exec_fds f = {.cgroupns = -1, .parent = -1};
	cleanup_close int pidns = -1;
	struct spawn_report rep;
	char path[64];
	int sync[2];
	pid_t child;

	*exit_code = 125;
	for (size_t i = 0; i < ARRAY_SIZE(f.ns); i++)
		f.ns[i] = -1;
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	pidns = open(path, O_RDONLY | O_CLOEXEC);
	if (pidns == -1) {
		err_set(err, errno, "open %s", path);
		return -1;
	}
	/* pidfds are close-on-exec: the command never holds it. */
	f.parent = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (f.parent == -1) {
		err_set(err, errno, "pidfd_open");
		return -1;
	}
	if (exec_open(pid, pid_start, &f, err) == -1) {
		exec_fds_close(&f);
		return -1;
	}
	/* Only our children enter it: we stay in the host's pid namespace, out of the
	 * container's sight, and join nothing else. */
	if (setns(pidns, CLONE_NEWPID) == -1) {
		err_set(err, errno, "join the pid namespace");
		exec_fds_close(&f);
		return -1;
	}
	if (pipe2(sync, O_CLOEXEC) == -1) {
		err_set(err, errno, "pipe");
		exec_fds_close(&f);
		return -1;
	}
	child = fork();
	if (child == -1) {
		err_set(err, errno, "fork");
		close(sync[0]);
		close(sync[1]);
		exec_fds_close(&f);
		return -1;
	}
	if (child == 0) {
		close(sync[0]);
		memset(&rep, 0, sizeof(rep));
		exec_child_main(p, &f, &rep.stage, &rep.err);
		(void)!write(sync[1], &rep, sizeof(rep));
		_exit(127);
	}
	close(sync[1]);
	exec_fds_close(&f);
	return spawn_await_exec(child, sync[0], exit_code, err);
}
