#ifndef SHOAL_SCHEDULER_TASK_H
#define SHOAL_SCHEDULER_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "task-t.h"

struct node;
struct service;

/* Create a task (not yet in any map or node list). */
struct task *task_new(struct service *svc, uint32_t slot, uint64_t version, int64_t now_wall);
void task_free(struct task *t);

/* A task in a state from which it does not come back. */
bool task_terminal(const struct task *t);
/* Running and, if the service has a health check, passing it. */
bool task_healthy(const struct task *t);

/* Counts as a replica: wanted running, not terminal, not lost with its node. */
bool task_live(const struct task *t);

/*
 * Move t to phase p if the table allows it (a phase to itself is allowed and changes nothing).
 * An illegal transition is refused and logged, and t keeps its phase: the combinations the
 * table does not list (a lost task draining, a held task placed...) cannot be reached.
 */
bool task_phase_set(struct task *t, enum task_phase p);
/* Does the table allow from -> to? */
bool task_phase_allowed(enum task_phase from, enum task_phase to);
const char *task_phase_name(enum task_phase p);
/* What the scheduler wants of t, as the wire and the store say it. */
enum task_desired task_desired(const struct task *t);
/* Wanted running and not lost: held or run. */
bool task_wanted(const struct task *t);
/* Has t a row in the store, written or queued to be? */
bool task_row_kept(const struct task *t);

void task_set_state(struct task *t, enum task_state st, int64_t now_wall);
/* Replace the message (fmt NULL clears it). */
void task_set_message(struct task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Set t's health (reason: why it is unhealthy) and its text; true if either changed. */
bool task_set_health(struct task *t, enum task_health h, const char *reason);
/* The health an agent of an older version sent as text ("", starting, healthy,
 * "unhealthy: why"); *reason points into text. */
enum task_health task_health_parse(const char *text, const char **reason);

const char *task_state_name(enum task_state st);
const char *task_desired_name(enum task_desired d);
/* Parse the names above; -1 when unknown. */
int task_state_parse(const char *s);

void task_map_init(struct task_map *m);
void task_map_free(struct task_map *m);
void task_map_put(struct task_map *m, struct task *t);
struct task *task_map_get(const struct task_map *m, const char *id);
void task_map_del(struct task_map *m, const struct task *t);

#endif
