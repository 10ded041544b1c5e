#ifndef SHOAL_SCHEDULER_EVENTS_H
#define SHOAL_SCHEDULER_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The cluster's event stream (`shoal events`, the CLI's rollout progress, the status page):
 * what changed, in order, as typed records. A fixed ring of the last EVENTS_DEFAULT_CAP
 * records in memory (not stored: a restarted scheduler starts a new stream), each with a
 * sequence number that never repeats in one run, so a reader resumes with events_next()
 * after the last seq it saw and notices a gap when the ring moved past it.
 *
 * Emitting is cheap (no allocation: fixed-size fields, truncated) and synchronous: every
 * subscriber is called from events_emit(), on the scheduler's loop.
 */

#define EVENTS_DEFAULT_CAP 10000

enum events_type {
	EVENTS_NODE = 0, /* a node: registered, ready, down, drain, active, removed */
	EVENTS_TASK,     /* a task: created, assigned, starting, running, healthy, unhealthy,
	                    exited, failed, replaced, removed, ... */
	EVENTS_SERVICE,  /* a service: created, updated, scaled, removed, converged, waiting */
	EVENTS_UPDATE,   /* a rollout: started, progress, paused, rollback, rolled back,
	                    completed, timeout */
	EVENTS_NTYPES,
};

struct events_entry {
	uint64_t seq;    /* 1, 2, ... in emit order */
	int64_t time_ms; /* wall clock */
	enum events_type type;
	char action[24];   /* "running", "down", "paused", ... */
	char service[64];  /* "" when none (node events) */
	char node[64];     /* "" when none */
	char task_id[13];  /* "" when none */
	char task[96];     /* task name (web.2.k3x9), "" when none */
	uint32_t slot;     /* 0 when none */
	uint64_t version;  /* the service version the task runs or the update goes to; 0: none */
	char message[256]; /* reason or detail: "exited with code 3", "updating 2/3" */
};

/* A subscriber: called once per emitted entry (borrowed for the call). It may unsubscribe
 * itself or others from inside the call. */
typedef void (*events_cb)(const struct events_entry *e, void *arg);

struct events_sub;

struct events {
	struct events_entry *ring; /* cap entries; the entry of seq s is ring[(s - 1) % cap] */
	size_t cap;
	uint64_t last_seq;             /* seq of the newest entry, 0 while empty */
	uint64_t total[EVENTS_NTYPES]; /* emitted since start, by type (metrics) */
	struct events_sub *subs;
	int emitting;      /* depth of subscriber calls: removal waits until 0 */
	bool subs_removed; /* a subscriber left during a call: sweep after it */
};

/* An empty ring of cap entries (0: EVENTS_DEFAULT_CAP). */
void events_init(struct events *ev, size_t cap);
void events_free(struct events *ev);

/*
 * Append one entry and hand it to every subscriber. Strings may be NULL (empty); too long
 * ones are cut. fmt (may be NULL) formats the message. Returns its seq.
 */
uint64_t events_emit(struct events *ev, enum events_type type, const char *action,
                     const char *service, const char *node, const char *task_id, const char *task,
                     uint32_t slot, uint64_t version, const char *fmt, ...)
    __attribute__((format(printf, 10, 11)));

/* The oldest entry still held whose seq is greater than after, or NULL when there is none:
 * `for (e = events_next(ev, s); e; e = events_next(ev, e->seq))` reads on from s. */
const struct events_entry *events_next(const struct events *ev, uint64_t after);
struct events_filter;

/* Call cb for every entry held after seq after (oldest first) that f matches (f NULL: all);
 * returns how many. The status page's and the stream's history. */
size_t events_since(const struct events *ev, uint64_t after, const struct events_filter *f,
                    events_cb cb, void *arg);
/* The seq of the oldest entry still held (last_seq + 1 when empty): a reader whose last seq
 * is below this minus one missed entries. */
uint64_t events_first_seq(const struct events *ev);

/* Streaming: cb is called for every entry emitted from now on until unsubscribed. */
struct events_sub *events_subscribe(struct events *ev, events_cb cb, void *arg);
void events_unsubscribe(struct events *ev, struct events_sub *sub);

const char *events_type_name(enum events_type t);
/* "node", "task", "service" or "update"; -1 when unknown. */
int events_type_parse(const char *s);

/*
 * Which entries a reader wants, like `docker events --filter`: values of one key are
 * alternatives (service=a, service=b: either), different keys must all match. An empty
 * filter matches everything.
 */
#define EVENTS_FILTER_MAX 16
struct events_filter {
	const char *services[EVENTS_FILTER_MAX]; /* borrowed */
	size_t nservices;
	const char *nodes[EVENTS_FILTER_MAX];
	size_t nnodes;
	const char *tasks[EVENTS_FILTER_MAX]; /* a task's name or id */
	size_t ntasks;
	unsigned types;   /* bit (1 << type); 0 = every type */
	int64_t since_ms; /* wall clock; 0 = no bound */
	int64_t until_ms; /* wall clock; 0 = no bound */
};

struct shoal_err;

/* Add one "key=value" (service, node, task, type) to f; the value stays borrowed from kv.
 * -1 with a message naming what is wrong. */
int events_filter_add(struct events_filter *f, const char *kv, struct shoal_err *err);
bool events_filter_match(const struct events_filter *f, const struct events_entry *e);

/* One entry as a JSON object on one line (no newline), cut to len: for the status page. */
size_t events_format_json(const struct events_entry *e, char *buf, size_t len);
/* One entry as the line `shoal events` prints (no newline), cut to len. */
size_t events_format_line(const struct events_entry *e, char *buf, size_t len);

#endif
