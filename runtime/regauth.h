#ifndef SHOAL_RUNTIME_REGAUTH_H
#define SHOAL_RUNTIME_REGAUTH_H

struct shoal_err;

/*
 * Registry authentication as the ecosystem does it, without the network (registry.c does the
 * requests): the WWW-Authenticate challenge a registry answers 401 with, and credentials from
 * an auth.json in the format podman, skopeo and buildah write:
 *   {"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}
 * Secrets live only in these structs: no message here or in registry.c quotes them.
 */

enum regauth_scheme {
	REGAUTH_NONE = 0,
	REGAUTH_BASIC,
	REGAUTH_BEARER,
};

struct regauth_challenge {
	enum regauth_scheme scheme;
	char *realm;   /* Bearer: the token server's URL; Basic: informative */
	char *service; /* may be NULL */
	char *scope;   /* may be NULL */
};

/*
 * Parse one WWW-Authenticate value (RFC 7235: scheme, then comma-separated key=value with
 * quoted-string or token values; scheme case-insensitive). A Bearer challenge without a realm,
 * an unknown scheme or a malformed parameter list is an error. Free with regauth_challenge_free.
 */
int regauth_parse_challenge(const char *header, struct regauth_challenge *c, struct shoal_err *err);
void regauth_challenge_free(struct regauth_challenge *c);

struct regauth_cred {
	char *user;
	char *password;
};

/*
 * The credentials auth.json at path holds for registry host (as a reference spells it,
 * "localhost:5000"; "docker.io" also answers to the keys Docker writes for it). Returns 1 and
 * fills cred when found, 0 when the file or the entry is absent, -1 on a broken file.
 */
int regauth_load(const char *path, const char *host, struct regauth_cred *cred,
                 struct shoal_err *err);
/* Wipes the secret before freeing. */
void regauth_cred_free(struct regauth_cred *cred);

/* "Basic base64(user:password)" for an Authorization header. Caller frees (and wipes). */
char *regauth_basic(const struct regauth_cred *cred);

#endif
