#ifndef SHOAL_COMMON_RPC_T_H
#define SHOAL_COMMON_RPC_T_H

/* The types of a connection's owner (rpc.h has the functions and the protocol). */

#include <stdint.h>

#include <sodium.h>

#include "token.h"

struct rpc_conn;
struct Shoal__Envelope;
typedef struct Shoal__Envelope Shoal__Envelope;

#define RPC_BINDING_BYTES 32

/* The scheduler's side of the handshake: its signing key and the secret of each role. */
struct rpc_identity {
	uint8_t sign_pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t sign_sk[crypto_sign_SECRETKEYBYTES];
	struct token worker; /* agents present this one */
	struct token admin;  /* the CLI presents this one */
};

struct rpc_callbacks {
	/* The handshake completed; rpc_conn_role() now tells who the peer is. May be NULL. */
	void (*ready)(struct rpc_conn *c, void *arg);
	/* One decoded envelope, borrowed for the duration of the call. */
	void (*message)(struct rpc_conn *c, const Shoal__Envelope *env, void *arg);
	/* The connection closed; c is freed right after this returns. Drop every reference. */
	void (*closed)(struct rpc_conn *c, const char *reason, void *arg);
};

#endif
