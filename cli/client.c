#include "client.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "shoal.pb-c.h"
#include "token.h"
#include "util.h"

int
client_call(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
            struct shoal_err *err)
{
	struct token tok;
	char host[256];
	uint16_t port;
	int rc;

	if (util_parse_hostport(ctx->scheduler, host, sizeof(host), &port, err) == -1)
		return err_prefix(err, "--scheduler");
	if (host[0] == '\0')
		snprintf(host, sizeof(host), "127.0.0.1");
	if (ctx->token_file == NULL)
		return err_set(err, 0,
		               "no admin token: pass --token-file FILE or set "
		               "SHOAL_TOKEN_FILE (admin.token in the scheduler's data dir)");
	if (token_load(ctx->token_file, &tok, err) == -1)
		return -1;
	rc = rpc_call(host, port, &tok, req, reply, ctx->timeout_ms, err);
	token_wipe(&tok);
	if (rc == -1)
		return -1;
	if ((*reply)->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		err_set(err, 0, "%s", (*reply)->error->message);
		shoal__envelope__free_unpacked(*reply, NULL);
		*reply = NULL;
		return -1;
	}
	return 0;
}
