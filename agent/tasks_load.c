/*
 * The task records of the data dir (tasks.h) when the agent starts: re-adoption of their
 * containers, which keep running; and `shoal-agent cleanup`, which removes them all.
 */
#include "tasks.h"
#include "tasks_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "runtime/container.h"
#include "log.h"
#include "manifest_json.h"
#include "netnode.h"
#include "server-t.h"
#include "util.h"

static void
load_one(struct tasks *ts, const char *path)
{
	cleanup_free char *text = util_read_file(path, NULL, NULL);
	json_t *j = text ? json_loads(text, 0, NULL) : NULL;
	const char *id = NULL, *name = NULL, *service = NULL, *cid = NULL, *spec_json = NULL;
	const char *pin = NULL, *image_digest = NULL;
	json_int_t slot = 0, version = 0;
	struct service_spec spec;
	struct shoal_err err;
	struct agent_task *t;
	struct container *c;

	if (j == NULL ||
	    json_unpack(j, "{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "id", &id, "name", &name,
	                "service", &service, "slot", &slot, "version", &version, "container_id",
	                &cid, "spec", &spec_json) == -1 ||
	    manifest_spec_from_json(spec_json, &spec, &err) == -1) {
		shoal_log(LOG_WARNING, "%s: unreadable task record, ignored", path);
		json_decref(j);
		return;
	}
	t = tasks_add(ts, id, name, service, (uint32_t)slot, (uint64_t)version, spec_json, &spec);
	snprintf(t->container_id, sizeof(t->container_id), "%s", cid);
	/* Records written before pinning have neither field. */
	json_unpack(j, "{s?:s, s?:s}", "pin", &pin, "image_digest", &image_digest);
	t->pin = pin && pin[0] ? xstrdup(pin) : NULL;
	snprintf(t->image_digest, sizeof(t->image_digest), "%s", image_digest ? image_digest : "");
	json_decref(j);
	c = container_load(ts->root, t->container_id[0] ? t->container_id : t->name, NULL);
	if (c == NULL) {
		t->state = ATASK_FAILED;
		t->message = xstrdup("container gone while the agent was down");
		return;
	}
	snprintf(t->container_id, sizeof(t->container_id), "%s", c->id);
	t->started_at = c->started_ms;
	if (c->ip && c->ip[0]) {
		/* The container holds its address whatever ipam.json says. */
		snprintf(t->ip, sizeof(t->ip), "%s", c->ip);
		if (netnode_hold(&ts->agent->netnode, t->id, c->ip, &err) == -1)
			shoal_log(LOG_ERR, "task %s: address %s: %s", t->name, c->ip, err.msg);
	}
	if (container_alive(c) && tasks_watch_pid(ts, t, c->pid)) {
		t->state = ATASK_RUNNING;
		t->pid = c->pid;
		tasks_watch_health(t);
	} else {
		t->state = c->exit_code == 0 ? ATASK_STOPPED : ATASK_FAILED;
		t->exit_code = c->oom_killed ? 137 : c->exit_code;
		t->oom_killed = c->oom_killed;
		t->message =
		    xasprintf("exited with code %d while the agent was down", c->exit_code);
	}
	container_free(c);
}

void
tasks_load(struct tasks *ts)
{
	cleanup_free char *dir = xasprintf("%s/tasks", ts->root);
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t running = 0;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		cleanup_free char *path = NULL;
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		load_one(ts, path);
	}
	closedir(d);
	/* Leases whose task record is gone (removed while the agent was down) are free. */
	for (size_t i = 0; i < ts->agent->netnode.ipam.n;) {
		char owner[sizeof(ts->agent->netnode.ipam.v[i].owner)];
		snprintf(owner, sizeof(owner), "%s", ts->agent->netnode.ipam.v[i].owner);
		if (tasks_find(ts, owner) != NULL) {
			i++;
			continue;
		}
		shoal_log(LOG_INFO, "network: released the address of task %s (no record)", owner);
		netnode_release(&ts->agent->netnode, owner);
	}
	for (size_t i = 0; i < ts->n; i++)
		running += ts->v[i]->state == ATASK_RUNNING;
	if (ts->n)
		shoal_log(LOG_INFO, "re-adopted %zu task%s (%zu running)", ts->n,
		          ts->n == 1 ? "" : "s", running);
}

int
tasks_cleanup(const char *root, size_t *removed, struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/tasks", root);
	struct container **v;
	size_t n = 0;
	DIR *d;
	struct dirent *de;

	*removed = 0;
	v = container_list(root, &n, err);
	if (v == NULL && n == 0 && err->msg[0])
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct shoal_err e2;
		/* Ended tasks' containers (kept for their logs, retired.h) go too, uncounted: the
		 * count is of containers that were still there to run. */
		bool ended = v[i]->status == CONTAINER_EXITED && !container_alive(v[i]);
		if (container_remove(v[i], true, &e2) == -1)
			shoal_log(LOG_WARNING, "cleanup: container %.12s: %s", v[i]->id, e2.msg);
		else if (!ended)
			(*removed)++;
	}
	container_list_free(v, n);
	/* The task records describe containers that no longer exist. */
	d = opendir(dir);
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		cleanup_free char *path = xasprintf("%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	return 0;
}
