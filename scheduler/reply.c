#include "reply.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "server-t.h"
#include "shoal.pb-c.h"
#include "util.h"

static const char *
body_name(Shoal__Envelope__BodyCase c)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field(&shoal__envelope__descriptor, (unsigned)c);

	return f ? f->name : "message";
}

/*
 * Every reply goes through here. A request is never answered with silence: a reply too big
 * for one frame (a listing of a huge cluster) is replaced by an error reply with the same id,
 * so the client fails at once with a reason instead of waiting for its timeout.
 */
void
reply_send(struct sched_conn *sc, Shoal__Envelope *env)
{
	size_t max = sc->srv->limits.max_frame ? sc->srv->limits.max_frame : RPC_DEFAULT_MAX_FRAME;
	size_t len = shoal__envelope__get_packed_size(env);
	struct shoal_err err;

	if (len > max && env->body_case != SHOAL__ENVELOPE__BODY_ERROR) {
		shoal_log(LOG_WARNING,
		          "reply to %s: %s of %zu bytes exceeds the frame limit of %zu",
		          rpc_conn_peer(sc->rpc), body_name(env->body_case), len, max);
		reply_error(sc, env->id, EMSGSIZE,
		            "the reply (%s, %zu bytes) exceeds the frame limit of %zu bytes",
		            body_name(env->body_case), len, max);
		return;
	}
	if (rpc_send(sc->rpc, env, &err) == -1)
		shoal_log(LOG_WARNING, "reply to %s: %s", rpc_conn_peer(sc->rpc), err.msg);
}

/* The Error reply {code, msg} for request id. */
static void
send_error(struct sched_conn *sc, uint64_t id, unsigned code, char *msg)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Error e = SHOAL__ERROR__INIT;

	e.code = code;
	e.message = msg;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_ERROR;
	env.error = &e;
	reply_send(sc, &env);
}

void
reply_error(struct sched_conn *sc, uint64_t id, unsigned code, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_error(sc, id, code, msg);
}

void
reply_ok_since(struct sched_conn *sc, uint64_t id, uint64_t seq, const char *fmt, ...)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Ok ok = SHOAL__OK__INIT;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ok.message = msg;
	ok.events_seq = seq;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_OK;
	env.ok = &ok;
	reply_send(sc, &env);
}

/*
 * An Error reply whose message is head, then each line of errs on a line of its own: every
 * problem of a refused request reaches the client, not the first 255 bytes of them.
 */
void
reply_error_lines(struct sched_conn *sc, uint64_t id, unsigned code, const char *head,
                  const struct manifest_errors *errs)
{
	size_t len = strlen(head) + 1, o;
	cleanup_free char *msg = NULL;

	for (size_t i = 0; i < errs->n; i++)
		len += strlen(errs->lines[i]) + 1;
	msg = xmalloc(len);
	o = (size_t)snprintf(msg, len, "%s", head);
	for (size_t i = 0; i < errs->n; i++)
		o += (size_t)snprintf(msg + o, len - o, "\n%s", errs->lines[i]);
	send_error(sc, id, code, msg);
}
