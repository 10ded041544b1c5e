#ifndef SHOAL_CLI_CLIENT_H
#define SHOAL_CLI_CLIENT_H

#include "rpc.h"
#include "rpc_call.h"

/* What every command shares: where the scheduler is, the admin token, the output format. */
struct cli_ctx {
	const char *scheduler;  /* --scheduler, $SHOAL_SCHEDULER, else 127.0.0.1:7100 */
	const char *token_file; /* --token-file, $SHOAL_TOKEN_FILE */
	int json;               /* -o json */
	int timeout_ms;         /* per call, default 5000 */
};

/*
 * The CLI's side of common/rpc_call: the scheduler list and the admin token from ctx; the
 * engine connects, follows a follower to its leader, and words every failure.
 */

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
 * Send one request and hand every envelope that answers it to cb until cb says stop: for
 * replies that come as a stream, like logs (rpc_call_stream). Connect and handshake must
 * finish within ctx->timeout_ms; after that, idle_ms > 0 bounds the wait for each next
 * envelope and idle_ms == 0 waits for ever (logs -f). io (NULL for none) lets the command
 * send too (exec -i).
 */
int client_stream(const struct cli_ctx *ctx, Shoal__Envelope *req, int idle_ms, rpc_call_cb cb,
                  const struct rpc_call_io *io, void *arg, struct shoal_err *err);

#endif
