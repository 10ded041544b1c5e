#include "events.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "client.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "util.h"
#include "when.h"

const char events_usage[] =
    "usage: shoal events [--since TIME] [--until TIME] [--filter KEY=VALUE]... [-o json]\n"
    "\n"
    "Print the cluster's events as they happen, one per line: nodes (ready, down, drain,\n"
    "active, removed), tasks (preparing, starting, running, healthy, unhealthy, exited,\n"
    "failed, replaced, removed, lost), services (created, updated, scaled, removed, waiting,\n"
    "converged, stuck) and updates (started, progress, paused, rollback, rolled back,\n"
    "completed). Like `docker events`, it follows until interrupted; --since first prints\n"
    "the past events the scheduler still holds (its last 10,000), --until stops at that time.\n"
    "\n"
    "Options:\n"
    "  --since TIME         start at TIME: a duration ago (10m, 2h), RFC 3339\n"
    "                       (2026-12-04T10:00:00Z) or Unix seconds\n"
    "  --until TIME         stop at TIME (same forms; --until 0s: now, print the past only)\n"
    "  --filter KEY=VALUE   service=NAME, node=NAME, task=NAME|ID or type=node|task|service|\n"
    "                       update; one key given twice matches either value (repeatable)\n"
    "  -o json              one JSON object per line\n";

int
events_parse_time(const char *s, int64_t now_ms, int64_t *ms, struct shoal_err *err)
{
	struct shoal_err derr;
	int64_t d;
	char *end;
	double secs;

	if (s[0] == '\0')
		return err_set(err, 0, "empty time");
	/* RFC 3339 and the simple durations ago (10s, 5m, 2h, 1d): the same parser as --since
	 * elsewhere. What is left is the events' own: Unix seconds, and durations in ms or with a
	 * fraction. */
	if (when_parse(s, now_ms, ms) == 0)
		return 0;
	errno = 0;
	secs = strtod(s, &end);
	if (*end == '\0' && errno == 0 && secs >= 0 && isdigit((unsigned char)s[0])) {
		*ms = (int64_t)(secs * 1000.0);
		return 0;
	}
	if (util_parse_duration_ms(s, &d, &derr) == 0) {
		*ms = now_ms - d;
		return 0;
	}
	return err_set(err, 0,
	               "invalid time \"%.64s\": want a duration ago (10m), RFC 3339 "
	               "(2026-12-04T10:00:00Z) or Unix seconds",
	               s);
}

static void
format_time(int64_t ms, char *buf, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	char day[32];

	gmtime_r(&secs, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", day, (int)(ms % 1000));
}

void
events_print_line(const Shoal__Event *e, FILE *out)
{
	char when[48];
	const char *what = e->task[0] ? e->task : e->service[0] ? e->service : e->node;
	bool node = e->node[0] && (e->task[0] || e->service[0]);

	format_time(e->time_ms, when, sizeof(when));
	fprintf(out, "%s %s %s %s", when, e->type, e->action, what);
	if (node)
		fprintf(out, " node=%s", e->node);
	if (e->version && (e->task[0] || strcmp(e->type, "update") == 0))
		fprintf(out, " version=%llu", (unsigned long long)e->version);
	if (e->message[0])
		fprintf(out, " (%s)", e->message);
	fputc('\n', out);
}

void
events_print_json(const Shoal__Event *e, FILE *out)
{
	char when[48];
	json_t *o;

	format_time(e->time_ms, when, sizeof(when));
	o = json_pack("{s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:s}", "seq",
	              (json_int_t)e->seq, "time", when, "time_ms", (json_int_t)e->time_ms, "type",
	              e->type, "action", e->action, "service", e->service, "node", e->node,
	              "task_id", e->task_id, "task", e->task, "slot", (int)e->slot, "version",
	              (json_int_t)e->version, "message", e->message);
	if (o == NULL)
		return;
	json_dumpf(o, out, JSON_COMPACT);
	fputc('\n', out);
	json_decref(o);
}

struct events_state {
	int json;
	int64_t until_ms;
	uint64_t last_seq;
	bool gap_told;
};

static enum rpc_call_action
events_on_message(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	struct events_state *st = arg;
	const Shoal__EventBatch *b;

	if (env->body_case != SHOAL__ENVELOPE__BODY_EVENT_BATCH)
		return err_set(err, 0, "unexpected reply from the scheduler"), RPC_CALL_FAIL;
	b = env->event_batch;
	for (size_t i = 0; i < b->n_events; i++) {
		const Shoal__Event *e = b->events[i];
		if (st->until_ms && e->time_ms > st->until_ms)
			return RPC_CALL_STOP;
		if (st->json)
			events_print_json(e, stdout);
		else
			events_print_line(e, stdout);
		st->last_seq = e->seq;
	}
	/* A follower reads as it comes; a pipe would otherwise hold lines back. */
	fflush(stdout);
	return b->eof ? RPC_CALL_STOP : RPC_CALL_MORE;
}

int
events_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__EventsRequest er = SHOAL__EVENTS_REQUEST__INIT;
	struct events_state st = {.json = ctx->json};
	char **filters = xcalloc((size_t)argc + 1, sizeof(*filters));
	int64_t now = util_wall_ms();
	struct shoal_err err;
	int rc = 1, idle = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		size_t klen = 0;
		static const char *const opts[] = {"--since", "--until", "--filter"};
		for (size_t k = 0; k < ARRAY_SIZE(opts) && v == NULL; k++) {
			size_t n = strlen(opts[k]);
			if (strcmp(a, opts[k]) == 0) {
				if (i + 1 >= argc) {
					fprintf(stderr, "shoal events: %s needs a value\n%s", a,
					        events_usage);
					goto out;
				}
				v = argv[++i];
				klen = n;
			} else if (strncmp(a, opts[k], n) == 0 && a[n] == '=') {
				v = a + n + 1;
				klen = n;
			}
		}
		if (v == NULL) {
			fprintf(stderr, "shoal events: unexpected argument %s\n%s", a,
			        events_usage);
			goto out;
		}
		if (strncmp(a, "--since", klen) == 0 && klen == 7) {
			if (events_parse_time(v, now, &er.since_ms, &err) == -1) {
				fprintf(stderr, "shoal events: --since: %s\n", err.msg);
				goto out;
			}
		} else if (strncmp(a, "--until", klen) == 0 && klen == 7) {
			if (events_parse_time(v, now, &er.until_ms, &err) == -1) {
				fprintf(stderr, "shoal events: --until: %s\n", err.msg);
				goto out;
			}
			if (er.until_ms == 0)
				er.until_ms = 1; /* the epoch: nothing, at once */
		} else {
			if (strchr(v, '=') == NULL) {
				fprintf(stderr, "shoal events: --filter wants KEY=VALUE, got %s\n",
				        v);
				goto out;
			}
			filters[er.n_filters++] = (char *)v;
		}
	}
	/* Without --since only what happens from now on, as docker events. */
	if (er.since_ms == 0)
		er.since_ms = now;
	er.filters = filters;
	er.follow = true;
	req.body_case = SHOAL__ENVELOPE__BODY_EVENTS;
	req.events = &er;
	st.until_ms = er.until_ms;
	/* A future --until ends the wait at that time (the scheduler keeps streaming). */
	if (er.until_ms > now)
		idle =
		    (int)(er.until_ms - now + 1 > 0x7fffffff ? 0x7fffffff : er.until_ms - now + 1);
	if (client_stream(ctx, &req, idle, events_on_message, NULL, &st, &err) == -1) {
		if (!(er.until_ms > now && util_wall_ms() >= er.until_ms &&
		      strstr(err.msg, "no reply within"))) {
			fprintf(stderr, "shoal: %s\n", err.msg);
			goto out;
		}
	}
	rc = 0;
out:
	fflush(stdout);
	free(filters);
	return rc;
}
