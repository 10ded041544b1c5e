#ifndef SHOAL_RUNTIME_REGISTRY_INTERNAL_H
#define SHOAL_RUNTIME_REGISTRY_INTERNAL_H

/*
 * What the registry client's three files share: registry_http.c (one libcurl handle per
 * registry and repository, its requests, the auth challenge and token flow), registry.c
 * (manifests, pull: blob download and verification, the OCI layout handed to image_import)
 * and registry_push.c (push). Not for use outside them: everything else goes through
 * registry.h.
 */
#include <stdint.h>
#include <stdio.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "digest.h"
#include "oci.h"
#include "regauth.h"

struct reference;
/* registry.h: the internals need no more of them, and registry.h is above them. */
struct registry_opts;
struct registry_stats;

#define cleanup_json __attribute__((cleanup(json_decrefp)))

#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_SCHEMA1         "application/vnd.docker.distribution.manifest.v1+json"
#define MT_SCHEMA1_SIGNED  "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Every manifest type we read: without the OCI type a registry answers 404 for an OCI
 * manifest, without Docker's v2 it converts a schema 2 manifest to schema 1. */
#define ACCEPT_MANIFESTS                                                                           \
	"Accept: " OCI_MT_MANIFEST ", " OCI_MT_INDEX ", " MT_DOCKER_MANIFEST ", " MT_DOCKER_LIST

#define MANIFEST_MAX (4 << 20) /* the distribution registry's own limit */
#define TOKEN_MAX    (1 << 20)
#define ERRBODY_MAX  (64 << 10)

/* One registry and repository, one libcurl handle (its connections are reused). */
struct reg {
	CURL *curl;
	char *host;    /* as the reference spells it: "localhost:5000", "docker.io" */
	char *base;    /* "https://registry-1.docker.io", "http://10.0.0.1:5000" */
	char *repo;    /* "library/busybox" */
	char *actions; /* token scope: "pull" or "pull,push" */
	int insecure;
	struct regauth_cred cred; /* from auth.json; may be empty */
	int have_cred;
	char *authz; /* "Authorization: ..." header line in use; secret, never logged */
	struct registry_stats *stats;
	char **partials; /* verified partial files this pull linked into its layout */
	size_t npartials;
	const struct registry_opts *o; /* for its progress callback; may be NULL */
	size_t layers_done, layers;
	int64_t progress_ms; /* when progress was last called (monotonic) */
};

/* Where a response body goes: memory (fd < 0) or a file, hashed as it arrives. */
struct sink {
	CURL *curl;
	char *buf; /* memory mode */
	size_t len, max;
	int fd; /* file mode */
	/* SHA-256 by OpenSSL (libcurl's TLS library): it uses the CPU's SHA extensions, ~1.4
	 * GB/s here against libsodium's portable ~100 MB/s, which capped a pull's speed. */
	EVP_MD_CTX *h;
	uint64_t got;         /* bytes in the file, resumed ones included */
	int64_t want;         /* expected total size, -1 unknown */
	uint64_t resumed;     /* bytes on disk before this request */
	int started;          /* first 2xx byte seen */
	int overflow;         /* more than want / max: the transfer was cut */
	int io_errno;         /* a failed write */
	uint64_t *counter;    /* stats->bytes, may be NULL */
	struct reg *progress; /* tell its progress callback as bytes flow; may be NULL */
	char *errbody;        /* a non-2xx body (the registry's JSON error) */
	size_t errlen;
};

/* What we keep of a response's headers; reset at each new status line (redirects, 401s). */
struct resp {
	long status;
	char ctype[128];
	char digest[DIGEST_STR_LEN + 8];
	char location[2048];
	char *www_auth;
};

/* One request: the method and URL, what to send and where the body goes. */
struct req {
	const char *method; /* GET HEAD POST PUT */
	const char *url;
	const char *what; /* for messages: "manifest shoal/web:1", "blob sha256:ab…" */
	struct curl_slist *headers;
	const char *body; /* PUT/POST from memory */
	size_t body_len;
	FILE *upload; /* PUT from a file */
	uint64_t upload_len;
	int follow; /* follow redirects (blob GETs go to storage backends) */
	int token;  /* the token request: credentials go to the realm, another host */
};

void registry_http_resp_clear(struct resp *r);
void registry_http_sink_free(struct sink *k);
/* Call the caller's progress callback: always with force, else at most every 200 ms. */
void registry_http_progress(struct reg *r, int force);
/*
 * Do q; on 401 authenticate from the challenge and do it once more. Returns 0 with the final
 * status in rs->status (any status: the caller judges), -1 when no HTTP answer came.
 */
int registry_http_request(struct reg *r, struct req *q, struct sink *k, struct resp *rs,
                          struct shoal_err *err);
/* The error for an unexpected status: the registry's reason when it gave one. */
int registry_http_status_error(struct reg *r, struct req *q, struct sink *k, struct resp *rs,
                               struct shoal_err *err);
/* s URL-escaped. Caller frees. */
char *registry_http_escape(CURL *c, const char *s);
/* Open r for ref's registry and repository with token scope actions ("pull", "pull,push"). */
int registry_http_open(struct reg *r, const struct reference *ref, const struct registry_opts *o,
                       const char *actions, struct registry_stats *stats, struct shoal_err *err);
void registry_http_free(struct reg *r);

#endif
