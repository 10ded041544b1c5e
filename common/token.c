#include "token.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "util.h"

#define TOKEN_PREFIX "SHOAL1-"

/* Every parse error says the same thing: naming the offending part could echo the secret. */
#define TOKEN_MALFORMED "token: malformed (expected SHOAL1-<role>-<hash>-<secret>)"

const char *
token_role_name(enum token_role role)
{
	switch (role) {
	case TOKEN_ROLE_WORKER:
		return "worker";
	case TOKEN_ROLE_ADMIN:
		return "admin";
	case TOKEN_ROLE_READ:
		return "read";
	default:
		return "none";
	}
}

/* Decode exactly 2*len hex digits; anything else (short, long, non-hex) fails. */
static int
token_unhex(const char *s, size_t slen, uint8_t *out, size_t len)
{
	if (slen != 2 * len)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int hi = util_hexval(s[2 * i]), lo = util_hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int
token_parse(const char *s, struct token *t, struct shoal_err *err)
{
	const char *end, *role, *hash, *secret;
	struct token tmp = {0};
	size_t rlen;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	if ((size_t)(end - s) < strlen(TOKEN_PREFIX) ||
	    memcmp(s, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0)
		return err_set(err, 0, TOKEN_MALFORMED);
	role = s + strlen(TOKEN_PREFIX);
	hash = memchr(role, '-', (size_t)(end - role));
	if (hash == NULL)
		return err_set(err, 0, TOKEN_MALFORMED);
	rlen = (size_t)(hash - role);
	hash++;
	secret = memchr(hash, '-', (size_t)(end - hash));
	if (secret == NULL)
		return err_set(err, 0, TOKEN_MALFORMED);
	secret++;

	if (rlen == 6 && memcmp(role, "worker", 6) == 0)
		tmp.role = TOKEN_ROLE_WORKER;
	else if (rlen == 5 && memcmp(role, "admin", 5) == 0)
		tmp.role = TOKEN_ROLE_ADMIN;
	else if (rlen == 4 && memcmp(role, "read", 4) == 0)
		tmp.role = TOKEN_ROLE_READ;
	else
		return err_set(err, 0, "token: unknown role (want worker, admin or read)");
	if (token_unhex(hash, (size_t)(secret - 1 - hash), tmp.ca_hash, sizeof(tmp.ca_hash)) ==
	        -1 ||
	    token_unhex(secret, (size_t)(end - secret), tmp.secret, sizeof(tmp.secret)) == -1) {
		token_wipe(&tmp);
		return err_set(err, 0, TOKEN_MALFORMED);
	}
	*t = tmp;
	token_wipe(&tmp);
	return 0;
}

void
token_format(const struct token *t, char *out, size_t len)
{
	char hash[2 * TOKEN_HASH_BYTES + 1], secret[2 * TOKEN_SECRET_BYTES + 1];

	util_hex(t->ca_hash, sizeof(t->ca_hash), hash);
	util_hex(t->secret, sizeof(t->secret), secret);
	snprintf(out, len, TOKEN_PREFIX "%s-%s-%s", token_role_name(t->role), hash, secret);
	sodium_memzero(secret, sizeof(secret));
}

int
token_load(const char *path, struct token *t, struct shoal_err *err)
{
	size_t len = 0;
	char *buf = util_read_file(path, &len, err);
	int r;

	if (buf == NULL)
		return -1;
	r = token_parse(buf, t, err);
	sodium_memzero(buf, len);
	free(buf);
	if (r == -1)
		return err_prefix(err, "%s", path);
	return 0;
}

void
token_ca_hash(const uint8_t *sign_pk, uint8_t out[TOKEN_HASH_BYTES])
{
	crypto_generichash(out, TOKEN_HASH_BYTES, sign_pk, crypto_sign_PUBLICKEYBYTES, NULL, 0);
}

void
token_generate(enum token_role role, const uint8_t *sign_pk, struct token *t)
{
	t->role = role;
	token_ca_hash(sign_pk, t->ca_hash);
	randombytes_buf(t->secret, sizeof(t->secret));
}

void
token_wipe(struct token *t)
{
	sodium_memzero(t->secret, sizeof(t->secret));
}
