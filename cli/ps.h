#ifndef SHOAL_CLI_PS_H
#define SHOAL_CLI_PS_H

#include <stdbool.h>
#include <stddef.h>

struct cli_ctx;
struct json_t;
struct Shoal__TaskInfo;

extern const char ps_usage[];

/* A listing's --filter KEY=VALUE options (borrowed strings): a row shows when all match. */
struct cli_filter {
	const char *key[8];
	const char *value[8];
	size_t n;
};

/* Add arg ("KEY=VALUE", KEY one of keys, NULL-terminated); -1 with a message naming the keys
 * on stderr otherwise (cmd names the command in it). */
int ps_filter_add(struct cli_filter *f, const char *arg, const char *const *keys, const char *cmd);
/* Whether every filter on key accepts value. */
bool ps_filter_match(const struct cli_filter *f, const char *key, const char *value);
/*
 * The options every listing (ps, services, nodes) shares: -q/--quiet and -f/--filter
 * KEY=VALUE. Looks at argv[*i]: 1 when it was one of them (*i moved past its value), 0 when
 * it is not, -1 with a message on stderr (cmd names the command) when its value is missing
 * or bad.
 */
int ps_list_option(const char *cmd, int argc, char **argv, int *i, const char *const *keys,
                   struct cli_filter *f, bool *quiet);
/* Print a listing's JSON (indented, one newline) and free it. */
void ps_print_json(struct json_t *v);

/* The lower-case name of a TaskState ("running"), "unknown" out of range. */
const char *ps_state_name(int state);

/*
 * The STATE column: the state's name, plus " (exit N)" for a stopped or failed task with an
 * exit code >= 0 unless its message already gives the code. Truncates to len; returns buf.
 */
char *ps_state_text(const struct Shoal__TaskInfo *t, char *buf, size_t len);

/*
 * Order of the listing: by service, then slot, then the task meant to run (desired running)
 * before those being replaced, a running one first, then the newest state change first.
 * A qsort comparator over Shoal__TaskInfo pointers.
 */
int ps_compare(const void *a, const void *b);
void ps_sort(struct Shoal__TaskInfo **tasks, size_t n);

/* Every TaskInfo field as a JSON object (state by name). New reference. */
struct json_t *ps_task_json(const struct Shoal__TaskInfo *t);

/* `shoal ps [SERVICE] [-a]`: the tasks as a table or JSON. */
int ps_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
