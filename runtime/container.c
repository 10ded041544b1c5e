#include "container.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/close_range.h>

#include <jansson.h>
#include <sodium.h>

#include "err.h"
#include "image.h"
#include "etcfiles.h"
#include "rootfs.h"
#include "spawn.h"
#include "trace.h"
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

static size_t
strv_len(char *const *v)
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
	size_t n = strv_len(*dst), m = strv_len(src);

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
	size_t n = strv_len(*env);

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

/* ---- state file ---- */

static json_t *
strv_json(char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static void
set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, v ? json_string(v) : json_null());
}

json_t *
container_to_json(const struct container *c)
{
	const struct container_spec *s = &c->spec;
	json_t *o = json_object(), *spec = json_object(), *lim = json_object();

	json_object_set_new(o, "id", json_string(c->id));
	set_str(o, "name", s->name);
	set_str(o, "image", s->image);
	set_str(o, "image_digest", s->image_digest);
	json_object_set_new(o, "state", json_string(container_status_name(c->status)));
	json_object_set_new(o, "pid", json_integer(c->pid));
	json_object_set_new(o, "pid_start", json_integer((json_int_t)c->pid_start));
	json_object_set_new(o, "shim_pid", json_integer(c->shim_pid));
	json_object_set_new(o, "shim_start", json_integer((json_int_t)c->shim_start));
	json_object_set_new(o, "exit_code", json_integer(c->exit_code));
	json_object_set_new(o, "exit_signal", json_integer(c->exit_signal));
	json_object_set_new(o, "oom_killed", json_boolean(c->oom_killed));
	json_object_set_new(o, "created_ms", json_integer(c->created_ms));
	json_object_set_new(o, "started_ms", json_integer(c->started_ms));
	json_object_set_new(o, "finished_ms", json_integer(c->finished_ms));
	cleanup_free char *rootfs = xasprintf("%s/rootfs", c->dir);
	json_object_set_new(o, "rootfs", json_string(rootfs));
	set_str(o, "cgroup", c->cgroup);
	set_str(o, "cgroup_manager", c->cgroup_manager);
	set_str(o, "ip", c->ip);
	set_str(o, "error", c->error);

	json_object_set_new(spec, "layers", strv_json(s->layers, s->nlayers));
	json_object_set_new(spec, "layer_digests", strv_json(s->layer_digests, s->nlayers));
	json_object_set_new(spec, "argv", strv_json(s->argv, strv_len(s->argv)));
	json_object_set_new(spec, "env", strv_json(s->env, strv_len(s->env)));
	set_str(spec, "cwd", s->cwd);
	set_str(spec, "user", s->user);
	set_str(spec, "hostname", s->hostname);
	json_object_set_new(lim, "cpu_quota_us", json_integer(s->limits.cpu_quota_us));
	json_object_set_new(lim, "cpu_period_us", json_integer(s->limits.cpu_period_us));
	json_object_set_new(lim, "memory_bytes", json_integer(s->limits.memory_bytes));
	json_object_set_new(lim, "pids", json_integer(s->limits.pids));
	json_object_set_new(spec, "limits", lim);
	json_object_set_new(spec, "network", json_string(netns_mode_name(s->net)));
	set_str(spec, "netns_path", s->netns_path);
	set_str(spec, "bridge", s->bridge);
	set_str(spec, "address", s->address);
	set_str(spec, "gateway", s->gateway);
	json_object_set_new(spec, "autoremove", json_boolean(s->autoremove));
	json_object_set_new(spec, "no_new_privileges", json_boolean(s->no_new_privs));
	json_object_set_new(o, "config", spec);
	return o;
}

static char *
get_str(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

static int64_t
get_int(json_t *o, const char *k)
{
	return (int64_t)json_integer_value(json_object_get(o, k));
}

/* A NULL-terminated copy of a JSON string array; *n gets its length. */
static char **
get_strv(json_t *o, const char *k, size_t *n)
{
	json_t *a = json_object_get(o, k), *v;
	size_t i, len = json_is_array(a) ? json_array_size(a) : 0;
	char **out = xcalloc(len + 1, sizeof(char *));

	json_array_foreach(a, i, v) out[i] = xstrdup(json_is_string(v) ? json_string_value(v) : "");
	if (n)
		*n = len;
	return out;
}

struct container *
container_from_json(const char *root, json_t *o, struct shoal_err *err)
{
	struct container *c;
	json_t *spec = json_object_get(o, "config"), *lim;
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *st = json_string_value(json_object_get(o, "state"));
	const char *net = json_string_value(json_object_get(spec, "network"));
	size_t nd = 0;

	if (id == NULL || strlen(id) != 64 || !json_is_object(spec) || st == NULL) {
		err_set(err, 0, "malformed state");
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->root = xstrdup(root);
	memcpy(c->id, id, 65);
	c->dir = xasprintf("%s/containers/%s", root, id);
	c->spec.name = get_str(o, "name");
	c->spec.image = get_str(o, "image");
	c->spec.image_digest = get_str(o, "image_digest");
	c->status = strcmp(st, "running") == 0  ? CONTAINER_RUNNING
	            : strcmp(st, "exited") == 0 ? CONTAINER_EXITED
	                                        : CONTAINER_CREATED;
	c->pid = (pid_t)get_int(o, "pid");
	c->pid_start = (uint64_t)get_int(o, "pid_start");
	c->shim_pid = (pid_t)get_int(o, "shim_pid");
	c->shim_start = (uint64_t)get_int(o, "shim_start");
	c->exit_code = (int)get_int(o, "exit_code");
	c->exit_signal = (int)get_int(o, "exit_signal");
	c->oom_killed = json_is_true(json_object_get(o, "oom_killed"));
	c->created_ms = get_int(o, "created_ms");
	c->started_ms = get_int(o, "started_ms");
	c->finished_ms = get_int(o, "finished_ms");
	c->cgroup = get_str(o, "cgroup");
	c->cgroup_manager = get_str(o, "cgroup_manager");
	c->ip = get_str(o, "ip");
	c->error = get_str(o, "error");

	c->spec.layers = get_strv(spec, "layers", &c->spec.nlayers);
	c->spec.layer_digests = get_strv(spec, "layer_digests", &nd);
	if (nd != c->spec.nlayers) {
		err_set(err, 0, "malformed state: %zu layers, %zu digests", c->spec.nlayers, nd);
		container_free(c);
		return NULL;
	}
	c->spec.argv = get_strv(spec, "argv", NULL);
	c->spec.env = get_strv(spec, "env", NULL);
	c->spec.cwd = get_str(spec, "cwd");
	c->spec.user = get_str(spec, "user");
	c->spec.hostname = get_str(spec, "hostname");
	lim = json_object_get(spec, "limits");
	c->spec.limits.cpu_quota_us = get_int(lim, "cpu_quota_us");
	c->spec.limits.cpu_period_us = get_int(lim, "cpu_period_us");
	c->spec.limits.memory_bytes = get_int(lim, "memory_bytes");
	c->spec.limits.pids = get_int(lim, "pids");
	c->spec.net = net && strcmp(net, "host") == 0     ? NETNS_HOST
	              : net && strcmp(net, "join") == 0   ? NETNS_JOIN
	              : net && strcmp(net, "bridge") == 0 ? NETNS_BRIDGE
	                                                  : NETNS_NONE;
	c->spec.netns_path = get_str(spec, "netns_path");
	c->spec.bridge = get_str(spec, "bridge");
	c->spec.address = get_str(spec, "address");
	c->spec.gateway = get_str(spec, "gateway");
	c->spec.autoremove = json_is_true(json_object_get(spec, "autoremove"));
	c->spec.no_new_privs = json_is_true(json_object_get(spec, "no_new_privileges"));
	return c;
}

/* Atomic replace without fsync: readers never see a torn file, and a container's state does
 * not need to survive a power loss (its processes would not either); an fsync would cost
 * milliseconds on every start and exit. */
static int
write_atomic(const char *path, const char *data, size_t len, struct shoal_err *err)
{
	cleanup_free char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd == -1)
		return err_set(err, errno, "create %s", tmp);
	if (write(fd, data, len) != (ssize_t)len) {
		err_set(err, errno, "write %s", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) == -1) {
		err_set(err, errno, "rename %s", tmp);
		unlink(tmp);
		return -1;
	}
	return 0;
}

int
container_save(const struct container *c, struct shoal_err *err)
{
	json_t *o = container_to_json(c);
	cleanup_free char *data = json_dumps(o, JSON_INDENT(2));
	cleanup_free char *path = xasprintf("%s/state.json", c->dir);

	json_decref(o);
	if (data == NULL)
		return err_set(err, ENOMEM, "encode state");
	return write_atomic(path, data, strlen(data), err);
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
	if (write_atomic(lpath, layers, len, err) == -1 || container_save(c, err) == -1)
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

/* ---- start ---- */

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
 * Start the shim: posix_spawn (a vfork-like clone, no copy of our page tables: the agent's
 * are large) into a new session, with /dev/null on 0-2, the sync socket on 3 and the attached
 * stdout/stderr on 4 and 5. The shim forks once more and its first process exits at once
 * (--daemon), so the shim is nobody's child but init's (or the subreaper's) and outlives its
 * starter, as after a double fork. Returns that first process's pid, or -1 with err.
 */
static pid_t
spawn_shim(const char *shim, const struct container *c, int sync, const struct container_attach *a,
           struct shoal_err *err)
{
	/* Sources above 5 first, so placing one cannot clobber another. */
	cleanup_close int s = fcntl(sync, F_DUPFD_CLOEXEC, 6);
	cleanup_close int o = a && a->stdout_fd >= 0 ? fcntl(a->stdout_fd, F_DUPFD_CLOEXEC, 6) : -1;
	cleanup_close int e = a && a->stderr_fd >= 0 ? fcntl(a->stderr_fd, F_DUPFD_CLOEXEC, 6) : -1;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
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
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	/* dup2 onto a target clears its close-on-exec flag: these are the fds the shim keeps. */
	rc = posix_spawn_file_actions_adddup2(&fa, s, 3);
	if (rc == 0 && o >= 0)
		rc = posix_spawn_file_actions_adddup2(&fa, o, 4);
	if (rc == 0 && e >= 0)
		rc = posix_spawn_file_actions_adddup2(&fa, e, 5);
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
		rc = posix_spawn(&pid, shim, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
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

int
container_start(struct container *c, const struct container_attach *a, int *sync_fd, int *exit_code,
                struct shoal_err *err)
{
	return container_start_via(c, a, exec_shim, sync_fd, exit_code, err);
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
container_remove_files(struct container *c, struct shoal_err *err)
{
	cleanup_free char *link =
	    xasprintf("%s/names/%s", c->root, c->spec.name ? c->spec.name : "");
	char target[80];
	ssize_t n;
	int rc = 0;

	if (c->cgroup) {
		struct cgroup *cg = cgroup_new(
		    NULL, c->cgroup,
		    c->cgroup_manager && strcmp(c->cgroup_manager, "v2") == 0 ? &cgroup_ops_v2
		                                                              : NULL);
		rc = cgroup_destroy(cg, err);
		cgroup_free(cg);
	}
	/* FTW_MOUNT: never cross into a mount, should one exist there against all odds. */
	if (nftw(c->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == -1 && errno != ENOENT)
		rc = err_set(err, errno, "remove %s", c->dir);
	n = readlink(link, target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		if (strcmp(target, c->id) == 0)
			unlink(link);
	}
	return rc;
}

char *
container_trash(struct container *c, struct shoal_err *err)
{
	cleanup_free char *trash = xasprintf("%s/trash", c->root);
	cleanup_free char *to = xasprintf("%s/%s", trash, c->id);
	cleanup_free char *link =
	    xasprintf("%s/names/%s", c->root, c->spec.name ? c->spec.name : "");
	char target[80];
	ssize_t n;

	if (util_mkdir_p(trash, 0700, err) == -1 || rename(c->dir, to) == -1) {
		(void)container_remove_files(c, err);
		return NULL;
	}
	n = readlink(link, target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		if (strcmp(target, c->id) == 0)
			unlink(link);
	}
	return steal_ptr(&to);
}

int
container_remove_tree(const char *dir, struct shoal_err *err)
{
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == -1 && errno != ENOENT)
		return err_set(err, errno, "remove %s", dir);
	return 0;
}

int
container_strip(struct container *c, struct shoal_err *err)
{
	static const char *const parts[] = {"rootfs", "upper", "work", "layers"};

	if (c->status == CONTAINER_RUNNING && container_alive(c))
		return err_set(err, 0, "container %s is running", c->spec.name);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		cleanup_free char *p = xasprintf("%s/%s", c->dir, parts[i]);
		if (nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == -1 &&
		    errno != ENOENT)
			return err_set(err, errno, "remove %s", p);
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
