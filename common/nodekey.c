#include "nodekey.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "rpc.h"
#include "shoal.pb-c.h"
#include "util.h"

/* Domain separation: a node key signs nothing but this. */
#define NODEKEY_CTX "shoal-node1"

int
nodekey_load_or_create(const char *path, struct nodekey *k, bool *created, struct shoal_err *err)
{
	char hex[2 * crypto_sign_SECRETKEYBYTES + 2];
	struct stat sb;
	size_t len, bin_len = 0;
	char *text;
	int rc;

	*created = false;
	if (stat(path, &sb) == -1) {
		if (errno != ENOENT)
			return err_set(err, errno, "node key %s", path);
		crypto_sign_keypair(k->pk, k->sk);
		util_hex(k->sk, sizeof(k->sk), hex);
		strcat(hex, "\n");
		rc = util_write_file_atomic(path, hex, strlen(hex), 0600, err);
		sodium_memzero(hex, sizeof(hex));
		if (rc == -1) {
			nodekey_wipe(k);
			return err_prefix(err, "node key");
		}
		*created = true;
		return 0;
	}
	if (sb.st_mode & 077)
		return err_set(err, 0,
		               "node key %s: readable by others (mode %03o); chmod 600 it, or "
		               "remove the node (shoal node rm) and the file to join anew",
		               path, (unsigned)(sb.st_mode & 0777));
	text = util_read_file(path, &len, err);
	if (text == NULL)
		return err_prefix(err, "node key");
	rc = sodium_hex2bin(k->sk, sizeof(k->sk), text, len, " \n", &bin_len, NULL);
	sodium_memzero(text, len);
	free(text);
	if (rc != 0 || bin_len != crypto_sign_SECRETKEYBYTES) {
		nodekey_wipe(k);
		return err_set(err, 0, "node key %s: malformed (want %d hex digits)", path,
		               2 * crypto_sign_SECRETKEYBYTES);
	}
	crypto_sign_ed25519_sk_to_pk(k->pk, k->sk);
	return 0;
}

/* "shoal-node1" | binding: what a node key signs. */
static size_t
nodekey_msg(uint8_t *out, size_t cap, const uint8_t *binding, size_t len)
{
	size_t n = sizeof(NODEKEY_CTX) - 1;

	if (len > cap - n)
		len = cap - n;
	memcpy(out, NODEKEY_CTX, n);
	memcpy(out + n, binding, len);
	return n + len;
}

void
nodekey_sign(const struct nodekey *k, const uint8_t *binding, size_t len,
             uint8_t sig[NODEKEY_SIG_BYTES])
{
	uint8_t msg[sizeof(NODEKEY_CTX) + 64];
	size_t n = nodekey_msg(msg, sizeof(msg), binding, len);

	crypto_sign_detached(sig, NULL, msg, n, k->sk);
}

void
nodekey_sign_register(const struct nodekey *k, const struct rpc_conn *c, Shoal__Register *reg,
                      uint8_t sig[NODEKEY_SIG_BYTES])
{
	nodekey_sign(k, rpc_conn_binding(c), RPC_BINDING_BYTES, sig);
	reg->node_key.data = (uint8_t *)k->pk;
	reg->node_key.len = NODEKEY_PK_BYTES;
	reg->node_signature.data = sig;
	reg->node_signature.len = NODEKEY_SIG_BYTES;
}

bool
nodekey_verify(const uint8_t pk[NODEKEY_PK_BYTES], const uint8_t *binding, size_t len,
               const uint8_t sig[NODEKEY_SIG_BYTES])
{
	uint8_t msg[sizeof(NODEKEY_CTX) + 64];
	size_t n = nodekey_msg(msg, sizeof(msg), binding, len);

	return crypto_sign_verify_detached(sig, msg, n, pk) == 0;
}

char *
nodekey_fingerprint(const uint8_t pk[NODEKEY_PK_BYTES], char out[NODEKEY_FP_LEN])
{
	uint8_t h[8];

	crypto_generichash(h, sizeof(h), pk, NODEKEY_PK_BYTES, NULL, 0);
	util_hex(h, sizeof(h), out);
	return out;
}

void
nodekey_wipe(struct nodekey *k)
{
	sodium_memzero(k, sizeof(*k));
}
