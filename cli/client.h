#ifndef SHOAL_CLI_CLIENT_H
#define SHOAL_CLI_CLIENT_H

#include "rpc.h"

/* What every command shares: where the scheduler is, the admin token, the output format. */
struct cli_ctx {
	const char *scheduler;  /* --scheduler, $SHOAL_SCHEDULER, else 127.0.0.1:7100 */
	const char *token_file; /* --token-file, $SHOAL_TOKEN_FILE */
	int json;               /* -o json */
	int timeout_ms;         /* per call, default 5000 */
};

/*
 * Send one request to the scheduler and wait for its reply. An Error reply is turned into -1
 * with its message in err; *reply (on success) is freed with shoal__envelope__free_unpacked.
 */
int client_call(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
                struct shoal_err *err);
/* The same, but an Error reply is returned as a reply (0): for a message longer than err holds,
 * such as every problem of a refused apply, one per line. */
int client_call_raw(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
                    struct shoal_err *err);

/*
 * What a client_stream() callback returns: keep reading, or stop. CLIENT_STREAM_FAIL means the
 * callback filled err and client_stream() returns -1 with it.
 */
enum client_stream_action {
	CLIENT_STREAM_MORE = 0,
	CLIENT_STREAM_STOP,
	CLIENT_STREAM_FAIL,
};

/* One envelope that answers the request (same id); env is borrowed for the call. */
typedef enum client_stream_action (*client_stream_cb)(const Shoal__Envelope *env, void *arg,
                                                      struct shoal_err *err);

/*
 * Send one request and hand every envelope that answers it (the scheduler echoes the request's
 * id) to cb until cb says stop: for replies that come as a stream, like logs. Connect and
 * handshake must finish within ctx->timeout_ms; after that, idle_ms > 0 bounds the wait for
 * each next envelope and idle_ms == 0 waits for ever (logs -f). An Error reply, a connection
 * closed before cb stopped, or a timeout return -1 with the message in err; 0 once cb stops.
 */
int client_stream(const struct cli_ctx *ctx, Shoal__Envelope *req, int idle_ms, client_stream_cb cb,
                  void *arg, struct shoal_err *err);

/*
 * A stream that sends too (exec -i): ready is called once the request is sent, with the private
 * loop and connection, to add events to the loop and send more envelopes with the request's id;
 * end once the stream is over, before the loop and connection go, to free them.
 */
struct event_base;
struct client_stream_io {
	void (*ready)(struct event_base *base, struct rpc_conn *c, uint64_t id, void *arg);
	void (*end)(void *arg);
};
int client_stream_io(const struct cli_ctx *ctx, Shoal__Envelope *req, int idle_ms,
                     client_stream_cb cb, const struct client_stream_io *io, void *arg,
                     struct shoal_err *err);

#endif
