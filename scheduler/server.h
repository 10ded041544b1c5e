#ifndef SHOAL_SCHEDULER_SERVER_H
#define SHOAL_SCHEDULER_SERVER_H

#include "conn.h"
#include "server-t.h"

struct shoal_err;

int sched_server_init(struct sched_server *srv, const struct sched_options *opt,
                      struct shoal_err *err);
/* Run the loop until SIGTERM or SIGINT. */
int sched_server_run(struct sched_server *srv);
void sched_server_free(struct sched_server *srv);

#endif
