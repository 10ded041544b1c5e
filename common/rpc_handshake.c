#include "rpc_handshake.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sodium.h>

#include "rpc_conn-t.h"
#include "token.h"

#define RPC_MAGIC     "SHL1"
#define RPC_MAGIC_LEN 4
#define RPC_HDR       crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define RPC_HELLO_LEN (RPC_MAGIC_LEN + 1 + RPC_PK)
#define RPC_ACCEPT_LEN                                                                             \
	(RPC_PK + crypto_auth_BYTES + crypto_sign_PUBLICKEYBYTES + crypto_sign_BYTES + RPC_HDR)
#define RPC_FINISH_LEN (crypto_auth_BYTES + RPC_HDR)
/* "S"|role|cpk|spk for the MACs; "shoal-hs1"|role|cpk|spk for the signature. */
#define RPC_MAC_MSG_LEN (1 + 1 + 2 * RPC_PK)
#define RPC_SIG_CTX     "shoal-hs1"
#define RPC_SIG_MSG_LEN (sizeof(RPC_SIG_CTX) - 1 + 1 + 2 * RPC_PK)
#define RPC_MAC_CTX     "shoal-mac-v1"
#define RPC_BIND_CTX    "shoal-bind1"

/* Fill why; the connection's owner closes it for this reason. */
static enum rpc_hs_step __attribute__((format(printf, 2, 3)))
rpc_handshake_fail(struct rpc_hs_why *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why->text, sizeof(why->text), fmt, ap);
	va_end(ap);
	return RPC_HS_FAIL;
}

/* K_role: a MAC key bound to this protocol, derived from the role's token secret. */
static void
rpc_mac_key(const uint8_t *secret, uint8_t key[crypto_auth_KEYBYTES])
{
	crypto_generichash(key, crypto_auth_KEYBYTES, (const uint8_t *)RPC_MAC_CTX,
	                   sizeof(RPC_MAC_CTX) - 1, secret, TOKEN_SECRET_BYTES);
}

static void
rpc_mac_msg(uint8_t out[RPC_MAC_MSG_LEN], char who, uint8_t role, const uint8_t *cpk,
            const uint8_t *spk)
{
	out[0] = (uint8_t)who;
	out[1] = role;
	memcpy(out + 2, cpk, RPC_PK);
	memcpy(out + 2 + RPC_PK, spk, RPC_PK);
}

static void
rpc_sig_msg(uint8_t out[RPC_SIG_MSG_LEN], uint8_t role, const uint8_t *cpk, const uint8_t *spk)
{
	size_t n = sizeof(RPC_SIG_CTX) - 1;

	memcpy(out, RPC_SIG_CTX, n);
	out[n] = role;
	memcpy(out + n + 1, cpk, RPC_PK);
	memcpy(out + n + 1 + RPC_PK, spk, RPC_PK);
}

/* The channel binding: a hash of the handshake transcript, the same on both ends and unique to
 * this session (both ephemeral keys are fresh), so a signature over it cannot be replayed on
 * another connection. */
static void
rpc_bind(struct rpc_conn *c, uint8_t role, const uint8_t *cpk, const uint8_t *spk)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(c->binding));
	crypto_generichash_update(&st, (const uint8_t *)RPC_BIND_CTX, sizeof(RPC_BIND_CTX) - 1);
	crypto_generichash_update(&st, &role, 1);
	crypto_generichash_update(&st, cpk, RPC_PK);
	crypto_generichash_update(&st, spk, RPC_PK);
	crypto_generichash_final(&st, c->binding, sizeof(c->binding));
}

enum rpc_hs_step
rpc_handshake_server_hello(struct rpc_conn *c, struct evbuffer *in, size_t have,
                           struct rpc_hs_why *why)
{
	uint8_t hello[RPC_HELLO_LEN], acc[RPC_ACCEPT_LEN], tx_key[crypto_kx_SESSIONKEYBYTES];
	uint8_t mac_msg[RPC_MAC_MSG_LEN], sig_msg[RPC_SIG_MSG_LEN];
	size_t n = have < sizeof(hello) ? have : sizeof(hello);
	const struct token *tok;
	struct rpc_hs *hs = c->hs;
	uint8_t *p = acc;

	if (n == 0)
		return RPC_HS_MORE;
	/* Judge the prefix as it arrives, so garbage is refused without waiting for more. */
	evbuffer_copyout(in, hello, n);
	if (memcmp(hello, RPC_MAGIC, n < RPC_MAGIC_LEN ? n : RPC_MAGIC_LEN) != 0)
		return rpc_handshake_fail(why, "bad magic (not a Shoal client?)");
	if (n > RPC_MAGIC_LEN && hello[RPC_MAGIC_LEN] != TOKEN_ROLE_WORKER &&
	    hello[RPC_MAGIC_LEN] != TOKEN_ROLE_ADMIN)
		return rpc_handshake_fail(why, "unknown role %u", hello[RPC_MAGIC_LEN]);
	if (n < sizeof(hello))
		return RPC_HS_MORE;
	evbuffer_drain(in, sizeof(hello));

	hs->role = hello[RPC_MAGIC_LEN];
	tok = hs->role == TOKEN_ROLE_WORKER ? &c->id->worker : &c->id->admin;
	if (tok->role != hs->role)
		return rpc_handshake_fail(why, "role %s not accepted here",
		                          token_role_name(hs->role));
	memcpy(hs->cpk, hello + RPC_MAGIC_LEN + 1, RPC_PK);
	crypto_kx_keypair(hs->pk, hs->sk);
	if (crypto_kx_server_session_keys(hs->rx_key, tx_key, hs->pk, hs->sk, hs->cpk) != 0)
		return rpc_handshake_fail(why, "bad handshake key");
	sodium_memzero(hs->sk, sizeof(hs->sk));
	rpc_mac_key(tok->secret, hs->mac_key);
	rpc_bind(c, hs->role, hs->cpk, hs->pk);

	memcpy(p, hs->pk, RPC_PK);
	p += RPC_PK;
	rpc_mac_msg(mac_msg, 'S', hs->role, hs->cpk, hs->pk);
	crypto_auth(p, mac_msg, sizeof(mac_msg), hs->mac_key);
	p += crypto_auth_BYTES;
	memcpy(p, c->id->sign_pk, crypto_sign_PUBLICKEYBYTES);
	p += crypto_sign_PUBLICKEYBYTES;
	rpc_sig_msg(sig_msg, hs->role, hs->cpk, hs->pk);
	crypto_sign_detached(p, NULL, sig_msg, sizeof(sig_msg), c->id->sign_sk);
	p += crypto_sign_BYTES;
	crypto_secretstream_xchacha20poly1305_init_push(&c->tx, p, tx_key);
	sodium_memzero(tx_key, sizeof(tx_key));
	bufferevent_write(c->bev, acc, sizeof(acc));
	c->state = RPC_SERVER_FINISH;
	return RPC_HS_NEXT;
}

enum rpc_hs_step
rpc_handshake_server_finish(struct rpc_conn *c, struct evbuffer *in, size_t have,
                            struct rpc_hs_why *why)
{
	uint8_t fin[RPC_FINISH_LEN], mac_msg[RPC_MAC_MSG_LEN];
	struct rpc_hs *hs = c->hs;

	if (have < sizeof(fin))
		return RPC_HS_MORE;
	evbuffer_remove(in, fin, sizeof(fin));
	rpc_mac_msg(mac_msg, 'C', hs->role, hs->cpk, hs->pk);
	if (crypto_auth_verify(fin, mac_msg, sizeof(mac_msg), hs->mac_key) != 0)
		return rpc_handshake_fail(why, "bad handshake MAC (wrong token?)");
	if (crypto_secretstream_xchacha20poly1305_init_pull(&c->rx, fin + crypto_auth_BYTES,
	                                                    hs->rx_key) != 0)
		return rpc_handshake_fail(why, "bad stream header");
	return RPC_HS_DONE;
}

enum rpc_hs_step
rpc_handshake_client_accept(struct rpc_conn *c, struct evbuffer *in, size_t have,
                            struct rpc_hs_why *why)
{
	uint8_t acc[RPC_ACCEPT_LEN], fin[RPC_FINISH_LEN], hash[TOKEN_HASH_BYTES];
	uint8_t rx_key[crypto_kx_SESSIONKEYBYTES], tx_key[crypto_kx_SESSIONKEYBYTES];
	uint8_t mac_msg[RPC_MAC_MSG_LEN], sig_msg[RPC_SIG_MSG_LEN];
	const uint8_t *spk = acc, *mac = spk + RPC_PK, *sign_pk = mac + crypto_auth_BYTES;
	const uint8_t *sig = sign_pk + crypto_sign_PUBLICKEYBYTES, *hdr = sig + crypto_sign_BYTES;
	struct rpc_hs *hs = c->hs;
	int r;

	if (have < sizeof(acc))
		return RPC_HS_MORE;
	evbuffer_remove(in, acc, sizeof(acc));
	rpc_mac_msg(mac_msg, 'S', hs->role, hs->pk, spk);
	if (crypto_auth_verify(mac, mac_msg, sizeof(mac_msg), hs->mac_key) != 0) {
		/*
		 * Send FINISH anyway, best effort and straight to the socket (nothing else is
		 * queued: the server answered our whole HELLO), so that the scheduler's log too
		 * says a node came with the wrong token. It reveals nothing: the MAC covers a
		 * transcript with the other side's fresh key.
		 */
		rpc_mac_msg(mac_msg, 'C', hs->role, hs->pk, spk);
		crypto_auth(fin, mac_msg, sizeof(mac_msg), hs->mac_key);
		memset(fin + crypto_auth_BYTES, 0, RPC_HDR);
		/* The server may be gone already; the local reason is what matters. */
		(void)!send(bufferevent_getfd(c->bev), fin, sizeof(fin),
		            MSG_NOSIGNAL | MSG_DONTWAIT);
		return rpc_handshake_fail(why, "bad handshake MAC (wrong token?)");
	}
	token_ca_hash(sign_pk, hash);
	if (sodium_memcmp(hash, hs->ca_hash, sizeof(hash)) != 0)
		return rpc_handshake_fail(
		    why, "CA hash mismatch (scheduler key is not the one in our token: "
		         "not our scheduler)");
	rpc_sig_msg(sig_msg, hs->role, hs->pk, spk);
	if (crypto_sign_verify_detached(sig, sig_msg, sizeof(sig_msg), sign_pk) != 0)
		return rpc_handshake_fail(why, "bad handshake signature (not our scheduler)");
	r = crypto_kx_client_session_keys(rx_key, tx_key, hs->pk, hs->sk, spk);
	if (r == 0)
		r = crypto_secretstream_xchacha20poly1305_init_pull(&c->rx, hdr, rx_key);
	if (r == 0) {
		crypto_secretstream_xchacha20poly1305_init_push(&c->tx, fin + crypto_auth_BYTES,
		                                                tx_key);
		rpc_mac_msg(mac_msg, 'C', hs->role, hs->pk, spk);
		crypto_auth(fin, mac_msg, sizeof(mac_msg), hs->mac_key);
	}
	sodium_memzero(rx_key, sizeof(rx_key));
	sodium_memzero(tx_key, sizeof(tx_key));
	if (r != 0)
		return rpc_handshake_fail(why, "bad handshake key");
	rpc_bind(c, hs->role, hs->pk, spk);
	bufferevent_write(c->bev, fin, sizeof(fin));
	return RPC_HS_DONE;
}

void
rpc_handshake_client_start(struct rpc_conn *c, const struct token *token)
{
	uint8_t hello[RPC_HELLO_LEN];

	c->state = RPC_CLIENT_ACCEPT;
	c->hs->role = (uint8_t)token->role;
	rpc_mac_key(token->secret, c->hs->mac_key);
	memcpy(c->hs->ca_hash, token->ca_hash, TOKEN_HASH_BYTES);
	crypto_kx_keypair(c->hs->pk, c->hs->sk);
	memcpy(hello, RPC_MAGIC, RPC_MAGIC_LEN);
	hello[RPC_MAGIC_LEN] = (uint8_t)token->role;
	memcpy(hello + RPC_MAGIC_LEN + 1, c->hs->pk, RPC_PK);
	bufferevent_write(c->bev, hello, sizeof(hello));
}
