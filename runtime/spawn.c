#include "spawn.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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
#include "util.h"

/* What a failing child writes down the sync pipe. */
struct spawn_report {
	int stage; /* enum spawn_stage */
	struct shoal_err err;
};

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

/* Look NAME (or a number) up in a passwd/group-format file: returns the id, fills the home dir
 * (passwd) or gid field. -1 when absent. */
static long
lookup_db(const char *file, const char *name, long *gid, char *home, size_t homelen)
{
	cleanup_free char *data = util_read_file(file, NULL, NULL);
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

/* NETNS_BRIDGE: wait for the starter to have made our eth0, then configure it. */
static int
child_network(const struct spawn_config *c, int go_fd, struct shoal_err *err)
{
	char b;
	ssize_t n;

	do
		n = read(go_fd, &b, 1);
	while (n == -1 && errno == EINTR);
	close(go_fd);
	if (n != 1)
		return err_set(err, 0, "network: the runtime did not plug the container in");
	if (netns_configure(&c->net, err) == -1)
		return err_prefix(err, "network");
	return 0;
}

/* The child: runs in the new namespaces, returns only on failure. go_fd: see spawn_container. */
static int
child_main(const struct spawn_config *c, int go_fd, int *stage, struct shoal_err *err)
{
	char exe[PATH_MAX], home[PATH_MAX];
	uid_t uid = 0;
	gid_t gid = 0;
	char **env;

	sigset_t none;

	*stage = SPAWN_SETUP;
	/* The shim blocks SIGCHLD and ignores SIGPIPE; both would survive exec. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) == -1)
		return err_set(err, errno, "sigprocmask");
	/* If the shim dies while we set up, so do we; cleared before exec. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		return err_set(err, errno, "prctl PDEATHSIG");
	if (c->cg != NULL) {
		/* Join first, then unshare: the new cgroup namespace is rooted at our cgroup. */
		if (cgroup_enter_self(c->cg, err) == -1)
			return -1;
		if (unshare(CLONE_NEWCGROUP) == -1)
			return err_set(err, errno, "unshare cgroup namespace");
	}
	for (int i = 0; i < 3; i++)
		if (c->stdio[i] >= 0 && c->stdio[i] != i && dup2(c->stdio[i], i) == -1)
			return err_set(err, errno, "dup2 stdio");
	if (netns_enter(&c->net, err) == -1)
		return err_prefix(err, "network");
	if (c->hostname && sethostname(c->hostname, strlen(c->hostname)) == -1)
		return err_set(err, errno, "sethostname %s", c->hostname);
	/* Nothing we mount may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)
		return err_set(err, errno, "make / private");
	if (rootfs_mount_overlay(c->layers, c->nlayers, c->upper, c->work, c->rootfs, err) == -1)
		return -1;
	if (rootfs_setup_mounts(c->rootfs, err) == -1)
		return -1;
	/* As late as possible before pivot_root: the starter creates our veth meanwhile. */
	if (go_fd >= 0 && child_network(c, go_fd, err) == -1)
		return -1;
	if (rootfs_pivot(c->rootfs, err) == -1)
		return -1;
	set_rlimits();
	if (resolve_user(c->user, &uid, &gid, home, sizeof(home), err) == -1)
		return -1;
	if (c->cwd && c->cwd[0]) {
		/* docker run creates a missing working directory. */
		if (util_mkdir_p(c->cwd, 0755, err) == -1 || chdir(c->cwd) == -1)
			return err_set(err, errno, "chdir to working directory %s", c->cwd);
	}
	if (drop_capabilities(uid, gid, err) == -1)
		return -1;
	env = complete_env(c->env, home);
	*stage = SPAWN_EXEC;
	if (c->argv == NULL || c->argv[0] == NULL)
		return err_set(err, 0, "no command specified");
	if (find_executable(c->argv[0], env, exe, sizeof(exe), err) == -1)
		return -1;
	*stage = SPAWN_SETUP;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return err_set(err, errno, "no_new_privs");
	if (prctl(PR_SET_PDEATHSIG, 0) == -1)
		return err_set(err, errno, "prctl PDEATHSIG");
	/* Every fd but stdio closes at exec, the sync pipe included: that EOF is our success. */
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == -1)
		return err_set(err, errno, "close_range");
	/* Last: the filter refuses syscalls the setup above needs (mount, pivot_root...). */
	if (c->seccomp && seccomp_install(c->seccomp, err) == -1)
		return -1;
	*stage = SPAWN_EXEC;
	execve(exe, c->argv, env);
	if (errno == ENOENT)
		return err_set(err, 0, "executable file not found: %s", c->argv[0]);
	return err_set(err, errno, "exec %s", c->argv[0]);
}

pid_t
spawn_container(const struct spawn_config *c, int *exit_code, struct shoal_err *err)
{
	int flags =
	    CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | netns_clone_flags(&c->net);
	struct spawn_report rep;
	int sync[2], go[2] = {-1, -1};
	pid_t pid;
	ssize_t n;

	*exit_code = 125;
	if (pipe2(sync, O_CLOEXEC) == -1)
		return err_set(err, errno, "pipe");
	/* A bridged child needs its veth, which only we (in the host's namespace) can make once
	 * its namespace exists: it waits on this pipe for one byte saying "eth0 is there". */
	if (netns_needs_attach(&c->net) && pipe2(go, O_CLOEXEC) == -1) {
		err_set(err, errno, "pipe");
		close(sync[0]);
		close(sync[1]);
		return -1;
	}
	/* A fork-like clone (no new stack): the child runs on a copy of ours. We are single-
	 * threaded here, which this needs. The cgroup namespace is unshared by the child once it
	 * joined its cgroup. */
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
		if (go[1] >= 0)
			close(go[1]);
		memset(&rep, 0, sizeof(rep));
		child_main(c, go[0], &rep.stage, &rep.err);
		(void)!write(sync[1], &rep, sizeof(rep));
		_exit(127);
	}
	close(sync[1]);
	if (go[0] >= 0) {
		close(go[0]);
		if (netns_attach(&c->net, pid, err) == -1) {
			err_prefix(err, "network");
			close(go[1]);
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
				;
			close(sync[0]);
			return -1;
		}
		(void)!write(go[1], "g", 1);
		close(go[1]);
	}
	do
		n = read(sync[0], &rep, sizeof(rep));
	while (n == -1 && errno == EINTR);
	close(sync[0]);
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
