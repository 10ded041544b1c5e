/*
 * A container's state.json: struct container to JSON and back (the file is what every process
 * that handles the container reads: shoalrt, the agent, the shim), written by an atomic
 * replace.
 */
#include "container.h"
#include "container_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "err.h"
#include "util.h"

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
	json_object_set_new(spec, "argv", strv_json(s->argv, container_strv_len(s->argv)));
	json_object_set_new(spec, "env", strv_json(s->env, container_strv_len(s->env)));
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

int
container_state_write_atomic(const char *path, const char *data, size_t len, struct shoal_err *err)
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
	return container_state_write_atomic(path, data, strlen(data), err);
}
