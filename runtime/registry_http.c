/*
 * The registry client's HTTP side: one libcurl handle per registry and repository, a request
 * with its response headers and body (to memory or a file, hashed as it arrives), and the
 * auth challenge: Basic, or a Bearer token fetched from the realm the challenge names.
 */
#include "registry.h"
#include "registry_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sodium.h>

#include "err.h"
#include "fdio.h"
#include "log.h"
#include "reference.h"
#include "util.h"

void
registry_http_resp_clear(struct resp *r)
{
	free(r->www_auth);
	memset(r, 0, sizeof(*r));
}

void
registry_http_sink_free(struct sink *k)
{
	free(k->buf);
	free(k->errbody);
	k->buf = k->errbody = NULL;
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
		registry_http_resp_clear(r);
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
void
registry_http_progress(struct reg *r, int force)
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
		registry_http_progress(k->progress, 0);
	return n;
}

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
int
registry_http_request(struct reg *r, struct req *q, struct sink *k, struct resp *rs,
                      struct shoal_err *err)
{
	for (int attempt = 0;; attempt++) {
		CURLcode rc;

		registry_http_resp_clear(rs);
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
int
registry_http_status_error(struct reg *r, struct req *q, struct sink *k, struct resp *rs,
                           struct shoal_err *err)
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

char *
registry_http_escape(CURL *c, const char *s)
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
	esc_scope = registry_http_escape(r->curl, scope);
	svc = c.service ? registry_http_escape(r->curl, c.service) : NULL;
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
	registry_http_sink_free(&k);
	registry_http_resp_clear(&rs);
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

void
registry_http_free(struct reg *r)
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

int
registry_http_open(struct reg *r, const struct reference *ref, const struct registry_opts *o,
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
		registry_http_free(r);
		return -1;
	}
	r->have_cred = found;
	r->curl = curl_easy_init();
	if (r->curl == NULL) {
		registry_http_free(r);
		return err_set(err, 0, "libcurl: cannot create a handle");
	}
	return 0;
}
