#ifndef SHOAL_SCHEDULER_EVSTREAM_H
#define SHOAL_SCHEDULER_EVSTREAM_H

struct sched_conn;
struct sched_server;
typedef struct Shoal__Envelope Shoal__Envelope;

/*
 * `shoal events` over the admin API: an EventsRequest is answered with EventBatch replies
 * under its id, the history held in the ring first (since, until and filters applied), then,
 * with follow, every matching event as it is emitted, until the client hangs up. A client
 * that stops reading is dropped by rpc's queue limit, not buffered for ever.
 */
struct evstream_client;

void evstream_start(struct sched_conn *cli, const Shoal__Envelope *env);
/* A connection closed: end its streams. */
void evstream_conn_closed(struct sched_server *srv, struct sched_conn *sc);
void evstream_free(struct sched_server *srv);

#endif
