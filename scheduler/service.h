#ifndef SHOAL_SCHEDULER_SERVICE_H
#define SHOAL_SCHEDULER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service-t.h"

struct service *service_new(const char *name, int64_t now_wall);
void service_free(struct service *s);

/* Set spec (takes its contents) and spec_json from it. */
void service_set_spec(struct service *s, struct service_spec *spec);

/* The digest version is pinned to, or NULL. */
const char *service_pin_get(const struct service *s, uint64_t version);

/* full (s->spec_json or s->prev_spec_json) as Assignments carry it
 * (manifest_spec_json_wire), made again only when that text changes. */
const char *service_wire_spec(struct service *s, const char *full);
/* Pin version to digest unless it has a pin: true if it was pinned now. A pin of a version
 * that is neither the current nor the previous one makes room. */
bool service_pin_set(struct service *s, uint64_t version, const char *digest);

/* Find or add slot num (kept sorted). */
struct slot *service_slot(struct service *s, uint32_t num);
/* Room for n slots in one allocation: a service scaled to 10,000 gets 10,000 slots, not the
 * 16,384 that doubling reaches (64 bytes each, 40 bytes a task). */
void service_slots_reserve(struct service *s, size_t n);
struct slot *service_slot_find(struct service *s, uint32_t num);
void service_slot_remove(struct service *s, struct slot *sl);
/* The lowest slot number >= 1 that no slot uses. */
uint32_t service_free_slot(const struct service *s);
/* The same, given that every number below from is in use: scaling up by n costs O(n log n),
 * not O(n^2). */
uint32_t service_free_slot_from(const struct service *s, uint32_t from);

/* Move t into sl's history (newest first), freeing the oldest; returns the evicted task (caller
 * drops it from maps) or NULL. */
struct task *slot_push_history(struct slot *sl, struct task *t);

/* Keep a replaced task until its node reports it stopped. */
void slot_add_stopping(struct slot *sl, struct task *t);
/* Forget t from the stopping list (not freed). */
void slot_del_stopping(struct slot *sl, struct task *t);

/* A change that starts a rollout (apply, scale, rollback): the service is watched anew, its
 * update.timeout counts from now. */
void service_rollout_begin(struct service *s);

/* Tasks of s that count as replicas (live). */
uint32_t service_running(const struct service *s);

struct service *services_find(struct services *ss, const char *name);
void services_add(struct services *ss, struct service *s);
void services_del(struct services *ss, struct service *s);
void services_free(struct services *ss);

#endif
