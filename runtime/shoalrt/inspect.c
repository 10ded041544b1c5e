/* shoalrt inspect: a container's state as JSON. */
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "err.h"
#include "runtime/container.h"
#include "verb.h"

/* RFC 3339 UTC with milliseconds, or null before the event. */
static json_t *
time_json(int64_t ms)
{
	char buf[64];
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0)
		return json_null();
	gmtime_r(&t, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
	return json_string(buf);
}

static int
inspect_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err;
	json_t *all = json_array();
	int rc = 0;

	(void)ctx->json; /* always JSON */
	if (argc < 2) {
		fprintf(stderr, "shoalrt: inspect: missing CONTAINER\n");
		json_decref(all);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		struct container *c = container_load(ctx->root, argv[i], &err);
		if (c == NULL) {
			fprintf(stderr, "shoalrt: %s\n", err.msg);
			rc = 1;
			continue;
		}
		json_t *o = container_to_json(c);
		json_object_set_new(o, "created", time_json(c->created_ms));
		json_object_set_new(o, "started", time_json(c->started_ms));
		json_object_set_new(o, "finished", time_json(c->finished_ms));
		json_object_set_new(o, "running", json_boolean(c->status == CONTAINER_RUNNING));
		if (c->status != CONTAINER_RUNNING)
			json_object_set_new(o, "pid", json_integer(0));
		json_array_append_new(all, o);
		container_free(c);
	}
	if (json_array_size(all) == 1)
		json_dumpf(json_array_get(all, 0), stdout, JSON_INDENT(2));
	else if (json_array_size(all) > 1)
		json_dumpf(all, stdout, JSON_INDENT(2));
	if (json_array_size(all) > 0)
		putchar('\n');
	json_decref(all);
	return rc;
}

SHOALRT_VERB(inspect, "inspect", "show containers' state as JSON",
             "usage: shoalrt inspect CONTAINER...\n\n"
             "Print id, name, image, pid, state, exit code, oom_killed, created/started/\n"
             "finished times, rootfs, cgroup, IP and the configuration as JSON (an array when\n"
             "several containers are named).\n",
             inspect_main)
