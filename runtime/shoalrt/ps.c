/* shoalrt ps: list containers (running ones, or all with -a). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "runtime/container.h"
#include "util.h"
#include "verb.h"

static void
status_text(const struct container *c, char *buf, size_t len)
{
	char age[32];
	int64_t now = util_wall_ms();

	switch (c->status) {
	case CONTAINER_RUNNING:
		snprintf(buf, len, "Up %s", util_format_age(now - c->started_ms, age, sizeof(age)));
		break;
	case CONTAINER_EXITED:
		if (c->exit_code == -1)
			snprintf(buf, len, "Exited (unknown)");
		else
			snprintf(buf, len, "Exited (%d)%s %s ago", c->exit_code,
			         c->oom_killed ? " OOM" : "",
			         util_format_age(now - c->finished_ms, age, sizeof(age)));
		break;
	default:
		snprintf(buf, len, "Created");
	}
}

static int
ps_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err;
	bool all = false;
	size_t n;
	struct container **v;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "--all") == 0) {
			all = true;
		} else {
			fprintf(stderr, "shoalrt: ps: unknown argument %s\n", argv[i]);
			return 1;
		}
	}
	v = container_list(ctx->root, &n, &err);
	if (v == NULL) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		return 1;
	}
	if (ctx->json) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			if (all || v[i]->status == CONTAINER_RUNNING)
				json_array_append_new(a, container_to_json(v[i]));
		json_dumpf(a, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(a);
	} else {
		printf("%-12s  %-20s  %-16s  %-24s  %s\n", "CONTAINER ID", "NAME", "IMAGE",
		       "COMMAND", "STATUS");
		for (size_t i = 0; i < n; i++) {
			struct container *c = v[i];
			char cmd[256] = "", st[64];
			if (!all && c->status != CONTAINER_RUNNING)
				continue;
			for (size_t k = 0; c->spec.argv && c->spec.argv[k]; k++) {
				size_t l = strlen(cmd);
				snprintf(cmd + l, sizeof(cmd) - l, "%s%s", k ? " " : "",
				         c->spec.argv[k]);
			}
			if (strlen(cmd) > 22)
				strcpy(cmd + 19, "...");
			status_text(c, st, sizeof(st));
			printf("%.12s  %-20s  %-16s  %-24s  %s\n", c->id, c->spec.name,
			       c->spec.image ? c->spec.image : "", cmd, st);
		}
	}
	container_list_free(v, n);
	return 0;
}

SHOALRT_VERB(ps, "ps", "list containers",
             "usage: shoalrt ps [-a]\n\n"
             "List running containers; -a lists stopped ones too. -o json (before the verb)\n"
             "prints each container's full state.\n",
             ps_main)
