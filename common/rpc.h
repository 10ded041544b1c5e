#ifndef SHOAL_COMMON_RPC_H
#define SHOAL_COMMON_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "rpc-t.h"
#include "token.h"

struct event_base;
struct shoal_err;
struct Shoal__Envelope;
typedef struct Shoal__Envelope Shoal__Envelope;

/*
 * Shoal's secure RPC connection (docs/protocol.md, docs/security.md).
 *
 * Handshake, every message fixed-size, before any framing:
 *   1. client -> server  HELLO:  "SHL1" | u8 role | client X25519 ephemeral pk (32)
 *   2. server -> client  ACCEPT: server X25519 ephemeral pk (32)
 *                               | MAC_s = crypto_auth(K_role, "S" | role | cpk | spk) (32)
 *                               | scheduler Ed25519 pk (32)
 *                               | Ed25519 signature over "shoal-hs1" | role | cpk | spk (64)
 *                               | server's secretstream header (24)
 *   3. client -> server  FINISH: MAC_c = crypto_auth(K_role, "C" | role | cpk | spk) (32)
 *                               | client's secretstream header (24)
 * K_role is derived from the role's token secret (crypto_generichash keyed by it). The client
 * checks MAC_s, that BLAKE2b(scheduler pk) equals its token's CA hash, and the signature; the
 * server checks MAC_c. Session keys come from crypto_kx_{client,server}_session_keys; each
 * direction is one crypto_secretstream_xchacha20poly1305 stream, so a replayed, reordered,
 * dropped or altered frame fails to decrypt.
 * Both ends also derive a channel binding, BLAKE2b("shoal-bind1" | role | cpk | spk): an agent
 * proves its own node key by signing it in its Register (common/nodekey.h), so the proof is
 * good on this connection only.
 *
 * Afterwards every frame is: u32 big-endian length | secretstream message (ciphertext of one
 * packed Shoal__Envelope). A frame whose plaintext would exceed max_frame is refused.
 *
 * Any failure (bad magic, unknown role, bad MAC, bad signature, CA hash mismatch, decrypt
 * failure, oversize or truncated frame, unparsable envelope, handshake over its timeout,
 * idle timeout), a peer that stops reading (over max_queued bytes waiting for it: closed
 * on the next loop turn, never inside rpc_send), a frame left incomplete past frame_timeout_ms
 * or partial frames over the process's input budget
 * logs exactly one line at warning level naming the peer and the reason, calls the closed
 * callback, then frees the connection. A clean EOF from the peer is logged at
 * debug level only and reported to the callback with reason "connection closed by peer".
 *
 * Writes to a peer that hung up raise SIGPIPE: a daemon using this module ignores SIGPIPE
 * (rpc_call_stream() does so itself for the CLI when SIGPIPE is at its default).
 */

#define RPC_DEFAULT_MAX_FRAME    (4u << 20)
#define RPC_DEFAULT_HANDSHAKE_MS 5000
/* Bytes queued for a peer past which it is taken for one that stopped reading and dropped. */
#define RPC_DEFAULT_MAX_QUEUED (16u << 20)
/* A frame begun must be complete within this (a slow link moves 4 MiB in 30 s at ~1 Mbit/s). */
#define RPC_DEFAULT_FRAME_TIMEOUT_MS 30000
/* Bytes all connections of a process may hold in partial frames (see rpc_set_input_budget). */
#define RPC_DEFAULT_INPUT_BUDGET (32u << 20)

struct rpc_conn;

/* Limits; zero fields take the defaults. */
struct rpc_limits {
	size_t max_frame;         /* bytes of plaintext per frame, default 4 MiB */
	int handshake_timeout_ms; /* default 5000 */
	int idle_timeout_ms;      /* close when nothing is read for this long; 0 = never */
	size_t max_queued;        /* bytes queued for the peer before it is dropped; 16 MiB */
	int frame_timeout_ms;     /* a started frame must complete within this; 30 s */
};

/*
 * Server side over an accepted, connected socket. Takes fd (closed on free). peer names the
 * remote end in log lines ("10.0.0.2:41234"). id is borrowed and must outlive the connection.
 */
struct rpc_conn *rpc_accept(struct event_base *base, int fd, const char *peer,
                            const struct rpc_identity *id, const struct rpc_limits *limits,
                            const struct rpc_callbacks *cb, void *arg);

/* Client side over a connected (or connecting, non-blocking) socket. Takes fd. token is copied. */
struct rpc_conn *rpc_client(struct event_base *base, int fd, const char *peer,
                            const struct token *token, const struct rpc_limits *limits,
                            const struct rpc_callbacks *cb, void *arg);

/*
 * Resolve host (numeric or name), start a non-blocking TCP connect and run the client
 * handshake on it. A refused or failed connect is reported through the closed callback.
 */
struct rpc_conn *rpc_connect(struct event_base *base, const char *host, uint16_t port,
                             const struct token *token, const struct rpc_limits *limits,
                             const struct rpc_callbacks *cb, void *arg, struct shoal_err *err);

/* Encrypt and queue one envelope. -1 (with err) if the handshake is not done or it is too big. */
int rpc_send(struct rpc_conn *c, const Shoal__Envelope *env, struct shoal_err *err);

/*
 * Encrypt and queue one frame of already packed bytes (len <= max_frame). rpc_send() is this
 * after packing; tests and the fuzz target use it to deliver what no Envelope packs to.
 */
int rpc_send_bytes(struct rpc_conn *c, const void *data, size_t len, struct shoal_err *err);

/*
 * The bytes every connection of this process may hold in partial frames (and handshakes in
 * progress) together; 0 restores the default (32 MiB). Past it, the connection that grows
 * its share beyond 64 KiB is dropped. Each connection holds at most one frame anyway.
 */
void rpc_set_input_budget(size_t bytes);
/* Bytes held now in all connections' input buffers (for tests). */
size_t rpc_input_held(void);

/* Frames (and their bytes on the wire) every connection of this process carried since it
 * started: /metrics reads them. */
struct rpc_counters {
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
};
const struct rpc_counters *rpc_counters_get(void);

/* Close without calling the closed callback. Safe inside this connection's own callbacks. */
void rpc_free(struct rpc_conn *c);

/* Who the peer is once ready: the role it proved. */
enum token_role rpc_conn_role(const struct rpc_conn *c);
/*
 * The channel binding once ready: RPC_BINDING_BYTES of BLAKE2b("shoal-bind1" | role | cpk | spk),
 * equal on both ends, different for every connection. A peer proves a long-term key of its
 * own (an agent's node key) by signing it: the signature is only good on this session.
 */
const uint8_t *rpc_conn_binding(const struct rpc_conn *c);
const char *rpc_conn_peer(const struct rpc_conn *c);
/* rpc_connect's connect has not completed yet (a failure now is "cannot reach"). */
bool rpc_conn_connecting(const struct rpc_conn *c);
/* Bytes queued for sending and not yet written to the socket. */
size_t rpc_conn_pending(const struct rpc_conn *c);
void rpc_set_idle_timeout(struct rpc_conn *c, int ms);
void rpc_set_user(struct rpc_conn *c, void *user);
void *rpc_get_user(const struct rpc_conn *c);

#endif
