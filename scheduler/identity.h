#ifndef SHOAL_SCHEDULER_IDENTITY_H
#define SHOAL_SCHEDULER_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

struct shoal_err;
struct rpc_identity;
struct token;

/*
 * The cluster's secrets in the scheduler's data dir, each file mode 0600:
 *   scheduler.key  the Ed25519 secret key (hex) the scheduler signs handshakes with
 *   worker.token   the join token agents present
 *   admin.token    the token the CLI presents
 *   read.token     a token for the HTTP status page and /metrics only (no RPC role)
 */

/*
 * Create the data dir and a fresh identity. Refuses when a cluster already exists there unless
 * force. On success fills *id so the caller can print the tokens once.
 */
int identity_init(const char *data_dir, bool force, struct rpc_identity *id, struct shoal_err *err);

/* Load the identity written by identity_init. */
int identity_load(const char *data_dir, struct rpc_identity *id, struct shoal_err *err);

/*
 * The read-only token of DIR/read.token into *out, made (and written, mode 0600) when the
 * file is missing: clusters made before it existed get one at their next start. *made says
 * whether it was made now.
 */
int identity_read_token(const char *data_dir, const uint8_t *sign_pk, struct token *out, bool *made,
                        struct shoal_err *err);

/* Overwrite every secret in *id. */
void identity_wipe(struct rpc_identity *id);

#endif
