#ifndef SHOAL_SCHEDULER_IDENTITY_H
#define SHOAL_SCHEDULER_IDENTITY_H

#include <stdbool.h>

struct shoal_err;
struct rpc_identity;

/*
 * The cluster's secrets in the scheduler's data dir, each file mode 0600:
 *   scheduler.key  the Ed25519 secret key (hex) the scheduler signs handshakes with
 *   worker.token   the join token agents present
 *   admin.token    the token the CLI presents
 */

/*
 * Create the data dir and a fresh identity. Refuses when a cluster already exists there unless
 * force. On success fills *id so the caller can print the tokens once.
 */
int identity_init(const char *data_dir, bool force, struct rpc_identity *id, struct shoal_err *err);

/* Load the identity written by identity_init. */
int identity_load(const char *data_dir, struct rpc_identity *id, struct shoal_err *err);

/* Overwrite every secret in *id. */
void identity_wipe(struct rpc_identity *id);

#endif
