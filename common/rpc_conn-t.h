#ifndef SHOAL_COMMON_RPC_CONN_T_H
#define SHOAL_COMMON_RPC_CONN_T_H

/*
 * The connection itself: what common/rpc.c (framing, sending, its life) and
 * common/rpc_handshake.c (the handshake's three messages) share and nobody else may see.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "rpc-t.h"
#include "token.h"

struct bufferevent;
struct event;

#define RPC_PK crypto_kx_PUBLICKEYBYTES

enum rpc_state {
	RPC_SERVER_HELLO,  /* server: waiting for HELLO */
	RPC_SERVER_FINISH, /* server: ACCEPT sent, waiting for FINISH */
	RPC_CLIENT_ACCEPT, /* client: HELLO sent, waiting for ACCEPT */
	RPC_READY,         /* frames both ways */
};

/* What only the handshake needs: allocated with the connection, wiped and freed once ready, so
 * an established connection carries just its two stream states. */
struct rpc_hs {
	uint8_t pk[RPC_PK]; /* our ephemeral X25519 key pair */
	uint8_t sk[crypto_kx_SECRETKEYBYTES];
	uint8_t cpk[RPC_PK];                       /* server: the client's ephemeral key */
	uint8_t mac_key[crypto_auth_KEYBYTES];     /* K_role */
	uint8_t rx_key[crypto_kx_SESSIONKEYBYTES]; /* server: until the client's header */
	uint8_t ca_hash[TOKEN_HASH_BYTES];         /* client: the scheduler we expect */
	uint8_t role;                              /* the role being proved */
};

struct rpc_conn {
	struct bufferevent *bev;
	struct event *timer;           /* handshake deadline; NULL once ready */
	struct event *frame_timer;     /* a partial frame's deadline (lazy) */
	struct event *kill;            /* closes c from the loop after an overflow (lazy) */
	struct event *flush;           /* writes what this loop turn queued (see rpc_queued) */
	struct event *rd;              /* reads once ready (see rpc_rdcb) */
	const struct rpc_identity *id; /* server side only; borrowed */
	struct rpc_hs *hs;             /* NULL once ready */
	struct rpc_callbacks cb;
	void *arg;
	void *user;
	crypto_secretstream_xchacha20poly1305_state tx, rx;
	uint8_t binding[RPC_BINDING_BYTES]; /* names this session's handshake (rpc_conn_binding) */
	uint32_t max_frame;
	size_t max_queued; /* bytes queued for the peer beyond which it is dropped */
	size_t held;       /* input bytes counted in rpc_held_total */
	int frame_ms;      /* a started frame must be complete within this */
	int hs_ms;
	int idle_ms;
	uint8_t state;   /* enum rpc_state */
	uint8_t role;    /* enum token_role, once ready */
	uint8_t depth;   /* our own callbacks on the stack: free only when it drops to 0 */
	bool connecting; /* rpc_connect started a connect that has not completed */
	bool dead;       /* closed or rpc_free()d inside a callback; freed on the way out */
	bool closing;    /* an overflow: the kill event closes it on the next loop turn */
	bool flushing;   /* the flush event is active: this turn's frames are written at its end */
	bool writing;    /* the socket was full: libevent's write event drains the rest */
	char peer[48];
};

#endif
