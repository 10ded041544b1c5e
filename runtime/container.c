/*
 * Containers on one host (container.h): the spec and its image part, create (name, state dir,
 * etc files, layers file), load and list, and the end of a container's life: kill, stop,
 * remove. Its state file is container_state.c, its shim's starting and messages
 * container_shim.c.
 */
#include "container.h"
#include "container_internal.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "digest.h"
#include "err.h"
#include "image.h"
#include "etcfiles.h"
#include "rootfs.h"
#include "spawn.h"
#include "util.h"
const char *
container_status_name(enum container_status s)
{
	switch (s) {
	case CONTAINER_CREATED:
		return "created";
	case CONTAINER_RUNNING:
		return "running";
	case CONTAINER_EXITED:
		return "exited";
	}
	return "unknown";
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

size_t
container_strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* Append the elements of src (copied) to *dst, growing it. */
static void
strv_extend(char ***dst, char *const *src)
{
	size_t n = container_strv_len(*dst), m = container_strv_len(src);

	*dst = xrealloc(*dst, (n + m + 1) * sizeof(char *));
	for (size_t i = 0; i < m; i++)
		(*dst)[n + i] = xstrdup(src[i]);
	(*dst)[n + m] = NULL;
}

void
container_spec_clear(struct container_spec *s)
{
	free(s->name);
	free(s->image);
	free(s->image_digest);
	for (size_t i = 0; i < s->nlayers; i++) {
		free(s->layers[i]);
		free(s->layer_digests[i]);
	}
	free(s->layers);
	free(s->layer_digests);
	strv_free(s->argv);
	strv_free(s->entrypoint);
	strv_free(s->env);
	free(s->cwd);
	free(s->user);
	free(s->hostname);
	free(s->netns_path);
	free(s->bridge);
	free(s->address);
	free(s->gateway);
	strv_free(s->dns);
	strv_free(s->dns_search);
	strv_free(s->dns_options);
	memset(s, 0, sizeof(*s));
}

/* Set KEY=VALUE in env, replacing an entry with the same key. */
static void
env_set(char ***env, const char *kv)
{
	const char *eq = strchr(kv, '=');
	size_t kl = eq ? (size_t)(eq - kv) : strlen(kv);
	size_t n = container_strv_len(*env);

	for (size_t i = 0; i < n; i++) {
		if (strncmp((*env)[i], kv, kl) == 0 && (*env)[i][kl] == '=') {
			free((*env)[i]);
			(*env)[i] = xstrdup(kv);
			return;
		}
	}
	*env = xrealloc(*env, (n + 2) * sizeof(char *));
	(*env)[n] = xstrdup(kv);
	(*env)[n + 1] = NULL;
}

void
container_spec_apply_image(struct container_spec *s, const struct image *img, char **cmd,
                           char **env)
{
	s->nlayers = img->nlayers;
	s->layers = xcalloc(img->nlayers + 1, sizeof(char *));
	s->layer_digests = xcalloc(img->nlayers + 1, sizeof(char *));
	for (size_t i = 0; i < img->nlayers; i++) {
		s->layers[i] = xstrdup(img->layer_dirs[i]);
		s->layer_digests[i] = xstrdup(img->layer_digests[i]);
	}
	if (img->digest[0] && s->image_digest == NULL)
		s->image_digest = xstrdup(img->digest);
	/* docker run: the entrypoint stays, arguments replace the image's cmd; an entrypoint of
	 * the caller's replaces the image's and its cmd. */
	strv_free(s->argv);
	s->argv = NULL;
	if (s->entrypoint) {
		strv_extend(&s->argv, s->entrypoint);
		strv_extend(&s->argv, cmd);
	} else {
		strv_extend(&s->argv, img->entrypoint);
		strv_extend(&s->argv, cmd && cmd[0] ? cmd : img->cmd);
	}
	for (size_t i = 0; img->env && img->env[i]; i++)
		env_set(&s->env, img->env[i]);
	for (size_t i = 0; env && env[i]; i++)
		env_set(&s->env, env[i]);
	if (s->cwd == NULL && img->workdir && img->workdir[0])
		s->cwd = xstrdup(img->workdir);
	if (s->user == NULL && img->user && img->user[0])
		s->user = xstrdup(img->user);
}

void
container_free(struct container *c)
{
	if (c == NULL)
		return;
	container_spec_clear(&c->spec);
	free(c->root);
	free(c->dir);
	free(c->cgroup);
	free(c->cgroup_manager);
	free(c->ip);
	free(c->error);
	free(c);
}

/* ---- create, load, list ---- */

static bool
valid_name(const char *n)
{
	if (n == NULL || n[0] == '\0' || strlen(n) > 128 || n[0] == '.' || n[0] == '-')
		return false;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return false;
	return true;
}

/* Reserve name for id: the symlink's creation is the atomic test-and-set. A link whose
 * container directory is gone (a crash between steps) is taken over. */
static int
reserve_name(const char *root, const char *name, const char *id, struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/names", root);
	cleanup_free char *link = xasprintf("%s/%s", dir, name);
	char target[80];
	ssize_t n;

	if (util_mkdir_p(dir, 0700, err) == -1)
		return -1;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (symlink(id, link) == 0)
			return 0;
		if (errno != EEXIST)
			return err_set(err, errno, "reserve name %s", name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			cleanup_free char *cdir = xasprintf("%s/containers/%s", root, target);
			if (access(cdir, F_OK) == 0)
				break;
		}
		unlink(link);
	}
	return err_set(err, 0, "name \"%s\" is already in use", name);
}

/* hosts, hostname and resolv.conf in the state dir (etcfiles.h), bound over the image's at
 * start. The host's resolv.conf is read once, here: a later change on the host is not seen,
 * as in Docker for a running container. */
static int
write_etc_files(struct container *c, struct shoal_err *err)
{
	const struct container_spec *s = &c->spec;
	cleanup_free char *host = util_read_file("/etc/resolv.conf", NULL, NULL);
	/* Without an address of its own the hostname still resolves (Debian's convention). */
	cleanup_free char *hosts = etcfiles_hosts(c->ip ? c->ip : "127.0.1.1", s->hostname);
	cleanup_free char *resolv =
	    etcfiles_resolv(host, s->dns, s->dns_search, s->dns_options, s->net == NETNS_HOST);

	return etcfiles_write(c->dir, hosts, s->hostname, resolv, err);
}

struct container *
container_create(const char *root, struct container_spec *spec, struct shoal_err *err)
{
	struct container *c;
	uint8_t rnd[32];
	cleanup_free char *containers = xasprintf("%s/containers", root);
	cleanup_free char *hn = NULL;
	cleanup_free char *layers = NULL;
	cleanup_free char *lpath = NULL;
	bool have = false;
	size_t len = 0;

	if (spec->name && !valid_name(spec->name)) {
		err_set(err, 0, "invalid name \"%s\" (letters, digits, '_', '.', '-')", spec->name);
		return NULL;
	}
	if (spec->nlayers == 0) {
		err_set(err, 0, "image %s has no layers", spec->image ? spec->image : "?");
		return NULL;
	}
	if (spec->argv == NULL || spec->argv[0] == NULL) {
		err_set(err, 0, "no command specified (the image has no entrypoint or cmd)");
		return NULL;
	}
	if (spec->net == NETNS_BRIDGE) {
		/* Refuse a bad address here, in the caller's words, not from the shim. */
		struct netns_bridge br;
		if (netns_bridge_parse(&br, spec->bridge, spec->address, spec->gateway, err) == -1)
			return NULL;
	}
	if (util_mkdir_p(containers, 0700, err) == -1)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	randombytes_buf(rnd, sizeof(rnd));
	util_hex(rnd, sizeof(rnd), c->id);
	c->root = xstrdup(root);
	c->dir = xasprintf("%s/%s", containers, c->id);
	c->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	if (c->spec.name == NULL)
		c->spec.name = xasprintf("%.12s", c->id);
	if (c->spec.hostname == NULL)
		c->spec.hostname = xasprintf("%.12s", c->id);
	/* HOSTNAME as docker run sets it, unless the user set one. */
	hn = xasprintf("HOSTNAME=%s", c->spec.hostname);
	for (size_t i = 0; c->spec.env && c->spec.env[i]; i++)
		have |= strncmp(c->spec.env[i], "HOSTNAME=", 9) == 0;
	if (!have)
		env_set(&c->spec.env, hn);
	c->exit_code = -1;
	c->created_ms = util_wall_ms();
	c->cgroup = xasprintf("shoal/%s", c->id);
	if (c->spec.net == NETNS_BRIDGE)
		c->ip = xasprintf("%.*s", (int)strcspn(c->spec.address, "/"), c->spec.address);
	if (reserve_name(root, c->spec.name, c->id, err) == -1) {
		container_free(c);
		return NULL;
	}
	if (mkdir(c->dir, 0700) == -1) {
		err_set(err, errno, "mkdir %s", c->dir);
		goto fail_name;
	}
	if (rootfs_prepare(c->dir, err) == -1 || write_etc_files(c, err) == -1)
		goto fail_dir;
	/* The image store's rmi keeps every layer listed in some container's layers file. */
	for (size_t i = 0; i < c->spec.nlayers; i++)
		len += strlen(c->spec.layer_digests[i]) + 1;
	layers = xcalloc(1, len + 1);
	for (size_t i = 0; i < c->spec.nlayers; i++) {
		strcat(layers, c->spec.layer_digests[i]);
		strcat(layers, "\n");
	}
	lpath = xasprintf("%s/layers", c->dir);
	if (container_state_write_atomic(lpath, layers, len, err) == -1 ||
	    container_save(c, err) == -1)
		goto fail_dir;
	return c;
fail_dir:
	container_remove_files(c, NULL);
	container_free(c);
	return NULL;
fail_name:
	lpath = xasprintf("%s/names/%s", root, c->spec.name);
	unlink(lpath);
	container_free(c);
	return NULL;
}

bool
container_alive(const struct container *c)
{
	return c->pid > 0 && c->pid_start != 0 && spawn_proc_start_time(c->pid) == c->pid_start;
}

static bool
shim_alive(const struct container *c)
{
	return c->shim_pid > 0 && c->shim_start != 0 &&
	       spawn_proc_start_time(c->shim_pid) == c->shim_start;
}

static struct container *
load_id(const char *root, const char *id, struct shoal_err *err)
{
	cleanup_free char *path = xasprintf("%s/containers/%s/state.json", root, id);
	json_error_t jerr;
	json_t *o = json_load_file(path, 0, &jerr);
	struct container *c;

	if (o == NULL) {
		if (access(path, F_OK) == -1)
			err_set(err, errno, "container %.12s", id);
		else
			err_set(err, 0, "container %.12s: state.json: %s", id, jerr.text);
		return NULL;
	}
	c = container_from_json(root, o, err);
	json_decref(o);
	if (c == NULL)
		return NULL;
	/* A running container whose init and shim are both gone (the host rebooted, someone
	 * SIGKILLed the shim) has exited without anyone recording it. */
	if (c->status == CONTAINER_RUNNING && !container_alive(c) && !shim_alive(c)) {
		c->status = CONTAINER_EXITED;
		c->exit_code = -1;
	}
	return c;
}

struct container *
container_load(const char *root, const char *ref, struct shoal_err *err)
{
	cleanup_free char *link = xasprintf("%s/names/%s", root, ref);
	cleanup_free char *dir = xasprintf("%s/containers", root);
	char target[80], match[65] = "";
	size_t rl = strlen(ref);
	int matches = 0;
	ssize_t n;
	DIR *d;
	struct dirent *e;

	if (valid_name(ref) && (n = readlink(link, target, sizeof(target) - 1)) > 0) {
		target[n] = '\0';
		return load_id(root, target, err);
	}
	/* A full id (what a shim and the agent load by, once per start): its own directory, not
	 * a listing of every container's. */
	if (digest_is_hex(ref)) {
		cleanup_free char *own = xasprintf("%s/%s", dir, ref);
		if (access(own, F_OK) == 0)
			return load_id(root, ref, err);
	}
	d = rl > 0 ? opendir(dir) : NULL;
	while (d && (e = readdir(d)) != NULL) {
		if (strlen(e->d_name) == 64 && strncmp(e->d_name, ref, rl) == 0) {
			memcpy(match, e->d_name, 65);
			matches++;
		}
	}
	if (d)
		closedir(d);
	if (matches == 1)
		return load_id(root, match, err);
	err_set(err, 0, matches ? "container \"%s\" is ambiguous" : "no such container: %s", ref);
	return NULL;
}

static int
by_created(const void *a, const void *b)
{
	const struct container *x = *(struct container *const *)a,
	                       *y = *(struct container *const *)b;
	return x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms;
}

struct container **
container_list(const char *root, size_t *n, struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/containers", root);
	struct container **v = NULL;
	size_t cap = 0;
	DIR *d = opendir(dir);
	struct dirent *e;

	*n = 0;
	if (d == NULL) {
		if (errno == ENOENT)
			return xcalloc(1, sizeof(*v));
		err_set(err, errno, "open %s", dir);
		return NULL;
	}
	while ((e = readdir(d)) != NULL) {
		struct container *c;
		if (strlen(e->d_name) != 64)
			continue;
		/* A directory being created or removed right now has no state yet: skip it. */
		c = load_id(root, e->d_name, NULL);
		if (c == NULL)
			continue;
		if (*n + 1 >= cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[(*n)++] = c;
	}
	closedir(d);
	if (v == NULL)
		v = xcalloc(1, sizeof(*v));
	qsort(v, *n, sizeof(*v), by_created);
	return v;
}

void
container_list_free(struct container **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		container_free(v[i]);
	free(v);
}

/* ---- signals, stop, remove ---- */

int
container_unplug(const struct container *c, struct shoal_err *err)
{
	char host_if[IFNAMSIZ];

	netns_host_ifname(c->id, host_if);
	if (netns_detach(host_if, err) == -1)
		return err_prefix(err, "remove veth %s", host_if);
	return 0;
}

static int
pidfd_open_checked(pid_t pid, uint64_t start)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	/* Check the start time after opening: the pidfd then names the process we mean. */
	if (fd != -1 && spawn_proc_start_time(pid) != start) {
		close(fd);
		errno = ESRCH;
		return -1;
	}
	return fd;
}

/* Wait until the pidfd's process has exited or timeout_ms passed; true if it exited. */
static bool
pidfd_wait(int fd, int timeout_ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	int64_t deadline = util_now_ms() + timeout_ms;
	int r;

	for (;;) {
		int64_t left = deadline - util_now_ms();
		r = poll(&p, 1, left < 0 ? 0 : (int)left);
		if (r == -1 && errno == EINTR)
			continue;
		return r == 1;
	}
}

int
container_kill(struct container *c, int sig, struct shoal_err *err)
{
	cleanup_close int fd = -1;

	if (c->status != CONTAINER_RUNNING)
		return err_set(err, 0, "container %s is not running", c->spec.name);
	fd = pidfd_open_checked(c->pid, c->pid_start);
	if (fd == -1)
		return err_set(err, 0, "container %s is not running", c->spec.name);
	if (syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == -1)
		return err_set(err, errno, "signal container %s", c->spec.name);
	return 0;
}

/* Wait (bounded) for the shim to record the exit and quit, then reload the state. */
static int
wait_shim(struct container *c, struct shoal_err *err)
{
	cleanup_close int fd = pidfd_open_checked(c->shim_pid, c->shim_start);
	struct container *fresh;

	if (fd != -1 && !pidfd_wait(fd, 10000))
		return err_set(err, ETIMEDOUT, "shim of %s did not finish", c->spec.name);
	fresh = load_id(c->root, c->id, err);
	if (fresh == NULL)
		return -1;
	/* Swap contents so the caller's pointer stays valid. */
	struct container tmp = *c;
	*c = *fresh;
	*fresh = tmp;
	container_free(fresh);
	return 0;
}

int
container_stop(struct container *c, int timeout_s, struct shoal_err *err)
{
	cleanup_close int fd = -1;

	if (c->status != CONTAINER_RUNNING)
		return 0;
	fd = pidfd_open_checked(c->pid, c->pid_start);
	if (fd != -1) {
		if (syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0) == -1 && errno != ESRCH)
			return err_set(err, errno, "SIGTERM %s", c->spec.name);
		/* An init without a SIGTERM handler ignores it (busybox httpd as PID 1): the
		 * deadline's SIGKILL is what ends it. */
		if (!pidfd_wait(fd, timeout_s * 1000)) {
			if (syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == -1 &&
			    errno != ESRCH)
				return err_set(err, errno, "SIGKILL %s", c->spec.name);
			if (!pidfd_wait(fd, 10000))
				return err_set(err, ETIMEDOUT, "%s survived SIGKILL", c->spec.name);
		}
	}
	return wait_shim(c, err);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP ? rmdir(path) : unlink(path))
		return errno == ENOENT ? 0 : -1;
	return 0;
}

int
container_remove_tree(const char *dir, struct shoal_err *err)
{
	/* FTW_MOUNT: never cross into a mount, should one exist there against all odds. */
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == -1 && errno != ENOENT)
		return err_set(err, errno, "remove %s", dir);
	return 0;
}

/* Free c's name, unless the link already names another container (the name was taken over). */
static void
release_name(const struct container *c)
{
	cleanup_free char *link =
	    xasprintf("%s/names/%s", c->root, c->spec.name ? c->spec.name : "");
	char target[80];
	ssize_t n;

	n = readlink(link, target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		if (strcmp(target, c->id) == 0)
			unlink(link);
	}
}

int
container_remove_files(struct container *c, struct shoal_err *err)
{
	int rc = 0;

	if (c->cgroup) {
		struct cgroup *cg = cgroup_new(
		    NULL, c->cgroup,
		    c->cgroup_manager && strcmp(c->cgroup_manager, "v2") == 0 ? &cgroup_ops_v2
		                                                              : NULL);
		rc = cgroup_destroy(cg, err);
		cgroup_free(cg);
	}
	if (container_remove_tree(c->dir, err) == -1)
		rc = -1;
	release_name(c);
	return rc;
}

char *
container_trash(struct container *c, struct shoal_err *err)
{
	cleanup_free char *trash = xasprintf("%s/trash", c->root);
	cleanup_free char *to = xasprintf("%s/%s", trash, c->id);

	if (util_mkdir_p(trash, 0700, err) == -1 || rename(c->dir, to) == -1) {
		(void)container_remove_files(c, err);
		return NULL;
	}
	release_name(c);
	return steal_ptr(&to);
}

int
container_strip(struct container *c, struct shoal_err *err)
{
	static const char *const parts[] = {"rootfs", "upper", "work", "layers"};

	if (c->status == CONTAINER_RUNNING && container_alive(c))
		return err_set(err, 0, "container %s is running", c->spec.name);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		cleanup_free char *p = xasprintf("%s/%s", c->dir, parts[i]);
		if (container_remove_tree(p, err) == -1)
			return -1;
	}
	return 0;
}

int
container_remove(struct container *c, bool force, struct shoal_err *err)
{
	if (c->status == CONTAINER_RUNNING) {
		if (!force)
			return err_set(err, 0,
			               "container %s is running: stop it first or use rm -f",
			               c->spec.name);
		if (container_kill(c, SIGKILL, err) == -1 && container_alive(c))
			return -1;
	}
	/* The shim may still be recording the exit; let it finish before the files go. */
	if (shim_alive(c) && wait_shim(c, err) == -1)
		return -1;
	/* The shim unplugs at exit; this covers a shim that was killed. */
	if (c->spec.net == NETNS_BRIDGE && container_unplug(c, err) == -1)
		return -1;
	return container_remove_files(c, err);
}
