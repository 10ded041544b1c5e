#include "client.h"

#include <stddef.h>

#include "err.h"
#include "schedlist.h"
#include "shoal.pb-c.h"
#include "token.h"

/* Where the schedulers are and the admin token: what every call needs first. */
static int
client_target(const struct cli_ctx *ctx, struct schedlist *l, struct token *tok,
              struct shoal_err *err)
{
	if (schedlist_parse(l, ctx->scheduler, "127.0.0.1", err) == -1)
		return err_prefix(err, "--scheduler");
	if (ctx->token_file == NULL)
		return err_set(err, 0,
		               "no admin token: pass --token-file FILE or set "
		               "SHOAL_TOKEN_FILE (admin.token in the scheduler's data dir)");
	return token_load(ctx->token_file, tok, err);
}

int
client_call_raw(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
                struct shoal_err *err)
{
	struct schedlist l;
	struct token tok;
	int rc;

	*reply = NULL;
	if (client_target(ctx, &l, &tok, err) == -1)
		return -1;
	rc = rpc_call_one(&l, &tok, req, ctx->timeout_ms, reply, err);
	token_wipe(&tok);
	return rc;
}

int
client_call(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
            struct shoal_err *err)
{
	if (client_call_raw(ctx, req, reply, err) == -1)
		return -1;
	if ((*reply)->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		err_set(err, 0, "%s", (*reply)->error->message);
		shoal__envelope__free_unpacked(*reply, NULL);
		*reply = NULL;
		return -1;
	}
	return 0;
}

int
client_stream(const struct cli_ctx *ctx, Shoal__Envelope *req, int idle_ms, rpc_call_cb cb,
              const struct rpc_call_io *io, void *arg, struct shoal_err *err)
{
	struct rpc_call_opts o = {.timeout_ms = ctx->timeout_ms, .idle_ms = idle_ms, .io = io};
	struct schedlist l;
	struct token tok;
	int rc;

	if (client_target(ctx, &l, &tok, err) == -1)
		return -1;
	rc = rpc_call_stream(&l, &tok, req, &o, cb, arg, err);
	token_wipe(&tok);
	return rc;
}
