#include "events.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "util.h"

struct events_sub {
	events_cb cb; /* NULL once unsubscribed, until swept */
	void *arg;
	struct events_sub *next;
};

static const char *const type_names[EVENTS_NTYPES] = {"node", "task", "service", "update"};

void
events_init(struct events *ev, size_t cap)
{
	memset(ev, 0, sizeof(*ev));
	ev->cap = cap ? cap : EVENTS_DEFAULT_CAP;
	ev->ring = xcalloc(ev->cap, sizeof(*ev->ring));
}

void
events_free(struct events *ev)
{
	while (ev->subs) {
		struct events_sub *s = ev->subs;
		ev->subs = s->next;
		free(s);
	}
	free(ev->ring);
	ev->ring = NULL;
	ev->cap = 0;
}

/* src cut to len - 1 bytes: no snprintf, emitting is on every task's state change. */
static void
copy(char *dst, size_t len, const char *src)
{
	size_t n = src ? strnlen(src, len - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

/* Drop the subscribers that left while entries were being handed out. */
static void
sweep(struct events *ev)
{
	for (struct events_sub **p = &ev->subs; *p;) {
		struct events_sub *s = *p;
		if (s->cb == NULL) {
			*p = s->next;
			free(s);
		} else {
			p = &s->next;
		}
	}
	ev->subs_removed = false;
}

uint64_t
events_emit(struct events *ev, enum events_type type, const char *action, const char *service,
            const char *node, const char *task_id, const char *task, uint32_t slot,
            uint64_t version, const char *fmt, ...)
{
	struct events_entry *e;
	va_list ap;

	if (ev->ring == NULL || (unsigned)type >= EVENTS_NTYPES)
		return 0;
	e = &ev->ring[ev->last_seq % ev->cap];
	e->seq = ++ev->last_seq;
	e->time_ms = util_wall_ms();
	e->type = type;
	copy(e->action, sizeof(e->action), action);
	copy(e->service, sizeof(e->service), service);
	copy(e->node, sizeof(e->node), node);
	copy(e->task_id, sizeof(e->task_id), task_id);
	copy(e->task, sizeof(e->task), task);
	e->slot = slot;
	e->version = version;
	e->message[0] = '\0';
	if (fmt && fmt[0]) {
		va_start(ap, fmt);
		vsnprintf(e->message, sizeof(e->message), fmt, ap);
		va_end(ap);
	}
	ev->total[type]++;
	/* A subscriber may emit in turn (its entry overwrites nothing it still reads: it gets a
	 * copy of the pointer only for its call) or leave; removals wait for the outermost call. */
	ev->emitting++;
	for (struct events_sub *s = ev->subs; s; s = s->next)
		if (s->cb)
			s->cb(e, s->arg);
	if (--ev->emitting == 0 && ev->subs_removed)
		sweep(ev);
	return e->seq;
}

size_t
events_since(const struct events *ev, uint64_t after, const struct events_filter *f, events_cb cb,
             void *arg)
{
	size_t n = 0;

	for (const struct events_entry *e = events_next(ev, after); e;
	     e = events_next(ev, e->seq)) {
		if (f && !events_filter_match(f, e))
			continue;
		cb(e, arg);
		n++;
	}
	return n;
}

uint64_t
events_first_seq(const struct events *ev)
{
	return ev->last_seq > ev->cap ? ev->last_seq - ev->cap + 1 : 1;
}

const struct events_entry *
events_next(const struct events *ev, uint64_t after)
{
	uint64_t first = events_first_seq(ev);
	uint64_t s = after + 1 < first ? first : after + 1;

	if (ev->ring == NULL || s > ev->last_seq)
		return NULL;
	return &ev->ring[(s - 1) % ev->cap];
}

struct events_sub *
events_subscribe(struct events *ev, events_cb cb, void *arg)
{
	struct events_sub *s = xcalloc(1, sizeof(*s)), **p = &ev->subs;

	s->cb = cb;
	s->arg = arg;
	/* At the end: subscribers hear entries in the order they subscribed. */
	while (*p)
		p = &(*p)->next;
	*p = s;
	return s;
}

void
events_unsubscribe(struct events *ev, struct events_sub *sub)
{
	if (sub == NULL)
		return;
	sub->cb = NULL;
	ev->subs_removed = true;
	if (ev->emitting == 0)
		sweep(ev);
}

const char *
events_type_name(enum events_type t)
{
	return (unsigned)t < EVENTS_NTYPES ? type_names[t] : "?";
}

int
events_type_parse(const char *s)
{
	for (int i = 0; i < EVENTS_NTYPES; i++)
		if (strcmp(s, type_names[i]) == 0)
			return i;
	return -1;
}

int
events_filter_add(struct events_filter *f, const char *kv, struct shoal_err *err)
{
	const char *eq = strchr(kv, '=');
	const char *v = eq ? eq + 1 : NULL;
	size_t klen = eq ? (size_t)(eq - kv) : 0;
	const char **list = NULL;
	size_t *n = NULL;

	if (eq == NULL || klen == 0 || v[0] == '\0')
		return err_set(err, 0,
		               "filter \"%.64s\": want KEY=VALUE (service, node, task, type)", kv);
	if (klen == 7 && strncmp(kv, "service", 7) == 0) {
		list = f->services;
		n = &f->nservices;
	} else if (klen == 4 && strncmp(kv, "node", 4) == 0) {
		list = f->nodes;
		n = &f->nnodes;
	} else if (klen == 4 && strncmp(kv, "task", 4) == 0) {
		list = f->tasks;
		n = &f->ntasks;
	} else if (klen == 4 && strncmp(kv, "type", 4) == 0) {
		int t = events_type_parse(v);
		if (t < 0)
			return err_set(
			    err, 0, "filter \"%.64s\": type is node, task, service or update", kv);
		f->types |= 1u << t;
		return 0;
	} else {
		return err_set(err, 0,
		               "filter \"%.64s\": unknown key (service, node, task or type)", kv);
	}
	if (*n >= EVENTS_FILTER_MAX)
		return err_set(err, 0, "more than %d filters on one key", EVENTS_FILTER_MAX);
	list[(*n)++] = v;
	return 0;
}

static bool
any_of(const char *const *list, size_t n, const char *a, const char *b)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], a) == 0 || (b && b[0] && strcmp(list[i], b) == 0))
			return true;
	return false;
}

bool
events_filter_match(const struct events_filter *f, const struct events_entry *e)
{
	if (f->types && !(f->types & (1u << e->type)))
		return false;
	if (f->since_ms && e->time_ms < f->since_ms)
		return false;
	if (f->until_ms && e->time_ms > f->until_ms)
		return false;
	/* An entry without the field does not match a filter on it (a node event is not any
	 * service's). */
	if (f->nservices &&
	    (e->service[0] == '\0' || !any_of(f->services, f->nservices, e->service, NULL)))
		return false;
	if (f->nnodes && (e->node[0] == '\0' || !any_of(f->nodes, f->nnodes, e->node, NULL)))
		return false;
	if (f->ntasks &&
	    (e->task_id[0] == '\0' || !any_of(f->tasks, f->ntasks, e->task_id, e->task)))
		return false;
	return true;
}

/* s as a JSON string body into buf at *o (cut at len). */
static void
json_str(char *buf, size_t len, size_t *o, const char *s)
{
	for (; *s && *o + 8 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			*o += (size_t)snprintf(buf + *o, len - *o, "\\%c", c);
		else if (c < 0x20)
			*o += (size_t)snprintf(buf + *o, len - *o, "\\u%04x", c);
		else
			buf[(*o)++] = (char)c;
	}
	if (*o < len)
		buf[*o] = '\0';
}

static void
json_field(char *buf, size_t len, size_t *o, const char *key, const char *val)
{
	if (*o + strlen(key) + 8 >= len)
		return;
	*o += (size_t)snprintf(buf + *o, len - *o, ",\"%s\":\"", key);
	json_str(buf, len, o, val);
	if (*o + 1 < len) {
		buf[(*o)++] = '"';
		buf[*o] = '\0';
	}
}

size_t
events_format_json(const struct events_entry *e, char *buf, size_t len)
{
	size_t o;

	if (len < 64) {
		if (len)
			buf[0] = '\0';
		return 0;
	}
	o = (size_t)snprintf(buf, len,
	                     "{\"seq\":%llu,\"time_ms\":%lld,\"slot\":%u,\"version\":%llu",
	                     (unsigned long long)e->seq, (long long)e->time_ms, e->slot,
	                     (unsigned long long)e->version);
	if (o >= len)
		o = len - 1;
	json_field(buf, len, &o, "type", events_type_name(e->type));
	json_field(buf, len, &o, "action", e->action);
	json_field(buf, len, &o, "service", e->service);
	json_field(buf, len, &o, "node", e->node);
	json_field(buf, len, &o, "task_id", e->task_id);
	json_field(buf, len, &o, "task", e->task);
	json_field(buf, len, &o, "message", e->message);
	if (o + 2 <= len) {
		buf[o++] = '}';
		buf[o] = '\0';
	}
	return o;
}

size_t
events_format_line(const struct events_entry *e, char *buf, size_t len)
{
	time_t secs = (time_t)(e->time_ms / 1000);
	struct tm tm;
	char when[32];
	int n;

	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(buf, len, "%s.%03lldZ %s %s %s%s%s%s%s%s%s", when,
	             (long long)(e->time_ms % 1000), events_type_name(e->type), e->action,
	             e->task[0]      ? e->task
	             : e->service[0] ? e->service
	                             : e->node,
	             e->node[0] && (e->task[0] || e->service[0]) ? " node=" : "",
	             e->node[0] && (e->task[0] || e->service[0]) ? e->node : "",
	             e->message[0] ? " (" : "", e->message, e->message[0] ? ")" : "", "");
	return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}
