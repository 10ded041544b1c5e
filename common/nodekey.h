#ifndef SHOAL_COMMON_NODEKEY_H
#define SHOAL_COMMON_NODEKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

struct shoal_err;
struct rpc_conn;
struct Shoal__Register;

/*
 * A node's own identity: an Ed25519 key pair the agent makes at its first start and keeps in
 * its data dir (node.key, hex of the secret key, mode 0600). The scheduler binds the public
 * key to the node's name at the first registration; afterwards only the holder of the secret
 * key can register under that name. The key is proven per connection by signing the
 * connection's channel binding (rpc_conn_binding), so a recorded signature is worth nothing on
 * another connection.
 */

#define NODEKEY_PK_BYTES  crypto_sign_PUBLICKEYBYTES
#define NODEKEY_SIG_BYTES crypto_sign_BYTES
/* "ab12cd34ef56ab78" plus NUL: the first 8 bytes of BLAKE2b(pk), for log lines. */
#define NODEKEY_FP_LEN 17

struct nodekey {
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

/*
 * Load the key pair from path, or make one and write it there (0600, atomically) when path
 * does not exist; *created says which. A file that is not a key, or that others can read, is
 * an error: a node must not quietly change its identity, nor use one that leaked.
 */
int nodekey_load_or_create(const char *path, struct nodekey *k, bool *created,
                           struct shoal_err *err);

/* Sign the channel binding of a connection (RPC_BINDING_BYTES). */
void nodekey_sign(const struct nodekey *k, const uint8_t *binding, size_t len,
                  uint8_t sig[NODEKEY_SIG_BYTES]);

/*
 * The whole signing step of a Register, for every client that sends one (agent, simagents,
 * regflood, shoal-peer, the scheduler test harness): put k's public key in reg and sign c's
 * channel binding into sig, which reg points at (sig must outlive reg). c must be ready.
 */
void nodekey_sign_register(const struct nodekey *k, const struct rpc_conn *c,
                           struct Shoal__Register *reg, uint8_t sig[NODEKEY_SIG_BYTES]);

/* Does sig prove, over this binding, the secret key of pk? */
bool nodekey_verify(const uint8_t pk[NODEKEY_PK_BYTES], const uint8_t *binding, size_t len,
                    const uint8_t sig[NODEKEY_SIG_BYTES]);

/* A short fingerprint of pk for log lines and errors (never the key itself). */
char *nodekey_fingerprint(const uint8_t pk[NODEKEY_PK_BYTES], char out[NODEKEY_FP_LEN]);

void nodekey_wipe(struct nodekey *k);

#endif
