#ifndef SHOAL_COMMON_RPC_CALL_H
#define SHOAL_COMMON_RPC_CALL_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct rpc_conn;
struct schedlist;
struct shoal_err;
struct token;
struct Shoal__Envelope;
typedef struct Shoal__Envelope Shoal__Envelope;

/*
 * The one client engine of short-lived clients (the CLI, test tools): connect to a scheduler
 * of the list, handshake, send one request (its id is set here) and read the reply, or the
 * stream of replies, that carries the same id, on a private event loop. A follower's "not the
 * leader" Error sends the request to the leader it names (schedlist_walk); a scheduler that
 * did not get the request (refused, no handshake) lets the next one of the list be tried;
 * once the request went out, a failure is final, so no request is ever carried out twice.
 *
 * Every failure is one message naming the scheduler, the same for both calls:
 *   cannot reach scheduler at H:P: Connection refused        (or the connect's other errno)
 *   cannot reach scheduler at H:P: timed out after 5s        (no TCP connection in time)
 *   cannot reach scheduler at H:P: no handshake within 5s    (connected, no handshake in time)
 *   cannot reach scheduler at H:P: <reason>                  (the handshake failed, e.g.
 *                                                             "bad handshake MAC (wrong token?)")
 *   scheduler at H:P: no reply within 5s                     (the request went out, no reply)
 *   scheduler at H:P: <reason>                               (closed, or a bad frame, after it)
 * A time is printed in seconds when it is whole seconds, else in ms ("300ms").
 */

/* What a stream callback returns: keep reading, stop (success), or fail (it filled err). */
enum rpc_call_action {
	RPC_CALL_MORE = 0,
	RPC_CALL_STOP,
	RPC_CALL_FAIL,
};

/* One envelope that answers the request (same id); env is borrowed for the call. */
typedef enum rpc_call_action (*rpc_call_cb)(const Shoal__Envelope *env, void *arg,
                                            struct shoal_err *err);

/*
 * A stream that sends too (exec -i): ready is called once the request is sent, with the private
 * loop and connection, to add events to the loop and send more envelopes with the request's id;
 * end once the stream is over, before the loop and connection go, to free them.
 */
struct rpc_call_io {
	void (*ready)(struct event_base *base, struct rpc_conn *c, uint64_t id, void *arg);
	void (*end)(void *arg);
};

struct rpc_call_opts {
	int timeout_ms; /* connect and handshake must finish within this; <= 0: 5000 */
	int idle_ms;    /* once the request is sent, bound on each wait for a reply; 0: for ever */
	const struct rpc_call_io *io; /* NULL: a plain stream */
};

/*
 * One request, one reply: the first envelope with the request's id, Error replies included
 * (a follower's "not the leader" excepted: it is followed). timeout_ms (<= 0: 5000) bounds the
 * whole call. *reply is the caller's to free with shoal__envelope__free_unpacked.
 */
int rpc_call_one(const struct schedlist *l, const struct token *tok, Shoal__Envelope *req,
                 int timeout_ms, Shoal__Envelope **reply, struct shoal_err *err);

/*
 * One request, many replies: every envelope with the request's id goes to cb until cb stops.
 * An Error reply, a connection closed before cb stopped, or a timeout return -1 with the
 * message in err; 0 once cb stops.
 */
int rpc_call_stream(const struct schedlist *l, const struct token *tok, Shoal__Envelope *req,
                    const struct rpc_call_opts *o, rpc_call_cb cb, void *arg,
                    struct shoal_err *err);

#endif
