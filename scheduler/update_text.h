#ifndef SHOAL_SCHEDULER_UPDATE_TEXT_H
#define SHOAL_SCHEDULER_UPDATE_TEXT_H

struct service;

/* The update's state as text: what listings show and what the services row stores. */

/* "updating 4/10", "paused: task web.3.k3x9 unhealthy: ...", "rolled back: ...", ... */
char *update_text(const struct service *svc);
/* update_text for listings: with why tasks are pending, if they are ("updating 0/4, waiting:
 * every eligible node has max_per_node=2 tasks (...)"). Not stored. */
char *update_status(const struct service *svc);
/* Restore the state from its text after a restart. */
void update_restore(struct service *svc, const char *text);

#endif
