#ifndef SHOAL_SCHEDULER_CONN_H
#define SHOAL_SCHEDULER_CONN_H

struct sched_conn;

/* Close one connection without its callback and forget it (defined in server.c, which owns
 * the connections; declared apart so the handlers that drop one need not include server.h,
 * which includes them). */
void sched_conn_drop(struct sched_conn *sc);
/* Take a closed connection out of the server's list and counts (its node's session ends);
 * the caller frees sc. */
void sched_conn_unlink(struct sched_conn *sc);

#endif
