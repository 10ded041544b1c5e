#ifndef SHOAL_CLI_LOGS_H
#define SHOAL_CLI_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct cli_ctx;

extern const char logs_usage[];

/*
 * Writes log chunks to a stream. With prefix, each line becomes "TASK | line" (docker service
 * logs): chunks of several tasks interleave, and a chunk may end mid-line, so each task's
 * unfinished line waits for its next chunk instead of mixing with another task's output.
 */
struct logs_printer {
	bool prefix;
	struct logs_partial {
		char *task; /* owned */
		char *buf;  /* owned: the task's unfinished line */
		size_t len;
	} * v;
	size_t n;
};

/* Write len bytes of task's output to out (the printer is zero-initialised, prefix set). */
void logs_printer_write(struct logs_printer *p, const char *task, const void *data, size_t len,
                        FILE *out);
/* Write every unfinished line with a newline: the stream ended. */
void logs_printer_flush(struct logs_printer *p, FILE *out);
void logs_printer_free(struct logs_printer *p);

/*
 * Whether the argument of `shoal logs` names a service rather than a task: a task name holds
 * dots (web.2.k3x9), a task id is 12 hex digits; a service name is a DNS label.
 */
bool logs_names_service(const char *arg);

/* Parse --tail: a count >= 0, or "all" for -1. -1 on a bad value. */
int logs_parse_tail(const char *s, int *tail);

/* `shoal logs SERVICE|TASK [-f] [--tail N]`: print a task's or a service's output. */
int logs_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
