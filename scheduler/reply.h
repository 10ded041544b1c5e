#ifndef SHOAL_SCHEDULER_REPLY_H
#define SHOAL_SCHEDULER_REPLY_H

#include <stdint.h>

#include "rpc.h"

struct sched_conn;
struct manifest_errors;

/*
 * Replies to a connection's requests (the API's handlers, the logs, exec and events relays).
 * A request is never answered with silence: a reply too big for one frame is replaced by an
 * error reply with the same id, so the client fails at once with a reason.
 */

/* Send env to sc (or the frame-limit error in its place); a failure is logged. */
void reply_send(struct sched_conn *sc, Shoal__Envelope *env);
/* An Error reply {code, message} for request id. */
void reply_error(struct sched_conn *sc, uint64_t id, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An Error whose message is head, then each line of errs on a line of its own. */
void reply_error_lines(struct sched_conn *sc, uint64_t id, unsigned code, const char *head,
                       const struct manifest_errors *errs);
/* An Ok whose events_seq (0: none) tells the CLI where in the event stream to watch the change
 * from. */
void reply_ok_since(struct sched_conn *sc, uint64_t id, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An Ok with nothing to watch: reply_ok(sc, id, fmt, ...). */
#define reply_ok(sc, id, ...) reply_ok_since((sc), (id), 0, __VA_ARGS__)

#endif
