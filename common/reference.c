#include "reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "util.h"

static int
is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int
is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

int
reference_tag_ok(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > 128 || !(is_alnum(t[0]) || t[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(is_alnum(t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return 0;
	return 1;
}

/* path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )* over [s, s+n). */
static const char *
component_problem(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0)
		return "empty path component";
	if (n == 2 && s[0] == '.' && s[1] == '.')
		return "\"..\" is not a path component";
	for (size_t k = 0; k < n; k++)
		if (s[k] >= 'A' && s[k] <= 'Z')
			return "repository name must be lowercase";
	while (i < n) {
		size_t start = i;
		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == start)
			return "a path component must start and end with a letter or digit, and "
			       "separators (., _, __, -) stand between them";
		if (i == n)
			return NULL;
		start = i;
		if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else if (s[i] == '_' && i + 1 < n && s[i + 1] == '_') {
			i += 2;
		} else if (s[i] == '.' || s[i] == '_') {
			i++;
		} else {
			return "invalid character in repository name";
		}
		if (i == n)
			return "a path component must start and end with a letter or digit, and "
			       "separators (., _, __, -) stand between them";
	}
	return NULL;
}

/* domain := host [":" port]; host: DNS labels of [A-Za-z0-9-] or "[IPv6]". */
static const char *
domain_problem(const char *s, size_t n)
{
	const char *colon;
	size_t hn;

	if (n == 0)
		return "empty registry host";
	if (s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (close == NULL || close == s + 1)
			return "invalid IPv6 registry host";
		/* Docker's ipv6address: \[[a-fA-F0-9:]+\] */
		for (const char *p = s + 1; p < close; p++)
			if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
			      (*p >= 'A' && *p <= 'F') || *p == ':'))
				return "invalid IPv6 registry host";
		hn = (size_t)(close - s) + 1;
		colon = hn < n ? s + hn : NULL;
		if (colon && *colon != ':')
			return "invalid registry host";
	} else {
		colon = memchr(s, ':', n);
		hn = colon ? (size_t)(colon - s) : n;
		for (size_t i = 0; i < hn;) {
			size_t start = i;
			while (i < hn && (is_alnum(s[i]) || s[i] == '-'))
				i++;
			if (i == start || s[start] == '-' || s[i - 1] == '-')
				return "invalid registry host (DNS labels of letters, digits and "
				       "inner hyphens)";
			if (i < hn && s[i] != '.')
				return "invalid character in registry host";
			if (i < hn && ++i == hn)
				return "registry host ends with a dot";
		}
	}
	if (colon) {
		size_t pn = n - hn - 1;
		unsigned long port = 0;

		if (pn == 0 || pn > 5)
			return "invalid registry port";
		for (size_t i = 0; i < pn; i++) {
			char c = colon[1 + i];
			if (c < '0' || c > '9')
				return "invalid registry port";
			port = port * 10 + (unsigned long)(c - '0');
		}
		if (port == 0 || port > 65535)
			return "registry port out of range";
	}
	return NULL;
}

static int
is_hex64(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[i] == '\0';
}

static char *
dupn(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void
reference_free(struct reference *r)
{
	if (r == NULL)
		return;
	free(r->domain);
	free(r->path);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

/* The reference as a message may quote it: at most 80 bytes, non-printables as '?', so a
 * hostile name cannot forge a log line. */
static void
quote(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < len && i < 80; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = '\0';
}

static int
fail(struct reference *r, const char *s, const char *why, struct shoal_err *err)
{
	char q[96];

	reference_free(r);
	quote(s, q, sizeof(q));
	return err_set(err, 0, "invalid reference \"%s\": %s", q, why);
}

int
reference_parse(const char *s, struct reference *r, struct shoal_err *err)
{
	cleanup_free char *name = NULL;
	const char *at, *slash, *colon, *first_slash, *rest;
	const char *why;
	size_t nlen;

	memset(r, 0, sizeof(*r));
	if (s == NULL || s[0] == '\0')
		return fail(r, "", "empty", err);
	if (strlen(s) > REFERENCE_NAME_MAX + 1 + 128 + 1 + 71)
		return fail(r, s, "too long", err);
	for (const char *p = s; *p; p++)
		if (!(is_alnum(*p) || strchr("._-/:@[]", *p)))
			return fail(r, s, "invalid character (allowed: a-z 0-9 . _ - / : @)", err);
	at = strchr(s, '@');
	if (at && strchr(at + 1, '@'))
		return fail(r, s, "more than one \"@\"", err);
	if (at) {
		const char *d = at + 1;
		if (strncmp(d, "sha256:", 7) != 0) {
			const char *c = strchr(d, ':');
			return fail(r, s,
			            c ? "unsupported digest algorithm (want sha256)"
			              : "invalid digest (want @sha256:<64 hex>)",
			            err);
		}
		if (!is_hex64(d + 7))
			return fail(r, s, "invalid digest (want sha256: and 64 lowercase hex)",
			            err);
		r->digest = xstrdup(d);
	}
	nlen = at ? (size_t)(at - s) : strlen(s);
	name = dupn(s, nlen);
	/* A ":" after the last "/" starts the tag; one before it is a registry port. */
	slash = strrchr(name, '/');
	colon = strrchr(slash ? slash : name, ':');
	if (colon) {
		if (!reference_tag_ok(colon + 1))
			return fail(
			    r, s,
			    "invalid tag (letters, digits, _ . -, at most 128, not starting "
			    "with . or -)",
			    err);
		r->tag = xstrdup(colon + 1);
		name[colon - name] = '\0';
	}
	if (name[0] == '\0')
		return fail(r, s, "missing repository name", err);
	if (strlen(name) > REFERENCE_NAME_MAX)
		return fail(r, s, "repository name longer than 255 characters", err);
	/* Docker's rule for a domain: the first of several components holding "." or ":", or
	 * being "localhost". Docker also takes one with uppercase letters for a host; that is
	 * almost always a typo for a repository, so it is refused here. */
	first_slash = strchr(name, '/');
	if (first_slash &&
	    (memchr(name, '.', (size_t)(first_slash - name)) ||
	     memchr(name, ':', (size_t)(first_slash - name)) ||
	     (first_slash - name == 9 && strncmp(name, "localhost", 9) == 0) || name[0] == '[')) {
		size_t dn = (size_t)(first_slash - name);
		if (dn == 2 && name[0] == '.' && name[1] == '.')
			return fail(r, s, "\"..\" is not a path component", err);
		if ((why = domain_problem(name, dn)) != NULL)
			return fail(r, s, why, err);
		r->domain = dupn(name, dn);
		rest = first_slash + 1;
	} else {
		if (strchr(name, ':'))
			return fail(r, s, "invalid character in repository name", err);
		r->domain = xstrdup(REFERENCE_DEFAULT_DOMAIN);
		rest = name;
		if (is_hex64(name))
			return fail(r, s, "a 64-hex name looks like an image ID, not a repository",
			            err);
	}
	if (strcmp(r->domain, "index.docker.io") == 0) {
		free(r->domain);
		r->domain = xstrdup(REFERENCE_DEFAULT_DOMAIN);
	}
	for (const char *p = rest;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if ((why = component_problem(p, n)) != NULL)
			return fail(r, s, why, err);
		if (e == NULL)
			break;
		p = e + 1;
	}
	if (strcmp(r->domain, REFERENCE_DEFAULT_DOMAIN) == 0 && strchr(rest, '/') == NULL)
		r->path = xasprintf("library/%s", rest);
	else
		r->path = xstrdup(rest);
	if (strlen(r->domain) + 1 + strlen(r->path) > REFERENCE_NAME_MAX)
		return fail(r, s, "repository name longer than 255 characters", err);
	if (r->tag == NULL && r->digest == NULL)
		r->tag = xstrdup("latest");
	return 0;
}

char *
reference_name(const struct reference *r)
{
	return xasprintf("%s/%s", r->domain, r->path);
}

char *
reference_familiar_name(const struct reference *r)
{
	const char *p = r->path;
	size_t n = strcspn(p, "/");

	if (strcmp(r->domain, REFERENCE_DEFAULT_DOMAIN) != 0)
		return reference_name(r);
	/* docker.io/foo.com/bar must not read back as registry foo.com's bar (Docker's own
	 * familiar form has that ambiguity; the store keys images by this form). */
	if (p[n] == '/' && (memchr(p, '.', n) || (n == 9 && strncmp(p, "localhost", 9) == 0)))
		return reference_name(r);
	/* library/ goes, unless what remains would read as an image ID. */
	if (strncmp(p, "library/", 8) == 0 && strchr(p + 8, '/') == NULL && !is_hex64(p + 8))
		p += 8;
	return xstrdup(p);
}

static char *
with_suffix(char *name, const struct reference *r)
{
	char *s = xasprintf("%s%s%s%s%s", name, r->tag ? ":" : "", r->tag ? r->tag : "",
	                    r->digest ? "@" : "", r->digest ? r->digest : "");
	free(name);
	return s;
}

char *
reference_familiar(const struct reference *r)
{
	return with_suffix(reference_familiar_name(r), r);
}

char *
reference_string(const struct reference *r)
{
	return with_suffix(reference_name(r), r);
}
