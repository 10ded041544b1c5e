#include "logs.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "err.h"
#include "when.h"
#include "shoal.pb-c.h"
#include "util.h"

const char logs_usage[] =
    "usage: shoal logs SERVICE|TASK|SERVICE.SLOT [-f] [-t] [--since WHEN] [--tail N]\n"
    "       shoal logs --previous TASK|SERVICE.SLOT\n"
    "\n"
    "Print a task's output (stdout and stderr of its container), or of every task of a\n"
    "service, each line then prefixed with \"TASK | \". TASK is a task name (web.2.k3x9) or id;\n"
    "SERVICE.SLOT (web.2) is the slot's newest task. Tasks that ended are included while they\n"
    "are in the slot's history (the finished tasks ps lists): their nodes keep their output.\n"
    "\n"
    "Options:\n"
    "  -f, --follow     keep printing new output until interrupted; for a SERVICE, tasks\n"
    "                   that start meanwhile are followed too\n"
    "  -t, --timestamps prefix each line with the time it was written (RFC 3339)\n"
    "  --since WHEN     only lines written since WHEN: a duration ago (10s, 5m, 2h, 1d) or\n"
    "                   an RFC 3339 time (2026-12-04T10:24:24Z)\n"
    "  --tail N         only the last N lines of each task (default: all)\n"
    "  -p, --previous   the task the slot ran before TASK (or before SERVICE.SLOT's newest)\n";

static struct logs_partial *
logs_partial_get(struct logs_printer *p, const char *task)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].task, task) == 0)
			return &p->v[i];
	p->v = xrealloc(p->v, (p->n + 1) * sizeof(*p->v));
	p->v[p->n] = (struct logs_partial){.task = xstrdup(task)};
	return &p->v[p->n++];
}

void
logs_printer_write(struct logs_printer *p, const char *task, const void *data, size_t len,
                   FILE *out)
{
	const char *s = data, *end = s + len;
	struct logs_partial *part;

	if (!p->prefix) {
		fwrite(data, 1, len, out);
		return;
	}
	part = logs_partial_get(p, task ? task : "");
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (nl == NULL) {
			part->buf = xrealloc(part->buf, part->len + (size_t)(end - s));
			memcpy(part->buf + part->len, s, (size_t)(end - s));
			part->len += (size_t)(end - s);
			break;
		}
		fprintf(out, "%s | ", part->task);
		if (part->len)
			fwrite(part->buf, 1, part->len, out);
		fwrite(s, 1, (size_t)(nl + 1 - s), out);
		part->len = 0;
		s = nl + 1;
	}
}

void
logs_printer_flush(struct logs_printer *p, FILE *out)
{
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].len == 0)
			continue;
		fprintf(out, "%s | ", p->v[i].task);
		fwrite(p->v[i].buf, 1, p->v[i].len, out);
		fputc('\n', out);
		p->v[i].len = 0;
	}
}

void
logs_printer_free(struct logs_printer *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].task);
		free(p->v[i].buf);
	}
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

bool
logs_names_service(const char *arg)
{
	size_t n = strlen(arg);

	if (strchr(arg, '.') != NULL)
		return false;
	if (n == 12 && strspn(arg, "0123456789abcdef") == n)
		return false;
	return true;
}

int
logs_parse_tail(const char *s, int *tail)
{
	char *end;
	long v;

	if (strcmp(s, "all") == 0) {
		*tail = -1;
		return 0;
	}
	if (s[0] < '0' || s[0] > '9')
		return -1;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v > INT_MAX)
		return -1;
	*tail = (int)v;
	return 0;
}

struct logs_state {
	struct logs_printer printer;
	bool follow;
};

static enum rpc_call_action
logs_on_message(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	struct logs_state *st = arg;
	const Shoal__LogChunk *ch;

	if (env->body_case == SHOAL__ENVELOPE__BODY_OK)
		return RPC_CALL_STOP; /* nothing to send: no task has output */
	if (env->body_case != SHOAL__ENVELOPE__BODY_LOG_CHUNK) {
		err_set(err, 0, "unexpected reply from the scheduler");
		return RPC_CALL_FAIL;
	}
	ch = env->log_chunk;
	if (ch->data.len)
		logs_printer_write(&st->printer, ch->task, ch->data.data, ch->data.len, stdout);
	/* A follower reads as it comes; a pipe would otherwise hold lines for minutes. */
	if (st->follow)
		fflush(stdout);
	return ch->eof ? RPC_CALL_STOP : RPC_CALL_MORE;
}

int
logs_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;
	struct logs_state st = {0};
	struct shoal_err err;
	const char *target = NULL;
	int rc;

	lr.tail = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0) {
			lr.follow = true;
		} else if (strcmp(a, "--tail") == 0 || strncmp(a, "--tail=", 7) == 0) {
			const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
			if (v == NULL || logs_parse_tail(v, &lr.tail) == -1) {
				fprintf(stderr,
				        "shoal logs: --tail wants a number of lines or all\n");
				return 1;
			}
		} else if (strcmp(a, "-t") == 0 || strcmp(a, "--timestamps") == 0) {
			lr.timestamps = true;
		} else if (strcmp(a, "-p") == 0 || strcmp(a, "--previous") == 0) {
			lr.previous = true;
		} else if (strcmp(a, "--since") == 0 || strncmp(a, "--since=", 8) == 0) {
			const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
			if (v == NULL || when_parse(v, util_wall_ms(), &lr.since_ms) == -1) {
				fprintf(stderr,
				        "shoal logs: --since wants a duration (10s, 5m, 2h, 1d) "
				        "or an RFC 3339 time\n");
				return 1;
			}
		} else if (a[0] == '-' || target != NULL) {
			fprintf(stderr, "shoal logs: unexpected argument %s\n%s", a, logs_usage);
			return 1;
		} else {
			target = a;
		}
	}
	if (target == NULL) {
		fprintf(stderr, "shoal logs: want a SERVICE or TASK\n%s", logs_usage);
		return 1;
	}
	lr.task = (char *)target;
	req.body_case = SHOAL__ENVELOPE__BODY_LOGS;
	req.logs = &lr;
	st.follow = lr.follow;
	st.printer.prefix = logs_names_service(target) && !lr.previous;
	/* Following waits for output as long as it takes; a plain read must not hang. */
	rc = client_stream(ctx, &req, lr.follow ? 0 : ctx->timeout_ms, logs_on_message, NULL, &st,
	                   &err);
	logs_printer_flush(&st.printer, stdout);
	logs_printer_free(&st.printer);
	fflush(stdout);
	if (rc == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return 1;
	}
	return 0;
}
