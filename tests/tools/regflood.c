/*
 * regflood: a worker-token holder inventing node names, for tests/integration/hostile_node.bats.
 *
 *   regflood HOST:PORT TOKEN_FILE PREFIX CONNS NAMES [KEYFILE]
 *
 * Opens CONNS connections one after the other; on each, after the handshake, sends NAMES
 * Registers for new names PREFIX-C-N, each with a node key proven on that connection (a fresh
 * key per run, or the one in KEYFILE), waits for every reply, then closes it. Prints one line
 * per reply ("ok NAME" or "refused NAME: MESSAGE"), "closed C: REASON" when the scheduler
 * hangs up on connection C, and at the end "accepted=A refused=R closed=K".
 * Exit 0 when every reply came, 1 otherwise.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "err.h"
#include "log.h"
#include "nodekey.h"
#include "rpc.h"
#include "shoal.pb-c.h"
#include "token.h"
#include "util.h"

struct flood {
	struct event_base *base;
	struct token token;
	struct nodekey key;
	char host[256];
	uint16_t port;
	const char *prefix;
	int conns, names;
	int conn_no; /* the connection being played */
	int pending; /* replies still expected on it */
	int accepted, refused, closed;
	uint64_t first_id; /* ids of this connection's Registers: first_id .. first_id+names-1 */
	bool failed;
	struct rpc_conn *c;
};

static void next_conn(struct flood *f);

static void
on_ready(struct rpc_conn *c, void *arg)
{
	struct flood *f = arg;
	uint8_t sig[NODEKEY_SIG_BYTES];
	struct shoal_err err;

	f->first_id = (uint64_t)f->conn_no * 1000 + 1;
	for (int i = 0; i < f->names; i++) {
		Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
		Shoal__Register reg = SHOAL__REGISTER__INIT;
		Shoal__Capacity cap = SHOAL__CAPACITY__INIT;
		char name[64];

		snprintf(name, sizeof(name), "%s-%d-%d", f->prefix, f->conn_no, i);
		cap.cpu_millis = 1000;
		cap.memory_bytes = 1 << 30;
		reg.node_name = name;
		reg.address = "192.0.2.1";
		reg.capacity = &cap;
		nodekey_sign_register(&f->key, c, &reg, sig);
		env.id = f->first_id + (uint64_t)i;
		env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
		env.register_ = &reg;
		if (rpc_send(c, &env, &err) == -1) {
			fprintf(stderr, "regflood: %s\n", err.msg);
			f->failed = true;
			event_base_loopbreak(f->base);
			return;
		}
	}
	f->pending = f->names;
}

static void
on_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct flood *f = arg;
	int i;

	(void)c;
	if (env->id < f->first_id || env->id >= f->first_id + (uint64_t)f->names)
		return; /* pushes: Endpoints, Assignments */
	i = (int)(env->id - f->first_id);
	if (env->body_case == SHOAL__ENVELOPE__BODY_REGISTER_REPLY) {
		printf("ok %s-%d-%d\n", f->prefix, f->conn_no, i);
		f->accepted++;
	} else if (env->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		printf("refused %s-%d-%d: %s\n", f->prefix, f->conn_no, i, env->error->message);
		f->refused++;
	}
	if (--f->pending == 0) {
		rpc_free(f->c);
		f->c = NULL;
		f->conn_no++;
		next_conn(f);
	}
}

static void
on_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct flood *f = arg;

	(void)c;
	f->c = NULL;
	if (f->pending == 0) { /* before the handshake was through: not the scheduler's doing */
		fprintf(stderr, "regflood: connection %d closed: %s\n", f->conn_no, reason);
		f->failed = true;
		event_base_loopbreak(f->base);
		return;
	}
	/* The scheduler hung up on a connection that insisted: go on with the next one. */
	printf("closed %d: %s\n", f->conn_no, reason);
	f->closed++;
	f->pending = 0;
	f->conn_no++;
	next_conn(f);
}

static const struct rpc_callbacks cbs = {on_ready, on_message, on_closed};

static void
next_conn(struct flood *f)
{
	struct shoal_err err;

	if (f->conn_no >= f->conns) {
		event_base_loopbreak(f->base);
		return;
	}
	f->c = rpc_connect(f->base, f->host, f->port, &f->token, NULL, &cbs, f, &err);
	if (f->c == NULL) {
		fprintf(stderr, "regflood: %s\n", err.msg);
		f->failed = true;
		event_base_loopbreak(f->base);
	}
}

int
main(int argc, char **argv)
{
	struct flood f = {0};
	struct shoal_err err;

	if (argc != 6 && argc != 7) {
		fputs("usage: regflood HOST:PORT TOKEN_FILE PREFIX CONNS NAMES [KEYFILE]\n",
		      stderr);
		return 2;
	}
	if (sodium_init() < 0)
		return 2;
	log_init("regflood", LOG_ERR);
	signal(SIGPIPE, SIG_IGN);
	if (util_parse_hostport(argv[1], f.host, sizeof(f.host), &f.port, &err) == -1 ||
	    token_load(argv[2], &f.token, &err) == -1) {
		fprintf(stderr, "regflood: %s\n", err.msg);
		return 2;
	}
	f.prefix = argv[3];
	f.conns = atoi(argv[4]);
	f.names = atoi(argv[5]);
	if (f.conns < 1 || f.names < 1 || f.names > 999) {
		fputs("regflood: CONNS >= 1, NAMES 1..999\n", stderr);
		return 2;
	}
	if (argc == 7) {
		bool created;
		if (nodekey_load_or_create(argv[6], &f.key, &created, &err) == -1) {
			fprintf(stderr, "regflood: %s\n", err.msg);
			return 2;
		}
	} else {
		crypto_sign_keypair(f.key.pk, f.key.sk);
	}
	f.base = event_base_new();
	next_conn(&f);
	event_base_dispatch(f.base);
	if (f.c != NULL)
		rpc_free(f.c);
	event_base_free(f.base);
	printf("accepted=%d refused=%d closed=%d\n", f.accepted, f.refused, f.closed);
	fflush(stdout);
	return f.failed ? 1 : 0;
}
