#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "fdio.h"
#include "digest.h"
#include "err.h"
#include "image.h"
#include "layer.h"
#include "log.h"
#include "oci.h"
#include "reference.h"
#include "regauth.h"
#include "util.h"

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

static void
resp_clear(struct resp *r)
{
	free(r->www_auth);
	memset(r, 0, sizeof(*r));
}

static void
sink_free(struct sink *k)
{
	free(k->buf);
	free(k->errbody);
	k->buf = k->errbody = NULL;
}

const char *
registry_platform(void)
{
#if defined(__x86_64__)
	return "linux/amd64";
#elif defined(__aarch64__)
	return "linux/arm64";
#else
	return "linux/unknown";
#endif
}

/* ---- manifests --------------------------------------------------------------------------- */

const char *
registry_manifest_type(const char *json, const char *ctype, struct shoal_err *err)
{
	static const char *const known[] = {OCI_MT_MANIFEST, OCI_MT_INDEX, MT_DOCKER_MANIFEST,
	                                    MT_DOCKER_LIST};
	cleanup_json json_t *j = NULL;
	json_error_t je;
	const char *mt;
	json_t *sv;

	j = json_loads(json, 0, &je);
	if (j == NULL || !json_is_object(j))
		return err_set(err, 0, "manifest: invalid JSON at line %d", j ? 1 : je.line), NULL;
	sv = json_object_get(j, "schemaVersion");
	mt = json_string_value(json_object_get(j, "mediaType"));
	if ((json_is_integer(sv) && json_integer_value(sv) == 1) ||
	    (mt && (strcmp(mt, MT_SCHEMA1) == 0 || strcmp(mt, MT_SCHEMA1_SIGNED) == 0)) ||
	    (!mt && ctype &&
	     (strcmp(ctype, MT_SCHEMA1) == 0 || strcmp(ctype, MT_SCHEMA1_SIGNED) == 0))) {
		err_set(err, 0,
		        "Docker schema 1 manifest: not supported (deprecated); push the image "
		        "again with a current client");
		return NULL;
	}
	if (mt == NULL)
		mt = ctype;
	for (size_t i = 0; mt && i < ARRAY_SIZE(known); i++)
		if (strcmp(mt, known[i]) == 0)
			return known[i];
	/* Neither field says (a plain application/json): the document's shape does. */
	if (mt == NULL || strcmp(mt, "application/json") == 0) {
		if (json_is_array(json_object_get(j, "manifests")))
			return OCI_MT_INDEX;
		if (json_is_object(json_object_get(j, "config")) &&
		    json_is_array(json_object_get(j, "layers")))
			return OCI_MT_MANIFEST;
	}
	err_set(err, 0, "manifest: unsupported media type %.100s", mt ? mt : "(none)");
	return NULL;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static size_t
on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct resp *r = arg;
	size_t n = size * nmemb, klen;
	const char *colon;
	char *val;

	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		resp_clear(r);
		return n;
	}
	colon = memchr(p, ':', n);
	if (colon == NULL)
		return n;
	klen = (size_t)(colon - p);
	colon++;
	while (colon < p + n && (*colon == ' ' || *colon == '\t'))
		colon++;
	val = xasprintf("%.*s", (int)(p + n - colon), colon);
	val[strcspn(val, "\r\n")] = '\0';
	if (klen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
		val[strcspn(val, "; ")] = '\0';
		snprintf(r->ctype, sizeof(r->ctype), "%s", val);
	} else if (klen == 21 && strncasecmp(p, "Docker-Content-Digest", 21) == 0) {
		snprintf(r->digest, sizeof(r->digest), "%s", val);
	} else if (klen == 8 && strncasecmp(p, "Location", 8) == 0) {
		snprintf(r->location, sizeof(r->location), "%s", val);
	} else if (klen == 16 && strncasecmp(p, "WWW-Authenticate", 16) == 0 &&
	           r->www_auth == NULL) {
		r->www_auth = steal_ptr(&val);
	}
	free(val);
	return n;
}

/* Call the caller's progress callback: always with force, else at most every 200 ms. */
static void
progress(struct reg *r, int force)
{
	int64_t now;

	if (r->o == NULL || r->o->progress == NULL)
		return;
	now = util_now_ms();
	if (!force && now - r->progress_ms < 200)
		return;
	r->progress_ms = now;
	r->o->progress(r->o->progress_arg, r->layers_done, r->layers,
	               r->stats ? r->stats->bytes : 0);
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct sink *k = arg;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status >= 300) {
		size_t room = ERRBODY_MAX - k->errlen;
		if (n < room)
			room = n;
		k->errbody = xrealloc(k->errbody, k->errlen + room + 1);
		memcpy(k->errbody + k->errlen, p, room);
		k->errlen += room;
		k->errbody[k->errlen] = '\0';
		return n;
	}
	if (k->fd < 0) {
		if (k->len + n > k->max) {
			k->overflow = 1;
			return 0;
		}
		k->buf = xrealloc(k->buf, k->len + n + 1);
		memcpy(k->buf + k->len, p, n);
		k->len += n;
		k->buf[k->len] = '\0';
		return n;
	}
	if (!k->started) {
		k->started = 1;
		/* Asked for a range, got the whole blob: start the file and the hash over. */
		if (status == 200 && k->got > 0) {
			if (ftruncate(k->fd, 0) == -1 || lseek(k->fd, 0, SEEK_SET) == -1) {
				k->io_errno = errno;
				return 0;
			}
			EVP_DigestInit_ex(k->h, EVP_sha256(), NULL);
			k->got = 0;
		}
	}
	if (k->want >= 0 && k->got + n > (uint64_t)k->want) {
		k->overflow = 1;
		return 0;
	}
	if (fdio_write_all(k->fd, p, n) == -1) {
		k->io_errno = errno;
		return 0;
	}
	EVP_DigestUpdate(k->h, p, n);
	k->got += n;
	if (k->counter)
		*k->counter += n;
	if (k->progress)
		progress(k->progress, 0);
	return n;
}

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

int
registry_same_origin(const char *base, const char *url)
{
	size_t n = strlen(base);

	return strncmp(url, base, n) == 0 && (url[n] == '/' || url[n] == '\0' || url[n] == '?');
}

static int
same_origin(const struct reg *r, const char *url)
{
	return registry_same_origin(r->base, url);
}

/* "MANIFEST_UNKNOWN: manifest unknown" from the registry's JSON error body, printable only. */
static void
registry_reason(const char *body, char *out, size_t len)
{
	cleanup_json json_t *j = body ? json_loads(body, 0, NULL) : NULL;
	json_t *e = json_array_get(json_object_get(j, "errors"), 0);
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	size_t i;

	out[0] = '\0';
	if (code == NULL && msg == NULL)
		return;
	snprintf(out, len, "%s%s%s", msg ? msg : "", msg && code ? " " : "", "");
	if (code) {
		size_t n = strlen(out);
		snprintf(out + n, len - n, "(%s)", code);
	}
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = '?';
}

static int reg_authenticate(struct reg *r, const char *challenge, struct shoal_err *err);

static CURLcode
reg_perform(struct reg *r, struct req *q, struct sink *k, struct resp *rs)
{
	struct curl_slist *h = NULL;
	CURLcode rc;

	curl_easy_reset(r->curl);
	curl_easy_setopt(r->curl, CURLOPT_URL, q->url);
	curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, r->insecure ? "http,https" : "https");
	curl_easy_setopt(r->curl, CURLOPT_REDIR_PROTOCOLS_STR,
	                 r->insecure ? "http,https" : "https");
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	/* A stalled transfer (a registry killed mid-pull) ends instead of hanging. */
	curl_easy_setopt(r->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(r->curl, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "shoal");
	/* Fewer, larger writes and hash updates per blob than the 16 KiB default. */
	curl_easy_setopt(r->curl, CURLOPT_BUFFERSIZE, 256L << 10);
	curl_easy_setopt(r->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(r->curl, CURLOPT_HEADERDATA, rs);
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, k);
	if (q->follow) {
		/* curl drops our Authorization header when a redirect changes host. */
		curl_easy_setopt(r->curl, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(r->curl, CURLOPT_MAXREDIRS, 5L);
	}
	for (struct curl_slist *p = q->headers; p; p = p->next)
		h = curl_slist_append(h, p->data);
	h = curl_slist_append(h, "Expect:");
	if (r->authz && (q->token || same_origin(r, q->url)))
		h = curl_slist_append(h, r->authz);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, h);
	if (strcmp(q->method, "HEAD") == 0) {
		curl_easy_setopt(r->curl, CURLOPT_NOBODY, 1L);
	} else if (strcmp(q->method, "POST") == 0) {
		curl_easy_setopt(r->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, q->body ? q->body : "");
		curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
	} else if (strcmp(q->method, "PUT") == 0 && q->upload) {
		rewind(q->upload);
		curl_easy_setopt(r->curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(r->curl, CURLOPT_READDATA, q->upload);
		curl_easy_setopt(r->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->upload_len);
	} else if (strcmp(q->method, "PUT") == 0) {
		curl_easy_setopt(r->curl, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, q->body ? q->body : "");
		curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
	}
	k->curl = r->curl;
	rc = curl_easy_perform(r->curl);
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &rs->status);
	curl_slist_free_all(h);
	return rc;
}

/*
 * Do q; on 401 authenticate from the challenge and do it once more. Returns 0 with the final
 * status in rs->status (any status: the caller judges), -1 when no HTTP answer came.
 */
static int
reg_request(struct reg *r, struct req *q, struct sink *k, struct resp *rs, struct shoal_err *err)
{
	for (int attempt = 0;; attempt++) {
		CURLcode rc;

		resp_clear(rs);
		free(k->errbody);
		k->errbody = NULL;
		k->errlen = 0;
		rc = reg_perform(r, q, k, rs);
		if (k->io_errno)
			return err_set(err, k->io_errno, "%s: write", q->what);
		if (k->overflow)
			return err_set(err, 0, "%s: the registry sent more than %s", q->what,
			               k->fd < 0 ? "the size limit" : "the descriptor's size");
		if (rc != CURLE_OK)
			return err_set(err, 0, "%s: %s %s: %s", q->what, q->method, r->host,
			               curl_easy_strerror(rc));
		if (rs->status != 401 || attempt > 0 || rs->www_auth == NULL)
			return 0;
		if (reg_authenticate(r, rs->www_auth, err) == -1)
			return err_prefix(err, "%s", q->what);
	}
}

/* The error for an unexpected status: the registry's reason when it gave one. */
static int
status_error(struct reg *r, struct req *q, struct sink *k, struct resp *rs, struct shoal_err *err)
{
	char reason[160];

	registry_reason(k->errbody, reason, sizeof(reason));
	if (rs->status == 401)
		return err_set(err, 0, "%s: unauthorized by %s%s%s%s", q->what, r->host,
		               reason[0] ? ": " : "", reason,
		               r->have_cred ? " (credentials refused)"
		                            : " (no credentials for it in the auth file)");
	return err_set(err, 0, "%s: %s %s answered %ld%s%s", q->what, q->method, r->host,
	               rs->status, reason[0] ? ": " : "", reason);
}

static char *
escape(CURL *c, const char *s)
{
	char *e = curl_easy_escape(c, s, 0);
	char *r = xstrdup(e ? e : "");

	curl_free(e);
	return r;
}

static int
reg_authenticate(struct reg *r, const char *challenge, struct shoal_err *err)
{
	struct regauth_challenge c;
	cleanup_free char *url = NULL;
	cleanup_free char *scope = NULL;
	cleanup_free char *svc = NULL;
	cleanup_free char *esc_scope = NULL;
	cleanup_json json_t *j = NULL;
	struct sink k = {.fd = -1, .max = TOKEN_MAX, .want = -1};
	struct resp rs = {0};
	struct req q = {.method = "GET", .what = "token"};
	const char *tok;
	char *saved;
	int rc = -1;

	if (regauth_parse_challenge(challenge, &c, err) == -1)
		return err_prefix(err, "registry %s", r->host);
	if (c.scheme == REGAUTH_BASIC) {
		cleanup_free char *b = NULL;
		if (!r->have_cred) {
			regauth_challenge_free(&c);
			return err_set(err, 0,
			               "unauthorized by %s: it wants Basic credentials (no "
			               "credentials for it in the auth file)",
			               r->host);
		}
		b = regauth_basic(&r->cred);
		free(r->authz);
		r->authz = xasprintf("Authorization: %s", b);
		sodium_memzero(b, strlen(b));
		regauth_challenge_free(&c);
		return 0;
	}
	/* Bearer: ask the realm for a token for our repository, with our credentials if any. */
	scope = c.scope ? xstrdup(c.scope) : xasprintf("repository:%s:%s", r->repo, r->actions);
	esc_scope = escape(r->curl, scope);
	svc = c.service ? escape(r->curl, c.service) : NULL;
	url = xasprintf("%s%sscope=%s%s%s", c.realm, strchr(c.realm, '?') ? "&" : "?", esc_scope,
	                svc ? "&service=" : "", svc ? svc : "");
	q.url = url;
	q.follow = 1;
	q.token = 1;
	if (r->have_cred && strncmp(c.realm, "https://", 8) != 0 && !r->insecure) {
		regauth_challenge_free(&c);
		return err_set(err, 0,
		               "registry %s: refusing to send credentials to a plain-HTTP token "
		               "realm",
		               r->host);
	}
	saved = steal_ptr(&r->authz);
	if (r->have_cred) {
		cleanup_free char *b = regauth_basic(&r->cred);
		r->authz = xasprintf("Authorization: %s", b);
		sodium_memzero(b, strlen(b));
	}
	if (reg_perform(r, &q, &k, &rs) != CURLE_OK) {
		err_set(err, 0, "token from %s: %s", r->host, "the token server did not answer");
		goto out;
	}
	if (rs.status != 200) {
		char reason[160];
		registry_reason(k.errbody, reason, sizeof(reason));
		err_set(err, 0, "unauthorized: the token server of %s answered %ld%s%s%s", r->host,
		        rs.status, reason[0] ? ": " : "", reason,
		        r->have_cred ? " (credentials refused)" : "");
		goto out;
	}
	j = k.buf ? json_loads(k.buf, 0, NULL) : NULL;
	tok = json_string_value(json_object_get(j, "token"));
	if (tok == NULL)
		tok = json_string_value(json_object_get(j, "access_token"));
	if (tok == NULL || tok[0] == '\0' || strpbrk(tok, "\r\n")) {
		err_set(err, 0, "token from %s: no token in the answer", r->host);
		goto out;
	}
	rc = 0;
out:
	if (r->authz) {
		sodium_memzero(r->authz, strlen(r->authz));
		free(r->authz);
	}
	r->authz = rc == 0 ? xasprintf("Authorization: Bearer %s", tok) : saved;
	if (rc == 0 && saved) {
		sodium_memzero(saved, strlen(saved));
		free(saved);
	}
	if (k.buf)
		sodium_memzero(k.buf, k.len);
	sink_free(&k);
	resp_clear(&rs);
	regauth_challenge_free(&c);
	return rc;
}

static int
is_insecure(const struct registry_opts *o, const char *host)
{
	for (size_t i = 0; o && o->insecure && o->insecure[i]; i++)
		if (strcmp(o->insecure[i], host) == 0)
			return 1;
	return 0;
}

static void
reg_free(struct reg *r)
{
	if (r->curl)
		curl_easy_cleanup(r->curl);
	free(r->host);
	free(r->base);
	free(r->repo);
	free(r->actions);
	regauth_cred_free(&r->cred);
	for (size_t i = 0; i < r->npartials; i++)
		free(r->partials[i]);
	free(r->partials);
	if (r->authz) {
		sodium_memzero(r->authz, strlen(r->authz));
		free(r->authz);
	}
	memset(r, 0, sizeof(*r));
}

static int
reg_open(struct reg *r, const struct reference *ref, const struct registry_opts *o,
         const char *actions, struct registry_stats *stats, struct shoal_err *err)
{
	static int global_done;
	int found;

	memset(r, 0, sizeof(*r));
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return err_set(err, 0, "libcurl: cannot initialise");
		global_done = 1;
	}
	r->host = xstrdup(ref->domain);
	r->repo = xstrdup(ref->path);
	r->actions = xstrdup(actions);
	r->insecure = is_insecure(o, ref->domain);
	r->stats = stats;
	r->o = o;
	/* Docker's hub answers the API on another name than the one references use. */
	r->base =
	    xasprintf("%s://%s", r->insecure ? "http" : "https",
	              strcmp(ref->domain, REFERENCE_DEFAULT_DOMAIN) == 0 ? "registry-1.docker.io"
	                                                                 : ref->domain);
	found = regauth_load(o ? o->auth_file : NULL, ref->domain, &r->cred, err);
	if (found == -1) {
		reg_free(r);
		return -1;
	}
	r->have_cred = found;
	r->curl = curl_easy_init();
	if (r->curl == NULL) {
		reg_free(r);
		return err_set(err, 0, "libcurl: cannot create a handle");
	}
	return 0;
}

/* ---- pull -------------------------------------------------------------------------------- */

/* GET a manifest by tag or digest into *text (its type in mt, its digest in digest). */
static int
get_manifest(struct reg *r, const char *tag_or_digest, const char *expect_digest, char **text,
             const char **mt, char *digest, struct shoal_err *err)
{
	cleanup_free char *url =
	    xasprintf("%s/v2/%s/manifests/%s", r->base, r->repo, tag_or_digest);
	cleanup_free char *what = xasprintf("manifest %s:%s", r->repo, tag_or_digest);
	struct sink k = {.fd = -1, .max = MANIFEST_MAX, .want = -1};
	struct resp rs = {0};
	struct req q = {.method = "GET", .url = url, .what = what, .follow = 1};
	char a[40];
	int rc = -1;

	q.headers = curl_slist_append(NULL, ACCEPT_MANIFESTS);
	if (reg_request(r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status != 200) {
		status_error(r, &q, &k, &rs, err);
		goto out;
	}
	if (k.buf == NULL || k.len != strlen(k.buf)) {
		err_set(err, 0, "%s: empty or binary body", what);
		goto out;
	}
	digest_buf(k.buf, k.len, digest);
	if (expect_digest && strcmp(digest, expect_digest) != 0) {
		err_set(err, 0, "%s: digest mismatch (got %s)", what,
		        digest_short(digest, a, sizeof(a)));
		goto out;
	}
	if (rs.digest[0] && strncmp(rs.digest, "sha256:", 7) == 0 &&
	    strcmp(rs.digest, digest) != 0) {
		err_set(err, 0, "%s: digest mismatch (registry says %s, body is %s)", what,
		        digest_short(rs.digest, a, sizeof(a)), digest);
		goto out;
	}
	*mt = registry_manifest_type(k.buf, rs.ctype[0] ? rs.ctype : NULL, err);
	if (*mt == NULL) {
		err_prefix(err, "%s", what);
		goto out;
	}
	*text = steal_ptr(&k.buf);
	rc = 0;
out:
	curl_slist_free_all(q.headers);
	sink_free(&k);
	resp_clear(&rs);
	return rc;
}

/*
 * Fetch blob d into dst, through ROOT/tmp/partial/<hex>: what is there from an interrupted
 * pull is hashed again and the rest asked for with Range. The partial moves to dst only with
 * the right size and digest; a wrong one is deleted.
 */
static int
fetch_blob(struct reg *r, const char *root, const struct oci_desc *d, const char *dst,
           const char *kind, struct shoal_err *err)
{
	cleanup_free char *pdir = xasprintf("%s/tmp/partial", root);
	cleanup_free char *partial = xasprintf("%s/%s", pdir, d->digest + 7);
	cleanup_free char *url = xasprintf("%s/v2/%s/blobs/%s", r->base, r->repo, d->digest);
	cleanup_free char *range = NULL;
	char what[64], a[40], got[DIGEST_STR_LEN + 1];
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned hlen = 0;
	struct sink k = {.fd = -1, .want = d->size};
	struct resp rs = {0};
	struct req q = {.method = "GET", .url = url, .what = what, .follow = 1};
	struct stat st, st2;
	int rc = -1;

	snprintf(what, sizeof(what), "%s %s", kind, digest_short(d->digest, a, sizeof(a)));
	if (util_mkdir_p(pdir, 0700, err) == -1)
		return -1;
	/* Two pulls of one blob take turns; the second refetches if the first moved it away. */
	for (;;) {
		k.fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (k.fd == -1)
			return err_set(err, errno, "open %s", partial);
		if (flock(k.fd, LOCK_EX) == -1) {
			close(k.fd);
			return err_set(err, errno, "lock %s", partial);
		}
		if (fstat(k.fd, &st) == 0 && stat(partial, &st2) == 0 && st.st_ino == st2.st_ino)
			break;
		close(k.fd);
	}
	/* While we waited, a concurrent pull may have put the blob in the store. */
	{
		cleanup_free char *have = xasprintf("%s/blobs/sha256/%s", root, d->digest + 7);
		if (link(have, dst) == 0) {
			if (st.st_size == 0)
				unlink(partial);
			rc = 0;
			goto out;
		}
	}
	k.h = EVP_MD_CTX_new();
	if (k.h == NULL || EVP_DigestInit_ex(k.h, EVP_sha256(), NULL) != 1) {
		err_set(err, 0, "%s: OpenSSL cannot hash", what);
		goto out;
	}
	if ((uint64_t)st.st_size > (uint64_t)d->size && ftruncate(k.fd, 0) == -1) {
		err_set(err, errno, "truncate %s", partial);
		goto out;
	}
	if ((uint64_t)st.st_size <= (uint64_t)d->size && st.st_size > 0) {
		cleanup_free char *buf = xmalloc(1 << 16);
		ssize_t n;
		while ((n = read(k.fd, buf, 1 << 16)) > 0) {
			EVP_DigestUpdate(k.h, buf, (size_t)n);
			k.got += (uint64_t)n;
		}
		if (n == -1) {
			err_set(err, errno, "read %s", partial);
			goto out;
		}
	}
	k.resumed = k.got;
	k.counter = r->stats ? &r->stats->bytes : NULL;
	k.progress = r;
	if (k.got < (uint64_t)d->size) {
		if (k.got > 0) {
			range = xasprintf("Range: bytes=%llu-", (unsigned long long)k.got);
			q.headers = curl_slist_append(NULL, range);
			if (r->stats)
				r->stats->resumed += k.got;
		}
		if (reg_request(r, &q, &k, &rs, err) == -1)
			goto out;
		if (rs.status != 200 && rs.status != 206) {
			status_error(r, &q, &k, &rs, err);
			goto out;
		}
		if (rs.status == 200 && r->stats) /* the registry ignored the Range */
			r->stats->resumed -= k.resumed;
	}
	EVP_DigestFinal_ex(k.h, h, &hlen);
	SHOAL_ASSERT(hlen == DIGEST_HEX_LEN / 2);
	memcpy(got, "sha256:", 7);
	util_hex(h, hlen, got + 7);
	if (k.got != (uint64_t)d->size) {
		err_set(err, 0, "%s: %llu bytes, descriptor says %lld (truncated)", what,
		        (unsigned long long)k.got, (long long)d->size);
		goto out; /* keep the partial: the next pull resumes from it */
	}
	if (strcmp(got, d->digest) != 0) {
		unlink(partial);
		err_set(err, 0, "%s: digest mismatch (got %s)", what,
		        digest_short(got, a, sizeof(a)));
		goto out;
	}
	if (fsync(k.fd) == -1) {
		err_set(err, errno, "fsync %s", partial);
		goto out;
	}
	/* Linked, not moved: a concurrent pull of the same blob waiting on the lock finds it
	 * whole and verifies it instead of fetching it again. The pull deletes it once the
	 * store holds the blob. */
	if (link(partial, dst) == -1) {
		err_set(err, errno, "link %s", partial);
		goto out;
	}
	r->partials = xrealloc(r->partials, (r->npartials + 1) * sizeof(*r->partials));
	r->partials[r->npartials++] = steal_ptr(&partial);
	if (r->stats && k.got > k.resumed)
		r->stats->blobs_fetched++;
	rc = 0;
out:
	close(k.fd);
	EVP_MD_CTX_free(k.h);
	curl_slist_free_all(q.headers);
	sink_free(&k);
	resp_clear(&rs);
	return rc;
}

/* Put blob d into the layout at dst: a link to the store's copy, else fetched. */
static int
layout_blob(struct reg *r, const char *root, const struct oci_desc *d, const char *layout,
            const char *kind, struct shoal_err *err)
{
	cleanup_free char *dst = xasprintf("%s/blobs/sha256/%s", layout, d->digest + 7);
	cleanup_free char *have = xasprintf("%s/blobs/sha256/%s", root, d->digest + 7);
	struct stat st;

	if (r->stats)
		r->stats->blobs++;
	if (lstat(dst, &st) == 0)
		return 0; /* listed twice */
	if (link(have, dst) == 0)
		return 0;
	if (errno != ENOENT)
		return err_set(err, errno, "link %s", have);
	return fetch_blob(r, root, d, dst, kind, err);
}

static int
write_layout(const char *layout, const char *mtext, const char *mt, const char *digest,
             const char *refname, struct shoal_err *err)
{
	cleanup_free char *p = xasprintf("%s/blobs/sha256/%s", layout, digest + 7);
	cleanup_free char *ip = xasprintf("%s/index.json", layout);
	cleanup_free char *lp = xasprintf("%s/oci-layout", layout);
	cleanup_json json_t *ix = NULL;
	cleanup_free char *text = NULL;
	static const char layout_text[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

	if (util_write_file_atomic(p, mtext, strlen(mtext), 0644, err) == -1 ||
	    util_write_file_atomic(lp, layout_text, strlen(layout_text), 0644, err) == -1)
		return -1;
	ix = json_pack("{s:i, s:[{s:s, s:s, s:I, s:{s:s}}]}", "schemaVersion", 2, "manifests",
	               "mediaType", mt, "digest", digest, "size", (json_int_t)strlen(mtext),
	               "annotations", OCI_ANN_REF_NAME, refname);
	SHOAL_ASSERT(ix != NULL);
	text = json_dumps(ix, JSON_COMPACT);
	return util_write_file_atomic(ip, text, strlen(text), 0644, err);
}

int
registry_pull(struct image_store *s, const char *refstr, const struct registry_opts *o,
              struct registry_stats *stats, char **stored, struct shoal_err *err)
{
	const char *root = image_store_root(s);
	const char *want = o && o->platform ? o->platform : registry_platform();
	struct registry_stats local = {0};
	struct reference ref;
	struct reg r;
	cleanup_free char *mtext = NULL;
	cleanup_free char *layout = NULL;
	cleanup_free char *name = NULL;
	cleanup_free char *storeref = NULL;
	struct oci_manifest m = {0};
	struct shoal_err e2;
	const char *mt = NULL;
	char digest[DIGEST_STR_LEN + 1], a[40];
	struct oci_config cfg;
	int have_m = 0, have_c = 0, rc = -1;

	if (stored)
		*stored = NULL;
	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	if (reference_parse(refstr, &ref, err) == -1)
		return -1;
	if (reg_open(&r, &ref, o, "pull", stats, err) == -1) {
		reference_free(&ref);
		return -1;
	}
	name = reference_familiar_name(&ref);
	storeref =
	    ref.tag ? xasprintf("%s:%s", name, ref.tag) : xasprintf("%s@%s", name, ref.digest);
	if (get_manifest(&r, ref.digest ? ref.digest : ref.tag, ref.digest, &mtext, &mt, digest,
	                 err) == -1)
		goto out;
	if (oci_media_kind(mt) == OCI_KIND_INDEX) {
		struct oci_desc *ds = NULL;
		size_t n = 0, pick = SIZE_MAX;
		char child[DIGEST_STR_LEN + 1];

		if (oci_parse_index(mtext, &ds, &n, err) == -1) {
			err_prefix(err, "index %s", digest_short(digest, a, sizeof(a)));
			goto out;
		}
		for (size_t i = 0; i < n && pick == SIZE_MAX; i++)
			if (ds[i].platform && strcmp(ds[i].platform, want) == 0 &&
			    (ds[i].media_type == NULL ||
			     oci_media_kind(ds[i].media_type) == OCI_KIND_MANIFEST))
				pick = i;
		if (pick == SIZE_MAX) {
			char have[160] = "";
			for (size_t i = 0; i < n; i++) {
				size_t l = strlen(have);
				snprintf(have + l, sizeof(have) - l, "%s%s", l ? ", " : "",
				         ds[i].platform ? ds[i].platform : "?");
			}
			oci_descs_free(ds, n);
			err_set(err, 0, "index: no image for %s (it has %s)", want,
			        have[0] ? have : "none");
			goto out;
		}
		snprintf(child, sizeof(child), "%s", ds[pick].digest);
		oci_descs_free(ds, n);
		mtext = (free(mtext), NULL);
		if (get_manifest(&r, child, child, &mtext, &mt, digest, err) == -1)
			goto out;
		if (oci_media_kind(mt) != OCI_KIND_MANIFEST) {
			err_set(err, 0, "index: the entry for %s is not an image manifest", want);
			goto out;
		}
	}
	if (oci_parse_manifest(mtext, mt, &m, err) == -1) {
		err_prefix(err, "manifest %s", digest_short(digest, a, sizeof(a)));
		goto out;
	}
	have_m = 1;
	snprintf(stats->digest, sizeof(stats->digest), "%s", digest);
	layout = xasprintf("%s/tmp/pull-XXXXXX", root);
	if (mkdtemp(layout) == NULL) {
		err_set(err, errno, "mkdtemp %s", layout);
		layout = (free(layout), NULL);
		goto out;
	}
	{
		cleanup_free char *b = xasprintf("%s/blobs/sha256", layout);
		if (util_mkdir_p(b, 0700, err) == -1)
			goto out;
	}
	r.layers = m.nlayers;
	progress(&r, 1);
	if (layout_blob(&r, root, &m.config, layout, "config", err) == -1)
		goto out;
	{
		/* The config first: a layer the store has unpacked by its diff_id, from any
		 * compression, is not fetched (the import checks the diff_ids again). */
		cleanup_free char *cp =
		    xasprintf("%s/blobs/sha256/%s", layout, m.config.digest + 7);
		cleanup_free char *ct = util_read_file(cp, NULL, err);
		if (ct == NULL || oci_parse_config(ct, &cfg, err) == -1) {
			err_prefix(err, "config %s", digest_short(m.config.digest, a, sizeof(a)));
			goto out;
		}
		have_c = 1;
	}
	for (size_t i = 0; i < m.nlayers; i++) {
		if (cfg.diff_ids && cfg.ndiff_ids == m.nlayers &&
		    strncmp(cfg.diff_ids[i], "sha256:", 7) == 0 &&
		    digest_is_hex(cfg.diff_ids[i] + 7)) {
			cleanup_free char *ld =
			    xasprintf("%s/layers/%s", root, cfg.diff_ids[i] + 7);
			cleanup_free char *bl =
			    xasprintf("%s/blobs/sha256/%s", root, m.layers[i].digest + 7);
			struct stat sb;
			/* The store's own blob is linked as before (push can then send it). */
			if (lstat(ld, &sb) == 0 && lstat(bl, &sb) == -1) {
				if (r.stats)
					r.stats->blobs++;
				r.layers_done = i + 1;
				progress(&r, 1);
				continue;
			}
		}
		if (layout_blob(&r, root, &m.layers[i], layout, "layer", err) == -1)
			goto out;
		r.layers_done = i + 1;
		progress(&r, 1);
	}
	if (write_layout(layout, mtext, mt, digest, storeref, err) == -1)
		goto out;
	if (image_import_verified(s, layout, storeref, err) == -1)
		goto out;
	/* Only now: a failed import keeps them whole and verified for the next pull. */
	for (size_t i = 0; i < r.npartials; i++)
		unlink(r.partials[i]);
	if (stored)
		*stored = steal_ptr(&storeref);
	rc = 0;
out:
	if (rc == -1)
		err_prefix(err, "pull %s", refstr);
	if (layout && layer_remove_tree(layout, &e2) == -1 && rc == 0) {
		*err = e2;
		rc = -1;
	}
	if (have_m)
		oci_manifest_free(&m);
	if (have_c)
		oci_config_free(&cfg);
	reg_free(&r);
	reference_free(&ref);
	return rc;
}

/* ---- push -------------------------------------------------------------------------------- */

/* The upload URL the registry gave (absolute or relative), with digest= added. */
static char *
upload_url(struct reg *r, const char *location, const char *digest)
{
	const char *sep = strchr(location, '?') ? "&" : "?";
	cleanup_free char *d = escape(r->curl, digest);

	if (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0)
		return xasprintf("%s%sdigest=%s", location, sep, d);
	return xasprintf("%s%s%s%sdigest=%s", r->base, location[0] == '/' ? "" : "/", location, sep,
	                 d);
}

static int
push_blob(struct reg *r, const char *root, const struct oci_desc *d, const char *kind,
          struct shoal_err *err)
{
	cleanup_free char *url = xasprintf("%s/v2/%s/blobs/%s", r->base, r->repo, d->digest);
	cleanup_free char *post = xasprintf("%s/v2/%s/blobs/uploads/", r->base, r->repo);
	cleanup_free char *path = xasprintf("%s/blobs/sha256/%s", root, d->digest + 7);
	cleanup_free char *put = NULL;
	char what[64], a[40];
	struct sink k = {.fd = -1, .max = ERRBODY_MAX, .want = -1};
	struct resp rs = {0};
	struct req q = {.method = "HEAD", .url = url, .what = what, .follow = 1};
	FILE *f = NULL;
	struct stat st;
	int rc = -1;

	snprintf(what, sizeof(what), "%s %s", kind, digest_short(d->digest, a, sizeof(a)));
	r->stats->blobs++;
	if (reg_request(r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status == 200) {
		rc = 0;
		goto out;
	}
	if (rs.status != 404) {
		status_error(r, &q, &k, &rs, err);
		goto out;
	}
	f = fopen(path, "re");
	if (f == NULL || fstat(fileno(f), &st) == -1) {
		err_set(err, errno, "%s: open %s", what, path);
		goto out;
	}
	q = (struct req){.method = "POST", .url = post, .what = what};
	if (reg_request(r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status != 202 || rs.location[0] == '\0') {
		status_error(r, &q, &k, &rs, err);
		goto out;
	}
	put = upload_url(r, rs.location, d->digest);
	q = (struct req){.method = "PUT",
	                 .url = put,
	                 .what = what,
	                 .upload = f,
	                 .upload_len = (uint64_t)st.st_size};
	q.headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	rc = reg_request(r, &q, &k, &rs, err);
	curl_slist_free_all(q.headers);
	if (rc == -1)
		goto out;
	rc = -1;
	if (rs.status != 201) {
		status_error(r, &q, &k, &rs, err);
		goto out;
	}
	r->stats->blobs_fetched++;
	r->stats->bytes += (uint64_t)st.st_size;
	rc = 0;
out:
	if (f)
		fclose(f);
	sink_free(&k);
	resp_clear(&rs);
	return rc;
}

int
registry_push(struct image_store *s, const char *image, const char *refstr,
              const struct registry_opts *o, struct registry_stats *stats, struct shoal_err *err)
{
	const char *root = image_store_root(s);
	struct registry_stats local = {0};
	struct reference ref;
	struct reg r;
	struct image *img = NULL;
	cleanup_free char *mpath = NULL;
	cleanup_free char *mtext = NULL;
	cleanup_free char *url = NULL;
	cleanup_free char *ctype = NULL;
	cleanup_free char *what = NULL;
	struct oci_manifest m = {0};
	struct sink k = {.fd = -1, .max = ERRBODY_MAX, .want = -1};
	struct resp rs = {0};
	struct req q = {.method = "PUT"};
	const char *mt;
	int have_m = 0, rc = -1;

	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	if (reference_parse(refstr, &ref, err) == -1)
		return -1;
	if (reg_open(&r, &ref, o, "pull,push", stats, err) == -1) {
		reference_free(&ref);
		return -1;
	}
	img = image_get(s, image, err);
	if (img == NULL)
		goto out;
	mpath = xasprintf("%s/blobs/sha256/%s", root, img->digest + 7);
	mtext = util_read_file(mpath, NULL, err);
	if (mtext == NULL)
		goto out;
	mt = registry_manifest_type(mtext, NULL, err);
	if (mt == NULL || oci_parse_manifest(mtext, mt, &m, err) == -1)
		goto out;
	have_m = 1;
	snprintf(stats->digest, sizeof(stats->digest), "%s", img->digest);
	if (push_blob(&r, root, &m.config, "config", err) == -1)
		goto out;
	for (size_t i = 0; i < m.nlayers; i++)
		if (push_blob(&r, root, &m.layers[i], "layer", err) == -1)
			goto out;
	url = xasprintf("%s/v2/%s/manifests/%s", r.base, r.repo, ref.tag ? ref.tag : ref.digest);
	what = xasprintf("manifest %s", refstr);
	ctype = xasprintf("Content-Type: %s", mt);
	q.url = url;
	q.what = what;
	q.body = mtext;
	q.body_len = strlen(mtext);
	q.headers = curl_slist_append(NULL, ctype);
	if (reg_request(&r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status != 201) {
		status_error(&r, &q, &k, &rs, err);
		goto out;
	}
	rc = 0;
out:
	if (rc == -1)
		err_prefix(err, "push %s", refstr);
	curl_slist_free_all(q.headers);
	sink_free(&k);
	resp_clear(&rs);
	if (have_m)
		oci_manifest_free(&m);
	image_free(img);
	reg_free(&r);
	reference_free(&ref);
	return rc;
}
