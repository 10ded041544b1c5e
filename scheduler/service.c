#include "service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "task.h"
#include "util.h"

struct service *
service_new(const char *name, int64_t now_wall)
{
	struct service *s = xcalloc(1, sizeof(*s));

	s->name = xstrdup(name);
	s->created_ms = s->updated_ms = now_wall;
	s->progress_at = util_now_ms();
	manifest_spec_init(&s->spec);
	return s;
}

const char *
service_pin_get(const struct service *s, uint64_t version)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->pins); i++)
		if (version && s->pins[i].version == version)
			return s->pins[i].digest;
	return NULL;
}

bool
service_pin_set(struct service *s, uint64_t version, const char *digest)
{
	struct service_pin *free_pin = NULL;

	if (version == 0 || service_pin_get(s, version))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(s->pins) && free_pin == NULL; i++)
		if (s->pins[i].version == 0 ||
		    (s->pins[i].version != s->version && s->pins[i].version != s->prev_version))
			free_pin = &s->pins[i];
	if (free_pin == NULL)
		return false; /* both hold the current and the previous version */
	free_pin->version = version;
	snprintf(free_pin->digest, sizeof(free_pin->digest), "%s", digest);
	return true;
}

const char *
service_wire_spec(struct service *s, const char *full)
{
	/* One place for the spec and one for the previous spec: the two a dispatch may ask for
	 * are both kept, so a pointer handed out stays valid until either changes. Keyed by the
	 * text, not the version: a rollback swaps the two, a scale rewrites the spec. */
	size_t i = full == s->spec_json ? 0 : 1;

	if (s->wire[i].from == NULL || strcmp(s->wire[i].from, full) != 0) {
		free(s->wire[i].from);
		free(s->wire[i].json);
		s->wire[i].from = xstrdup(full);
		s->wire[i].json = manifest_spec_json_wire(full);
		if (s->wire[i].json == NULL)
			s->wire[i].json = xstrdup(full); /* the agent says why it cannot parse it */
	}
	return s->wire[i].json;
}

static void
slot_clear(struct slot *sl)
{
	task_free(sl->cur);
	task_free(sl->next);
	for (size_t i = 0; i < SLOT_HISTORY; i++)
		task_free(sl->history[i]);
	for (size_t i = 0; i < sl->nstopping; i++)
		task_free(sl->stopping[i]);
	free(sl->stopping);
	memset(sl, 0, sizeof(*sl));
}

void
service_free(struct service *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nslots; i++)
		slot_clear(&s->slots[i]);
	free(s->slots);
	manifest_spec_free(&s->spec);
	free(s->spec_json);
	free(s->prev_spec_json);
	for (size_t i = 0; i < ARRAY_SIZE(s->wire); i++) {
		free(s->wire[i].from);
		free(s->wire[i].json);
	}
	free(s->pending_reason);
	free(s->update.message);
	free(s->name);
	free(s);
}

void
service_set_spec(struct service *s, struct service_spec *spec)
{
	manifest_spec_free(&s->spec);
	s->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	free(s->spec_json);
	s->spec_json = manifest_spec_to_json(&s->spec);
}

/* Index of the first slot whose number is >= num (slots are sorted by number). */
static size_t
slot_lower(const struct service *s, uint32_t num)
{
	size_t lo = 0, hi = s->nslots;

	/* Slots numbered 1..n without a gap (every service that never scaled down): slot num
	 * is at num - 1, no search (a million status reports each look their slot up). */
	if (num >= 1 && num <= s->nslots && s->slots[num - 1].num == num)
		return num - 1;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->slots[mid].num < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct slot *
service_slot_find(struct service *s, uint32_t num)
{
	size_t i = slot_lower(s, num);

	return i < s->nslots && s->slots[i].num == num ? &s->slots[i] : NULL;
}

struct slot *
service_slot(struct service *s, uint32_t num)
{
	size_t i = slot_lower(s, num);

	if (i < s->nslots && s->slots[i].num == num)
		return &s->slots[i];
	if (s->nslots == s->capslots) {
		s->capslots = s->capslots ? s->capslots * 2 : 4;
		s->slots = xrealloc(s->slots, s->capslots * sizeof(*s->slots));
	}
	memmove(&s->slots[i + 1], &s->slots[i], (s->nslots - i) * sizeof(*s->slots));
	memset(&s->slots[i], 0, sizeof(s->slots[i]));
	s->slots[i].num = num;
	s->nslots++;
	return &s->slots[i];
}

void
service_slots_reserve(struct service *s, size_t n)
{
	if (n <= s->capslots)
		return;
	s->capslots = n;
	s->slots = xrealloc(s->slots, s->capslots * sizeof(*s->slots));
}

void
service_slot_remove(struct service *s, struct slot *sl)
{
	size_t i = (size_t)(sl - s->slots);

	slot_clear(sl);
	memmove(&s->slots[i], &s->slots[i + 1], (s->nslots - i - 1) * sizeof(*s->slots));
	s->nslots--;
}

uint32_t
service_free_slot_from(const struct service *s, uint32_t from)
{
	uint32_t want = from ? from : 1;

	/* Slots are sorted and distinct: the first gap in from, from+1, ... is the answer. */
	for (size_t i = slot_lower(s, want); i < s->nslots && s->slots[i].num == want; i++)
		want++;
	return want;
}

uint32_t
service_free_slot(const struct service *s)
{
	return service_free_slot_from(s, 1);
}

struct task *
slot_push_history(struct slot *sl, struct task *t)
{
	struct task *evicted = sl->history[SLOT_HISTORY - 1];

	memmove(&sl->history[1], &sl->history[0], (SLOT_HISTORY - 1) * sizeof(sl->history[0]));
	sl->history[0] = t;
	return evicted;
}

void
slot_add_stopping(struct slot *sl, struct task *t)
{
	sl->stopping = xrealloc(sl->stopping, (sl->nstopping + 1) * sizeof(*sl->stopping));
	sl->stopping[sl->nstopping++] = t;
}

void
slot_del_stopping(struct slot *sl, struct task *t)
{
	for (size_t i = 0; i < sl->nstopping; i++) {
		if (sl->stopping[i] == t) {
			sl->stopping[i] = sl->stopping[--sl->nstopping];
			return;
		}
	}
}

void
service_rollout_begin(struct service *s)
{
	s->converged = false;
	s->stuck = false;
	s->steady = 0;
	s->progress_at = util_now_ms();
}

uint32_t
service_running(const struct service *s)
{
	uint32_t n = 0;

	for (size_t i = 0; i < s->nslots; i++) {
		const struct slot *sl = &s->slots[i];
		if (sl->removed)
			continue;
		if ((sl->cur && sl->cur->state == TASK_STATE_RUNNING && task_live(sl->cur)) ||
		    (sl->next && sl->next->state == TASK_STATE_RUNNING && task_live(sl->next)))
			n++;
	}
	return n;
}

static size_t
services_lower(const struct services *ss, const char *name)
{
	size_t lo = 0, hi = ss->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(ss->v[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct service *
services_find(struct services *ss, const char *name)
{
	size_t i = services_lower(ss, name);

	return i < ss->n && strcmp(ss->v[i]->name, name) == 0 ? ss->v[i] : NULL;
}

void
services_add(struct services *ss, struct service *s)
{
	size_t i = services_lower(ss, s->name);

	if (ss->n == ss->cap) {
		ss->cap = ss->cap ? ss->cap * 2 : 8;
		ss->v = xrealloc(ss->v, ss->cap * sizeof(*ss->v));
	}
	memmove(&ss->v[i + 1], &ss->v[i], (ss->n - i) * sizeof(*ss->v));
	ss->v[i] = s;
	ss->n++;
}

void
services_del(struct services *ss, struct service *s)
{
	size_t i = services_lower(ss, s->name);

	if (i < ss->n && ss->v[i] == s) {
		memmove(&ss->v[i], &ss->v[i + 1], (ss->n - i - 1) * sizeof(*ss->v));
		ss->n--;
	}
}

void
services_free(struct services *ss)
{
	for (size_t i = 0; i < ss->n; i++)
		service_free(ss->v[i]);
	free(ss->v);
	memset(ss, 0, sizeof(*ss));
}
