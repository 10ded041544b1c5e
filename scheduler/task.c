#include "task.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "service-t.h"
#include "util.h"

static const char *const state_names[] = {
    [TASK_STATE_PENDING] = "pending",     [TASK_STATE_ASSIGNED] = "assigned",
    [TASK_STATE_PREPARING] = "preparing", [TASK_STATE_STARTING] = "starting",
    [TASK_STATE_RUNNING] = "running",     [TASK_STATE_STOPPING] = "stopping",
    [TASK_STATE_STOPPED] = "stopped",     [TASK_STATE_FAILED] = "failed",
};

/* Random bytes for task ids, drawn from libsodium 4 KiB at a time: one getrandom() per 680
 * tasks instead of one per task. */
static void
id_random(uint8_t *out, size_t n)
{
	static uint8_t pool[4096];
	static size_t left;

	if (left < n) {
		randombytes_buf(pool, sizeof(pool));
		left = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - left, n);
	sodium_memzero(pool + sizeof(pool) - left, n);
	left -= n;
}

/* Only an unhealthy text is allocated (task_set_health); the others are constants. */
static void
health_free(struct task *t)
{
	if (t->health_state == TASK_HEALTH_UNHEALTHY)
		free((char *)t->health);
	t->health = NULL;
}

struct task *
task_new(struct service *svc, uint32_t slot, uint64_t version, int64_t now_wall)
{
	struct task *t = xcalloc(1, sizeof(*t));
	static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	uint8_t raw[6];
	char shortid[5];

	id_random(raw, sizeof(raw));
	util_hex(raw, sizeof(raw), t->id);
	/* The short id in the name is for people: 4 base-36 characters from the id's bytes. */
	for (int i = 0; i < 4; i++)
		shortid[i] = b36[raw[i] % 36];
	shortid[4] = '\0';
	t->svc = svc;
	t->slot = slot;
	t->version = version;
	t->name = xasprintf("%s.%u.%s", svc->name, slot, shortid);
	t->state = TASK_STATE_PENDING;
	t->state_since = now_wall;
	t->created_ms = now_wall;
	t->exit_code = -1;
	return t;
}

void
task_free(struct task *t)
{
	if (t == NULL)
		return;
	free(t->name);
	free(t->message);
	health_free(t);
	free(t->last_output);
	free(t);
}

bool
task_terminal(const struct task *t)
{
	return t->state == TASK_STATE_STOPPED || t->state == TASK_STATE_FAILED;
}

bool
task_healthy(const struct task *t)
{
	if (t->state != TASK_STATE_RUNNING)
		return false;
	if (t->svc->spec.health.kind == MANIFEST_HEALTH_NONE)
		return true;
	return t->health_state == TASK_HEALTH_HEALTHY;
}

bool
task_set_health(struct task *t, enum task_health h, const char *reason)
{
	const char *text;
	char *owned = NULL;

	switch (h) {
	case TASK_HEALTH_STARTING:
		text = "starting";
		break;
	case TASK_HEALTH_HEALTHY:
		text = "healthy";
		break;
	case TASK_HEALTH_UNHEALTHY:
		text = owned = xasprintf("unhealthy: %s", reason ? reason : "");
		break;
	default:
		text = "";
		break;
	}
	if (t->health && t->health_state == h && strcmp(t->health, text) == 0) {
		free(owned);
		return false;
	}
	health_free(t);
	t->health = text;
	t->health_state = h;
	return true;
}

enum task_health
task_health_parse(const char *text, const char **reason)
{
	*reason = "";
	if (text == NULL || text[0] == '\0')
		return TASK_HEALTH_NONE;
	if (strcmp(text, "starting") == 0)
		return TASK_HEALTH_STARTING;
	if (strcmp(text, "healthy") == 0)
		return TASK_HEALTH_HEALTHY;
	if (strncmp(text, "unhealthy", 9) == 0) {
		*reason = strncmp(text, "unhealthy: ", 11) == 0 ? text + 11 : text + 9;
		return TASK_HEALTH_UNHEALTHY;
	}
	return TASK_HEALTH_UNKNOWN;
}

bool
task_live(const struct task *t)
{
	return task_wanted(t) && !task_terminal(t);
}

/* ---- the phase ---- */

static const char *const phase_names[] = {
    [TASK_PHASE_RUN] = "run",           [TASK_PHASE_HELD] = "held",
    [TASK_PHASE_LOST] = "lost",         [TASK_PHASE_DRAINING] = "draining",
    [TASK_PHASE_SHUTDOWN] = "shutdown",
};

/* The allowed transitions, from (row) -> to (column). Why each exists:
 *   run -> held      stop-first: a new task waits for the old one (only while unplaced)
 *   held -> run      the old task stopped: it may be placed
 *   run -> lost      its node went down
 *   run -> draining  asked to stop while some proxy may send to it
 *   * -> shutdown    asked to stop (held, run, lost), or the drain is over (draining) */
static const bool phase_table[TASK_PHASE_COUNT][TASK_PHASE_COUNT] = {
    [TASK_PHASE_RUN] = {[TASK_PHASE_HELD] = true,
                        [TASK_PHASE_LOST] = true,
                        [TASK_PHASE_DRAINING] = true,
                        [TASK_PHASE_SHUTDOWN] = true},
    [TASK_PHASE_HELD] = {[TASK_PHASE_RUN] = true, [TASK_PHASE_SHUTDOWN] = true},
    [TASK_PHASE_LOST] = {[TASK_PHASE_SHUTDOWN] = true},
    [TASK_PHASE_DRAINING] = {[TASK_PHASE_SHUTDOWN] = true},
    [TASK_PHASE_SHUTDOWN] = {0},
};

const char *
task_phase_name(enum task_phase p)
{
	if ((size_t)p < ARRAY_SIZE(phase_names) && phase_names[p])
		return phase_names[p];
	return "unknown";
}

bool
task_phase_allowed(enum task_phase from, enum task_phase to)
{
	if ((size_t)from >= TASK_PHASE_COUNT || (size_t)to >= TASK_PHASE_COUNT)
		return false;
	return from == to || phase_table[from][to];
}

bool
task_phase_set(struct task *t, enum task_phase p)
{
	/* Held means not placed: a task on a node is never held back. */
	if (!task_phase_allowed(t->phase, p) || (p == TASK_PHASE_HELD && t->bound)) {
		shoal_log(LOG_ERR, "task %s: phase %s -> %s refused (a bug: it stays %s)",
		          t->name ? t->name : t->id, task_phase_name(t->phase), task_phase_name(p),
		          task_phase_name(t->phase));
		return false;
	}
	t->phase = p;
	return true;
}

enum task_desired
task_desired(const struct task *t)
{
	return t->phase == TASK_PHASE_DRAINING || t->phase == TASK_PHASE_SHUTDOWN
	           ? TASK_DESIRED_SHUTDOWN
	           : TASK_DESIRED_RUNNING;
}

bool
task_wanted(const struct task *t)
{
	return t->phase == TASK_PHASE_RUN || t->phase == TASK_PHASE_HELD;
}

bool
task_row_kept(const struct task *t)
{
	return t->row.queued || t->row.written;
}

void
task_set_state(struct task *t, enum task_state st, int64_t now_wall)
{
	if (t->state == st)
		return;
	t->state = st;
	t->state_since = now_wall;
}

void
task_set_message(struct task *t, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	if (fmt) {
		va_start(ap, fmt);
		if (vasprintf(&m, fmt, ap) == -1)
			m = NULL;
		va_end(ap);
	}
	free(t->message);
	t->message = m;
}

const char *
task_state_name(enum task_state st)
{
	if ((size_t)st < ARRAY_SIZE(state_names) && state_names[st])
		return state_names[st];
	return "unknown";
}

const char *
task_desired_name(enum task_desired d)
{
	return d == TASK_DESIRED_RUNNING ? "running" : "shutdown";
}

int
task_state_parse(const char *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(state_names); i++)
		if (strcmp(s, state_names[i]) == 0)
			return (int)i;
	return -1;
}

/* ---- id map: open addressing with linear probing; ids are random hex, so their first
 * 8 digits are already a good hash. ---- */

#define TOMBSTONE ((struct task *)1)

static uint64_t
id_hash(const char *id)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 1099511628211ULL;
	return h;
}

void
task_map_init(struct task_map *m)
{
	memset(m, 0, sizeof(*m));
}

void
task_map_free(struct task_map *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

static void
rehash(struct task_map *m, size_t cap)
{
	struct task **old = m->slots;
	size_t oldcap = m->cap;

	m->slots = xcalloc(cap, sizeof(*m->slots));
	m->cap = cap;
	m->n = m->used = 0;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i] && old[i] != TOMBSTONE)
			task_map_put(m, old[i]);
	free(old);
}

void
task_map_put(struct task_map *m, struct task *t)
{
	size_t i;

	if ((m->used + 1) * 4 >= m->cap * 3)
		rehash(m, m->cap ? (m->n * 2 > m->cap / 2 ? m->cap * 2 : m->cap) : 64);
	i = id_hash(t->id) & (m->cap - 1);
	while (m->slots[i] && m->slots[i] != TOMBSTONE)
		i = (i + 1) & (m->cap - 1);
	if (m->slots[i] == NULL)
		m->used++;
	m->slots[i] = t;
	m->n++;
}

struct task *
task_map_get(const struct task_map *m, const char *id)
{
	size_t i;

	if (m->cap == 0)
		return NULL;
	i = id_hash(id) & (m->cap - 1);
	while (m->slots[i]) {
		if (m->slots[i] != TOMBSTONE && strcmp(m->slots[i]->id, id) == 0)
			return m->slots[i];
		i = (i + 1) & (m->cap - 1);
	}
	return NULL;
}

void
task_map_del(struct task_map *m, const struct task *t)
{
	size_t i;

	if (m->cap == 0)
		return;
	i = id_hash(t->id) & (m->cap - 1);
	while (m->slots[i]) {
		if (m->slots[i] == t) {
			m->slots[i] = TOMBSTONE;
			m->n--;
			return;
		}
		i = (i + 1) & (m->cap - 1);
	}
}
