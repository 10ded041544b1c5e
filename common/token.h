#ifndef SHOAL_COMMON_TOKEN_H
#define SHOAL_COMMON_TOKEN_H

#include <stddef.h>
#include <stdint.h>

struct shoal_err;

/*
 * A join token reads SHOAL1-<role>-<ca hash>-<secret> (as Swarm's join token
 * carries its CA hash): role is "worker", "admin" or "read", ca hash is the 64-hex
 * BLAKE2b-256 of the scheduler's Ed25519 public key, secret is 64 hex digits.
 * Holding the secret lets a peer complete the handshake for its role; the CA
 * hash lets it check that the other end is the real scheduler.
 */
enum token_role {
	TOKEN_ROLE_NONE = 0,
	TOKEN_ROLE_WORKER = 1, /* agents */
	TOKEN_ROLE_ADMIN = 2,  /* the CLI */
	TOKEN_ROLE_READ = 3,   /* the status page and /metrics only: never an RPC session */
};

#define TOKEN_HASH_BYTES   32
#define TOKEN_SECRET_BYTES 32
#define TOKEN_STRLEN       (7 + 6 + 1 + 2 * TOKEN_HASH_BYTES + 1 + 2 * TOKEN_SECRET_BYTES + 1)

struct token {
	enum token_role role;
	uint8_t ca_hash[TOKEN_HASH_BYTES];
	uint8_t secret[TOKEN_SECRET_BYTES];
};

/* Parse a token string (surrounding whitespace allowed). The error never echoes the secret. */
int token_parse(const char *s, struct token *t, struct shoal_err *err);

/* Format into out (at least TOKEN_STRLEN bytes). */
void token_format(const struct token *t, char *out, size_t len);

/* Read and parse a token file. */
int token_load(const char *path, struct token *t, struct shoal_err *err);

/* Hash a scheduler's Ed25519 public key the way tokens carry it. */
void token_ca_hash(const uint8_t *sign_pk, uint8_t out[TOKEN_HASH_BYTES]);

/* Make a fresh token for role, bound to the scheduler key sign_pk. */
void token_generate(enum token_role role, const uint8_t *sign_pk, struct token *t);

/* "worker", "admin", "read", or "none". */
const char *token_role_name(enum token_role role);

/* Overwrite a token's secret in memory. */
void token_wipe(struct token *t);

#endif
