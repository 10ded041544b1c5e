#include "identity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "err.h"
#include "rpc.h"
#include "token.h"
#include "util.h"

static const char *const files[] = {"scheduler.key", "worker.token", "admin.token"};

static int
write_secret(const char *dir, const char *name, const char *text, struct shoal_err *err)
{
	cleanup_free char *path = xasprintf("%s/%s", dir, name);
	return util_write_file_atomic(path, text, strlen(text), 0600, err);
}

int
identity_init(const char *data_dir, bool force, struct rpc_identity *id, struct shoal_err *err)
{
	char hex[2 * crypto_sign_SECRETKEYBYTES + 2];
	char tok[TOKEN_STRLEN + 1];

	if (!force) {
		for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
			cleanup_free char *path = xasprintf("%s/%s", data_dir, files[i]);
			if (access(path, F_OK) == 0)
				return err_set(
				    err, 0,
				    "%s already holds a cluster (%s exists); use --force "
				    "to replace it, which invalidates every token",
				    data_dir, files[i]);
		}
	}
	if (util_mkdir_p(data_dir, 0700, err) == -1)
		return -1;
	if (chmod(data_dir, 0700) == -1)
		return err_set(err, errno, "chmod %s", data_dir);
	crypto_sign_keypair(id->sign_pk, id->sign_sk);
	token_generate(TOKEN_ROLE_WORKER, id->sign_pk, &id->worker);
	token_generate(TOKEN_ROLE_ADMIN, id->sign_pk, &id->admin);

	util_hex(id->sign_sk, crypto_sign_SECRETKEYBYTES, hex);
	strcat(hex, "\n");
	if (write_secret(data_dir, "scheduler.key", hex, err) == -1)
		goto fail;
	token_format(&id->worker, tok, sizeof(tok) - 1);
	strcat(tok, "\n");
	if (write_secret(data_dir, "worker.token", tok, err) == -1)
		goto fail;
	token_format(&id->admin, tok, sizeof(tok) - 1);
	strcat(tok, "\n");
	if (write_secret(data_dir, "admin.token", tok, err) == -1)
		goto fail;
	sodium_memzero(hex, sizeof(hex));
	sodium_memzero(tok, sizeof(tok));
	return 0;
fail:
	sodium_memzero(hex, sizeof(hex));
	sodium_memzero(tok, sizeof(tok));
	identity_wipe(id);
	return -1;
}

int
identity_load(const char *data_dir, struct rpc_identity *id, struct shoal_err *err)
{
	cleanup_free char *keypath = xasprintf("%s/scheduler.key", data_dir);
	cleanup_free char *wpath = xasprintf("%s/worker.token", data_dir);
	cleanup_free char *apath = xasprintf("%s/admin.token", data_dir);
	char *text;
	size_t len, bin_len = 0;
	int rc;

	text = util_read_file(keypath, &len, err);
	if (text == NULL)
		return err_prefix(err, "no cluster in %s (run shoal-scheduler init)", data_dir);
	rc = sodium_hex2bin(id->sign_sk, sizeof(id->sign_sk), text, len, " \n", &bin_len, NULL);
	sodium_memzero(text, len);
	free(text);
	if (rc != 0 || bin_len != crypto_sign_SECRETKEYBYTES)
		return err_set(err, 0, "%s: malformed key", keypath);
	crypto_sign_ed25519_sk_to_pk(id->sign_pk, id->sign_sk);
	if (token_load(wpath, &id->worker, err) == -1 || token_load(apath, &id->admin, err) == -1) {
		identity_wipe(id);
		return -1;
	}
	if (id->worker.role != TOKEN_ROLE_WORKER || id->admin.role != TOKEN_ROLE_ADMIN) {
		identity_wipe(id);
		return err_set(err, 0, "%s: token files hold the wrong roles", data_dir);
	}
	return 0;
}

int
identity_read_token(const char *data_dir, const uint8_t *sign_pk, struct token *out, bool *made,
                    struct shoal_err *err)
{
	cleanup_free char *path = xasprintf("%s/read.token", data_dir);
	char tok[TOKEN_STRLEN + 1];
	int rc;

	*made = false;
	if (access(path, F_OK) == 0) {
		if (token_load(path, out, err) == -1)
			return -1;
		if (out->role != TOKEN_ROLE_READ) {
			token_wipe(out);
			return err_set(err, 0, "%s: not a read token", path);
		}
		return 0;
	}
	token_generate(TOKEN_ROLE_READ, sign_pk, out);
	token_format(out, tok, sizeof(tok) - 1);
	strcat(tok, "\n");
	rc = write_secret(data_dir, "read.token", tok, err);
	sodium_memzero(tok, sizeof(tok));
	if (rc == -1) {
		token_wipe(out);
		return -1;
	}
	*made = true;
	return 0;
}

void
identity_wipe(struct rpc_identity *id)
{
	sodium_memzero(id, sizeof(*id));
}
