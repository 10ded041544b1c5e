#ifndef SHOAL_COMMON_RPC_HANDSHAKE_H
#define SHOAL_COMMON_RPC_HANDSHAKE_H

#include <stddef.h>

struct evbuffer;
struct rpc_conn;
struct token;

/*
 * The handshake's three messages (HELLO, ACCEPT, FINISH: their layout is in rpc.h) on both
 * sides: keys, MACs, the scheduler's signature and the channel binding. common/rpc.c feeds the
 * bytes in; once the handshake is done the connection carries frames.
 *
 * The parsers take what c's input buffer holds (have bytes) and say what became of it; they
 * never close c: on RPC_HS_FAIL the owner closes it for why's reason.
 */
enum rpc_hs_step {
	RPC_HS_NEXT = 0, /* a message consumed (and answered): parse on */
	RPC_HS_MORE,     /* more bytes needed */
	RPC_HS_DONE,     /* the handshake is complete: frames from now on */
	RPC_HS_FAIL,     /* refused: why says why */
};

struct rpc_hs_why {
	char text[160];
};

/* Server: the client's HELLO; answers ACCEPT. */
enum rpc_hs_step rpc_handshake_server_hello(struct rpc_conn *c, struct evbuffer *in, size_t have,
                                            struct rpc_hs_why *why);
/* Server: the client's FINISH; done after it. */
enum rpc_hs_step rpc_handshake_server_finish(struct rpc_conn *c, struct evbuffer *in, size_t have,
                                             struct rpc_hs_why *why);
/* Client: queue HELLO as token's role; it goes out as soon as the socket is connected. */
void rpc_handshake_client_start(struct rpc_conn *c, const struct token *token);
/* Client: the server's ACCEPT; answers FINISH, done after it. */
enum rpc_hs_step rpc_handshake_client_accept(struct rpc_conn *c, struct evbuffer *in, size_t have,
                                             struct rpc_hs_why *why);

#endif
