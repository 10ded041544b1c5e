#include "regauth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "err.h"
#include "util.h"

#define cleanup_json __attribute__((cleanup(json_decrefp)))

void
regauth_challenge_free(struct regauth_challenge *c)
{
	if (c == NULL)
		return;
	free(c->realm);
	free(c->service);
	free(c->scope);
	memset(c, 0, sizeof(*c));
}

static int
is_token_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~/:=", ch) != NULL);
}

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

int
regauth_parse_challenge(const char *h, struct regauth_challenge *c, struct shoal_err *err)
{
	const char *p = skip_ws(h ? h : "");
	size_t n = 0;

	memset(c, 0, sizeof(*c));
	while (p[n] && p[n] != ' ' && p[n] != '\t')
		n++;
	if (n == 5 && strncasecmp(p, "Basic", 5) == 0)
		c->scheme = REGAUTH_BASIC;
	else if (n == 6 && strncasecmp(p, "Bearer", 6) == 0)
		c->scheme = REGAUTH_BEARER;
	else
		return err_set(err, 0, "unsupported authentication scheme \"%.*s\"",
		               (int)(n > 20 ? 20 : n), p);
	p = skip_ws(p + n);
	while (*p) {
		cleanup_free char *key = NULL;
		cleanup_free char *val = NULL;
		const char *k = p;
		char **slot = NULL;

		while (*p && *p != '=' && *p != ' ' && *p != ',')
			p++;
		if (p == k || *p != '=') {
			regauth_challenge_free(c);
			return err_set(err, 0, "malformed authentication challenge");
		}
		key = xasprintf("%.*s", (int)(p - k), k);
		p++;
		if (*p == '"') {
			size_t cap = strlen(p), len = 0;
			val = xmalloc(cap + 1);
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				val[len++] = *p;
			}
			val[len] = '\0';
			if (*p != '"') {
				regauth_challenge_free(c);
				return err_set(err, 0, "unterminated quoted string in challenge");
			}
			p++;
		} else {
			const char *v = p;
			while (is_token_char(*p) && *p != ',')
				p++;
			val = xasprintf("%.*s", (int)(p - v), v);
		}
		if (strcasecmp(key, "realm") == 0)
			slot = &c->realm;
		else if (strcasecmp(key, "service") == 0)
			slot = &c->service;
		else if (strcasecmp(key, "scope") == 0)
			slot = &c->scope;
		if (slot) {
			free(*slot);
			*slot = steal_ptr(&val);
		}
		p = skip_ws(p);
		if (*p == ',')
			p = skip_ws(p + 1);
		else if (*p) {
			regauth_challenge_free(c);
			return err_set(err, 0, "malformed authentication challenge");
		}
	}
	if (c->scheme == REGAUTH_BEARER && (c->realm == NULL || c->realm[0] == '\0')) {
		regauth_challenge_free(c);
		return err_set(err, 0, "Bearer challenge without a realm");
	}
	if (c->scheme == REGAUTH_BEARER && strncmp(c->realm, "https://", 8) != 0 &&
	    strncmp(c->realm, "http://", 7) != 0) {
		regauth_challenge_free(c);
		return err_set(err, 0, "Bearer realm is not an http(s) URL");
	}
	return 0;
}

void
regauth_cred_free(struct regauth_cred *cred)
{
	if (cred == NULL)
		return;
	if (cred->user) {
		sodium_memzero(cred->user, strlen(cred->user));
		free(cred->user);
	}
	if (cred->password) {
		sodium_memzero(cred->password, strlen(cred->password));
		free(cred->password);
	}
	memset(cred, 0, sizeof(*cred));
}

/* The auths entry for host, trying the spellings Docker uses for its own hub. */
static json_t *
find_entry(json_t *auths, const char *host)
{
	static const char *const hub[] = {"docker.io", "index.docker.io", "registry-1.docker.io",
	                                  "https://index.docker.io/v1/"};
	json_t *e = json_object_get(auths, host);
	const char *key;
	json_t *v;

	if (e)
		return e;
	if (strcmp(host, "docker.io") == 0)
		for (size_t i = 0; i < ARRAY_SIZE(hub); i++)
			if ((e = json_object_get(auths, hub[i])) != NULL)
				return e;
	/* Keys written as URLs ("https://host:5000", "host:5000/v2/"). */
	json_object_foreach(auths, key, v)
	{
		const char *k = key;
		size_t n = strlen(host);

		if (strncmp(k, "https://", 8) == 0)
			k += 8;
		else if (strncmp(k, "http://", 7) == 0)
			k += 7;
		if (strncmp(k, host, n) == 0 && (k[n] == '\0' || k[n] == '/'))
			return v;
	}
	return NULL;
}

int
regauth_load(const char *path, const char *host, struct regauth_cred *cred, struct shoal_err *err)
{
	cleanup_free char *text = NULL;
	cleanup_json json_t *j = NULL;
	cleanup_free unsigned char *raw = NULL;
	json_error_t je;
	json_t *auths, *e, *a;
	const char *b64, *colon;
	size_t b64len, rawlen = 0;

	memset(cred, 0, sizeof(*cred));
	if (path == NULL)
		return 0;
	text = util_read_file(path, NULL, err);
	if (text == NULL)
		return err->code == ENOENT ? (err_clear(err), 0) : err_prefix(err, "auth file");
	j = json_loads(text, 0, &je);
	sodium_memzero(text, strlen(text));
	if (j == NULL)
		return err_set(err, 0, "auth file %s: invalid JSON at line %d", path, je.line);
	auths = json_object_get(j, "auths");
	if (auths == NULL)
		return 0;
	if (!json_is_object(auths))
		return err_set(err, 0, "auth file %s: \"auths\" is not an object", path);
	e = find_entry(auths, host);
	if (e == NULL)
		return 0;
	a = json_object_get(e, "auth");
	if (!json_is_string(a))
		return err_set(err, 0, "auth file %s: entry for %s has no \"auth\" string", path,
		               host);
	b64 = json_string_value(a);
	b64len = strlen(b64);
	raw = xmalloc(b64len + 1);
	if (sodium_base642bin(raw, b64len, b64, b64len, "\n\r ", &rawlen, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0)
		return err_set(err, 0, "auth file %s: entry for %s: \"auth\" is not base64", path,
		               host);
	raw[rawlen] = '\0';
	colon = memchr(raw, ':', rawlen);
	if (colon == NULL || strlen((char *)raw) != rawlen) {
		sodium_memzero(raw, rawlen);
		return err_set(err, 0, "auth file %s: entry for %s: \"auth\" is not user:password",
		               path, host);
	}
	cred->user = xasprintf("%.*s", (int)(colon - (char *)raw), (char *)raw);
	cred->password = xstrdup(colon + 1);
	sodium_memzero(raw, rawlen);
	return 1;
}

char *
regauth_basic(const struct regauth_cred *cred)
{
	cleanup_free char *pair = xasprintf("%s:%s", cred->user, cred->password);
	size_t n = strlen(pair);
	size_t blen = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	char *b = xmalloc(blen);
	char *h;

	sodium_bin2base64(b, blen, (unsigned char *)pair, n, sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(pair, n);
	h = xasprintf("Basic %s", b);
	sodium_memzero(b, strlen(b));
	free(b);
	return h;
}
