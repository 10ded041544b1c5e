#include "watch.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "util.h"

static struct watch_service *
find_service(struct watch_state *st, const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->v[i].name, name) == 0)
			return &st->v[i];
	return NULL;
}

static struct watch_slot *
find_slot(struct watch_service *s, uint32_t num)
{
	size_t i;

	for (i = 0; i < s->nslots; i++)
		if (s->slots[i].num == num)
			return &s->slots[i];
	/* Kept sorted by number. */
	s->slots = xrealloc(s->slots, (s->nslots + 1) * sizeof(*s->slots));
	for (i = s->nslots; i > 0 && s->slots[i - 1].num > num; i--)
		s->slots[i] = s->slots[i - 1];
	memset(&s->slots[i], 0, sizeof(s->slots[i]));
	s->slots[i].num = num;
	s->nslots++;
	return &s->slots[i];
}

static void __attribute__((format(printf, 3, 4)))
finish(struct watch_service *s, bool failed, const char *fmt, ...)
{
	va_list ap;

	s->done = true;
	s->failed = failed;
	va_start(ap, fmt);
	vsnprintf(s->status, sizeof(s->status), fmt, ap);
	va_end(ap);
}

bool
watch_event(struct watch_state *st, const Shoal__Event *e)
{
	struct watch_service *s = find_service(st, e->service);
	const char *msg = e->message;

	st->last_seq = e->seq;
	if (s == NULL || s->done)
		return false;
	if (strcmp(e->type, "task") == 0) {
		struct watch_slot *sl = find_slot(s, e->slot);
		/* A slot shows its newest task: the old one stopping says nothing new. */
		if (sl->version > e->version && sl->task[0])
			goto plain;
		snprintf(sl->task, sizeof(sl->task), "%s", e->task);
		snprintf(sl->action, sizeof(sl->action), "%s", e->action);
		snprintf(sl->node, sizeof(sl->node), "%s", e->node);
		snprintf(sl->message, sizeof(sl->message), "%s", msg);
		sl->version = e->version;
		goto plain;
	}
	if (strcmp(e->type, "update") == 0) {
		if (e->version)
			s->version = e->version;
		if (strcmp(e->action, "paused") == 0)
			finish(s, true, "update paused: %s", msg);
		else if (strcmp(e->action, "rolled back") == 0 && st->kind == WATCH_ROLLBACK)
			finish(s, false, "rolled back%s%s", msg[0] ? ": " : "", msg);
		else if (strcmp(e->action, "rolled back") == 0)
			finish(s, true, "update rolled back: %s", msg);
		else if (strcmp(e->action, "progress") == 0 || strcmp(e->action, "rollback") == 0)
			snprintf(s->status, sizeof(s->status), "%s%s%s",
			         strcmp(e->action, "rollback") == 0 ? "rolling back: " : "", msg,
			         "");
		else if (strcmp(e->action, "completed") == 0)
			snprintf(s->status, sizeof(s->status), "update completed");
		goto plain;
	}
	if (strcmp(e->type, "service") == 0) {
		if (strcmp(e->action, "converged") == 0)
			finish(s, false, "converged: %s", msg);
		else if (strcmp(e->action, "stuck") == 0)
			finish(s, true, "stuck: %s", msg);
		else if (strcmp(e->action, "removed") == 0)
			finish(s, true, "service removed");
		else if (strcmp(e->action, "waiting") == 0)
			snprintf(s->status, sizeof(s->status), "waiting: %s", msg);
		goto plain;
	}
	return false;
plain:
	if (!st->tty) {
		if (strcmp(e->type, "task") == 0)
			fprintf(st->out, "%s: slot %u: %s %s v%llu%s%s%s%s\n", s->name, e->slot,
			        e->action, e->task, (unsigned long long)e->version,
			        e->node[0] ? " on " : "", e->node, msg[0] ? ": " : "", msg);
		else
			fprintf(st->out, "%s: %s %s%s%s\n", s->name, e->type, e->action,
			        msg[0] ? ": " : "", msg);
		fflush(st->out);
	}
	return true;
}

bool
watch_finished(const struct watch_state *st)
{
	for (size_t i = 0; i < st->n; i++)
		if (!st->v[i].done)
			return false;
	return true;
}

/* How far along a slot is, out of 5, from its task's last event. */
static int
progress_of(const struct watch_service *s, const struct watch_slot *sl)
{
	static const struct {
		const char *action;
		int steps;
	} steps[] = {
	    {"preparing", 1}, {"starting", 2}, {"running", 4}, {"healthy", 5}, {"unhealthy", 3},
	};

	if (s->done && !s->failed)
		return 5;
	if (s->version && sl->version != s->version)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++)
		if (strcmp(sl->action, steps[i].action) == 0)
			return steps[i].steps;
	return 0;
}

void
watch_draw(struct watch_state *st)
{
	size_t lines = 0;

	/* Back to the first line drawn, then every line again, cleared first. */
	if (st->drawn)
		fprintf(st->out, "\033[%zuA", st->drawn);
	for (size_t i = 0; i < st->n; i++) {
		const struct watch_service *s = &st->v[i];
		fprintf(st->out, "\r\033[2K%s: %s\n", s->name, s->status[0] ? s->status : "...");
		lines++;
		for (size_t j = 0; j < s->nslots && j < WATCH_MAX_SLOTS; j++) {
			const struct watch_slot *sl = &s->slots[j];
			int p = progress_of(s, sl);
			char bar[16];
			memset(bar, ' ', 10);
			memset(bar, '=', (size_t)p * 2);
			if (p < 5)
				bar[p * 2] = '>';
			bar[10] = '\0';
			fprintf(st->out, "\r\033[2K  slot %-3u %-9s v%-3llu [%s] %s%s%s\n", sl->num,
			        sl->action, (unsigned long long)sl->version, bar, sl->node,
			        sl->message[0] ? "  " : "", sl->message);
			lines++;
		}
		if (s->nslots > WATCH_MAX_SLOTS) {
			fprintf(st->out, "\r\033[2K  ... and %zu more slots\n",
			        s->nslots - WATCH_MAX_SLOTS);
			lines++;
		}
	}
	/* Fewer lines than last time: clear what is left below. */
	for (size_t i = lines; i < st->drawn; i++)
		fprintf(st->out, "\r\033[2K\n");
	if (st->drawn > lines)
		fprintf(st->out, "\033[%zuA", st->drawn - lines);
	st->drawn = lines;
	fflush(st->out);
}

static enum rpc_call_action
watch_on_message(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	struct watch_state *st = arg;
	const Shoal__EventBatch *b;
	bool changed = false;

	if (env->body_case != SHOAL__ENVELOPE__BODY_EVENT_BATCH)
		return err_set(err, 0, "unexpected reply from the scheduler"), RPC_CALL_FAIL;
	b = env->event_batch;
	/* The history batch: the ring moved past where the change began (a burst of more than
	 * it holds), events were lost. Say so; the outcome still comes as an event. Later
	 * batches are sent as emitted, none is lost. */
	if (!st->streaming && st->last_seq && b->first_seq > st->last_seq + 1)
		fprintf(stderr, "shoal: %llu events were dropped before watching began\n",
		        (unsigned long long)(b->first_seq - st->last_seq - 1));
	st->streaming = true;
	for (size_t i = 0; i < b->n_events; i++)
		changed |= watch_event(st, b->events[i]);
	if (st->tty && (changed || st->drawn == 0))
		watch_draw(st);
	if (watch_finished(st))
		return RPC_CALL_STOP;
	if (b->eof)
		return err_set(err, 0, "the event stream ended"), RPC_CALL_FAIL;
	return RPC_CALL_MORE;
}

bool
watch_detach_arg(int *argc, char **argv)
{
	bool found = false;
	int o = 1;

	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--detach") == 0)
			found = true;
		else
			argv[o++] = argv[i];
	}
	argv[o] = NULL;
	*argc = o;
	return found;
}

int
watch_rollout(struct cli_ctx *ctx, const char *const *services, size_t n, uint64_t since_seq,
              enum watch_kind kind)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__EventsRequest er = SHOAL__EVENTS_REQUEST__INIT;
	struct watch_state st = {.kind = kind, .out = stdout};
	char **filters;
	struct shoal_err err;
	int rc = 0;

	if (n == 0)
		return 0;
	st.tty = isatty(STDOUT_FILENO) && getenv("TERM") && strcmp(getenv("TERM"), "dumb") != 0;
	st.v = xcalloc(n, sizeof(*st.v));
	st.n = n;
	st.last_seq = since_seq;
	filters = xcalloc(n, sizeof(*filters));
	for (size_t i = 0; i < n; i++) {
		st.v[i].name = services[i];
		filters[i] = xasprintf("service=%s", services[i]);
	}
	er.since_seq = since_seq;
	er.filters = filters;
	er.n_filters = n;
	er.follow = true;
	req.body_case = SHOAL__ENVELOPE__BODY_EVENTS;
	req.events = &er;
	/* No idle bound: the scheduler's update.timeout ends a rollout that stalls. */
	if (client_stream(ctx, &req, 0, watch_on_message, NULL, &st, &err) == -1) {
		fprintf(stderr,
		        "shoal: watching the rollout: %s (it goes on; `shoal services` "
		        "shows it)\n",
		        err.msg);
		rc = 1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct watch_service *s = &st.v[i];
		if (!s->done)
			continue;
		if (s->failed) {
			fprintf(stderr, "shoal: service %s: %s\n", s->name, s->status);
			rc = 1;
		} else if (!st.tty) {
			printf("%s: %s\n", s->name, s->status);
		}
	}
	fflush(stdout);
	for (size_t i = 0; i < n; i++) {
		free(filters[i]);
		free(st.v[i].slots);
	}
	free(filters);
	free(st.v);
	return rc;
}
