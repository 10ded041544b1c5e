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

#endif
