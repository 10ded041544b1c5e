#ifndef SHOAL_CLI_EVENTS_H
#define SHOAL_CLI_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cli_ctx;
struct shoal_err;
typedef struct Shoal__Event Shoal__Event;

extern const char events_usage[];

/*
 * A point in time as `docker events --since` takes it: a duration before now ("10m",
 * "1h", "90s"), an RFC 3339 time ("2026-12-04T10:00:00Z", "...T11:00:00.5+01:00") or Unix
 * seconds ("1796378400", fractions allowed). now_ms is the wall clock; *ms gets wall ms.
 */
int events_parse_time(const char *s, int64_t now_ms, int64_t *ms, struct shoal_err *err);

/* One event as `shoal events` prints it: TIME TYPE ACTION OBJECT [node=N] [(message)]. */
void events_print_line(const Shoal__Event *e, FILE *out);
/* One event as a JSON object on one line (`-o json`). */
void events_print_json(const Shoal__Event *e, FILE *out);

/* `shoal events [--since T] [--until T] [--filter K=V]...`: the cluster's event stream. */
int events_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
