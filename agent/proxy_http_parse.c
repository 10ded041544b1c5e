/* The HTTP mode's parser (see proxy_http_parse.h): pure functions over bytes, no I/O. */
#include "proxy_http_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* RFC 9110 tchar */
static bool
ph_tchar(unsigned char ch)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch != 0 && strchr(extra, ch) != NULL);
}

size_t
proxy_http_parse_head_end(const char *buf, size_t len, size_t *scan)
{
	size_t i = *scan > 3 ? *scan - 3 : 0;

	for (; i + 4 <= len; i++) {
		const char *p = memchr(buf + i, '\r', len - i);

		if (p == NULL)
			break;
		i = (size_t)(p - buf);
		if (i + 4 <= len && memcmp(p, "\r\n\r\n", 4) == 0)
			return i + 4;
	}
	*scan = len;
	return 0;
}

size_t
proxy_http_parse_resp_head_end(const char *buf, size_t len, size_t *scan)
{
	size_t i = *scan > 2 ? *scan - 2 : 0;

	for (; i + 2 <= len; i++) {
		const char *p = memchr(buf + i, '\n', len - i);

		if (p == NULL)
			break;
		i = (size_t)(p - buf);
		if (i + 2 <= len && p[1] == '\n')
			return i + 2;
		if (i + 3 <= len && p[1] == '\r' && p[2] == '\n')
			return i + 3;
	}
	*scan = len;
	return 0;
}

static bool
ph_ieq(const char *a, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

/* Does the comma-separated list v[0..n) hold token tok (case-insensitive)? */
static bool
ph_has_token(const char *v, size_t n, const char *tok)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (ph_ieq(v + s, e - s, tok))
			return true;
	}
	return false;
}

struct ph_fields {
	bool conn_close, conn_keep, conn_upgrade;
	bool has_cl, has_te, te_chunked_last, te_only_chunked;
	uint64_t cl;
	size_t xff_end;
	bool has_xfp;
};

/*
 * The header lines of a head from p (just past the start line) to the empty line that ends
 * at end. 0, or -1 on anything malformed: a bare CR or LF, a line without a colon, a name
 * that is not a token, whitespace before the colon, obs-fold, control bytes in a value,
 * Content-Length that is not digits or differs from an earlier one.
 */
static int
ph_fields(const char *head, size_t p, size_t end, bool lenient, struct ph_fields *f)
{
	memset(f, 0, sizeof(*f));
	while (p + 1 <= end) {
		size_t ns = p, ne, vs, ve, eol, next;

		if (lenient && head[p] == '\n')
			return p + 1 == end ? 0 : -1;
		if (head[p] == '\r')
			return p + 2 == end && head[p + 1] == '\n' ? 0 : -1;
		while (p < end && ph_tchar((unsigned char)head[p]))
			p++;
		ne = p;
		if (ne == ns || p >= end || head[p] != ':')
			return -1;
		p++;
		while (p < end && (head[p] == ' ' || head[p] == '\t'))
			p++;
		vs = p;
		while (p < end && head[p] != '\r' && !(lenient && head[p] == '\n')) {
			unsigned char ch = (unsigned char)head[p];

			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return -1;
			p++;
		}
		if (p < end && head[p] == '\n') {
			next = p + 1;
		} else {
			if (p + 1 >= end || head[p + 1] != '\n')
				return -1;
			next = p + 2;
		}
		eol = p;
		ve = eol;
		while (ve > vs && (head[ve - 1] == ' ' || head[ve - 1] == '\t'))
			ve--;
		p = next;
		const char *name = head + ns, *v = head + vs;
		size_t nl = ne - ns, vl = ve - vs;

		if (ph_ieq(name, nl, "content-length")) {
			uint64_t x = 0;

			if (vl == 0 || vl > 18)
				return -1;
			for (size_t k = 0; k < vl; k++) {
				if (v[k] < '0' || v[k] > '9')
					return -1;
				x = x * 10 + (uint64_t)(v[k] - '0');
			}
			if (f->has_cl && f->cl != x)
				return -1;
			f->has_cl = true;
			f->cl = x;
		} else if (ph_ieq(name, nl, "transfer-encoding")) {
			size_t e = vl;

			/* The last coding decides the framing; "chunked" alone is all a request
			 * may use here. */
			while (e > 0 && v[e - 1] != ',')
				e--;
			size_t s = e;
			while (s < vl && (v[s] == ' ' || v[s] == '\t'))
				s++;
			f->te_chunked_last = ph_ieq(v + s, vl - s, "chunked");
			f->te_only_chunked = !f->has_te && ph_ieq(v, vl, "chunked");
			f->has_te = true;
		} else if (ph_ieq(name, nl, "connection")) {
			f->conn_close |= ph_has_token(v, vl, "close");
			f->conn_keep |= ph_has_token(v, vl, "keep-alive");
			f->conn_upgrade |= ph_has_token(v, vl, "upgrade");
		} else if (ph_ieq(name, nl, "x-forwarded-for")) {
			f->xff_end = ve;
		} else if (ph_ieq(name, nl, "x-forwarded-proto")) {
			f->has_xfp = true;
		}
	}
	return -1;
}

/* "HTTP/1.x" at s: x, or -1. */
static int
ph_version(const char *s)
{
	if (memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1'))
		return -1;
	return s[7] - '0';
}

int
proxy_http_parse_request(const char *buf, size_t head_len, struct proxy_http_msg *m)
{
	struct ph_fields f;
	size_t p = 0, ms, me, ts;

	memset(m, 0, sizeof(*m));
	m->head_len = head_len;
	if (head_len < 4 || memcmp(buf + head_len - 4, "\r\n\r\n", 4) != 0)
		return 400;
	ms = p;
	while (p < head_len && ph_tchar((unsigned char)buf[p]))
		p++;
	me = p;
	if (me == ms || p >= head_len || buf[p] != ' ')
		return 400;
	p++;
	ts = p;
	while (p < head_len && (unsigned char)buf[p] > 0x20 && (unsigned char)buf[p] < 0x7f)
		p++;
	if (p == ts || p + 10 > head_len || buf[p] != ' ')
		return 400;
	p++;
	m->minor = ph_version(buf + p);
	if (m->minor < 0 || buf[p + 8] != '\r' || buf[p + 9] != '\n')
		return 400;
	p += 10;
	if (ph_ieq(buf + ms, me - ms, "CONNECT"))
		return 501;
	m->is_head = me - ms == 4 && memcmp(buf + ms, "HEAD", 4) == 0;
	if (ph_fields(buf, p, head_len, false, &f) == -1)
		return 400;
	if (f.has_te) {
		/* Two framings a backend might choose between, or a coding the proxy cannot
		 * frame: refused, never guessed (RFC 9112 6.1). */
		if (f.has_cl || m->minor == 0)
			return 400;
		if (!f.te_only_chunked)
			return 501;
		m->body = PROXY_HTTP_BODY_CHUNKED;
	} else if (f.has_cl && f.cl > 0) {
		m->body = PROXY_HTTP_BODY_LENGTH;
		m->length = f.cl;
	}
	m->keep_alive = m->minor == 1 ? !f.conn_close : f.conn_keep && !f.conn_close;
	m->upgrade = f.conn_upgrade;
	m->xff_end = f.xff_end;
	m->has_xfp = f.has_xfp;
	return 0;
}

int
proxy_http_parse_response(const char *buf, size_t head_len, const struct proxy_http_msg *req,
                          struct proxy_http_msg *m)
{
	struct ph_fields f;
	size_t p;

	memset(m, 0, sizeof(*m));
	m->head_len = head_len;
	/* Servers get the leniency RFC 9112 2.2 allows: bare LF line ends (busybox httpd passes
	 * a CGI's own LF lines on). What they say only frames their answer to us. */
	if (head_len < 14 || buf[head_len - 1] != '\n')
		return -1;
	m->minor = ph_version(buf);
	if (m->minor < 0 || buf[8] != ' ')
		return -1;
	for (int k = 9; k < 12; k++)
		if (buf[k] < '0' || buf[k] > '9')
			return -1;
	m->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if (m->status < 100)
		return -1;
	if (buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n')
		return -1;
	p = 12;
	while (p < head_len && buf[p] != '\r' && buf[p] != '\n') {
		unsigned char ch = (unsigned char)buf[p];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return -1;
		p++;
	}
	if (p < head_len && buf[p] == '\r')
		p++;
	if (p >= head_len || buf[p] != '\n')
		return -1;
	if (ph_fields(buf, p + 1, head_len, true, &f) == -1)
		return -1;
	m->keep_alive = m->minor == 1 ? !f.conn_close : f.conn_keep && !f.conn_close;
	m->upgrade = f.conn_upgrade;
	if (m->status < 200 || m->status == 204 || m->status == 304 || req->is_head) {
		m->body = PROXY_HTTP_BODY_NONE;
	} else if (f.has_te) {
		m->body = f.te_chunked_last ? PROXY_HTTP_BODY_CHUNKED : PROXY_HTTP_BODY_CLOSE;
	} else if (f.has_cl) {
		m->body = f.cl > 0 ? PROXY_HTTP_BODY_LENGTH : PROXY_HTTP_BODY_NONE;
		m->length = f.cl;
	} else {
		m->body = PROXY_HTTP_BODY_CLOSE;
	}
	if (m->body == PROXY_HTTP_BODY_CLOSE)
		m->keep_alive = false;
	return 0;
}

size_t
proxy_http_parse_rewrite_request(const char *head, const struct proxy_http_msg *m,
                                 const char *client_ip, bool v6, char *out)
{
	size_t body_end = m->head_len - 2, n = 0;
	char add[PROXY_HTTP_ADD_MAX];
	int k;

	if (m->xff_end) {
		memcpy(out, head, m->xff_end);
		n = m->xff_end;
		n += (size_t)snprintf(out + n, 64, ", %s", client_ip);
		memcpy(out + n, head + m->xff_end, body_end - m->xff_end);
		n += body_end - m->xff_end;
		k = 0;
	} else {
		memcpy(out, head, body_end);
		n = body_end;
		k = snprintf(add, sizeof(add), "X-Forwarded-For: %s\r\n", client_ip);
	}
	if (!m->has_xfp)
		k += snprintf(add + k, sizeof(add) - (size_t)k, "X-Forwarded-Proto: http\r\n");
	k += snprintf(add + k, sizeof(add) - (size_t)k,
	              v6 ? "Forwarded: for=\"[%s]\";proto=http\r\n\r\n"
	                 : "Forwarded: for=%s;proto=http\r\n\r\n",
	              client_ip);
	memcpy(out + n, add, (size_t)k);
	return n + (size_t)k;
}

size_t
proxy_http_parse_rewrite_response(const char *head, const struct proxy_http_msg *m, bool chunk,
                                  char *out)
{
	size_t p = 0, n = 0;
	bool status = true;

	/* Line by line, each ending CRLF; the status line's version becomes 1.1
	 * (parse_response checked "HTTP/1.x "). */
	while (p < m->head_len) {
		const char *line = head + p;
		const char *nl = memchr(line, '\n', m->head_len - p);
		size_t len = (size_t)(nl - line), k = len;

		p += len + 1;
		if (k > 0 && line[k - 1] == '\r')
			k--;
		if (k == 0)
			break;
		if (status || (strncasecmp(line, "connection:", 11) != 0 &&
		               strncasecmp(line, "keep-alive:", 11) != 0)) {
			memcpy(out + n, line, k);
			if (status)
				out[n + 7] = '1';
			memcpy(out + n + k, "\r\n", 2);
			n += k + 2;
		}
		status = false;
	}
	if (chunk) {
		memcpy(out + n, "Transfer-Encoding: chunked\r\n", 28);
		n += 28;
	}
	memcpy(out + n, "\r\n", 2);
	return n + 2;
}

enum {
	PH_CH_SIZE = 0, /* hex digits */
	PH_CH_EXT,      /* ;ext up to CR */
	PH_CH_SIZE_LF,
	PH_CH_DATA,
	PH_CH_DATA_CR,
	PH_CH_DATA_LF,
	PH_CH_TRAILER,    /* start of a trailer line (or the final CRLF) */
	PH_CH_TRAILER_IN, /* inside a trailer line */
	PH_CH_TRAILER_LF,
	PH_CH_FINAL_LF,
};

ssize_t
proxy_http_parse_chunk(struct proxy_http_chunk *st, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && !st->done) {
		char ch = p[i];

		switch (st->state) {
		case PH_CH_SIZE: {
			int d = util_hexval(ch);

			if (d >= 0) {
				/* 15 hex digits: more than any body, and no overflow. */
				if (++st->digits > 15)
					return -1;
				st->left = st->left * 16 + (uint64_t)d;
			} else if (st->digits == 0) {
				return -1;
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				st->state = PH_CH_EXT;
			} else if (ch == '\r') {
				st->state = PH_CH_SIZE_LF;
			} else {
				return -1;
			}
			i++;
			break;
		}
		case PH_CH_EXT:
			if (ch == '\r')
				st->state = PH_CH_SIZE_LF;
			else if ((unsigned char)ch < 0x20 && ch != '\t')
				return -1;
			i++;
			break;
		case PH_CH_SIZE_LF:
			if (ch != '\n')
				return -1;
			i++;
			st->digits = 0;
			st->state = st->left ? PH_CH_DATA : PH_CH_TRAILER;
			break;
		case PH_CH_DATA: {
			size_t take = n - i < st->left ? n - i : (size_t)st->left;

			i += take;
			st->left -= take;
			if (st->left == 0)
				st->state = PH_CH_DATA_CR;
			break;
		}
		case PH_CH_DATA_CR:
			if (ch != '\r')
				return -1;
			st->state = PH_CH_DATA_LF;
			i++;
			break;
		case PH_CH_DATA_LF:
			if (ch != '\n')
				return -1;
			st->state = PH_CH_SIZE;
			i++;
			break;
		case PH_CH_TRAILER:
			if (ch == '\r')
				st->state = PH_CH_FINAL_LF;
			else if ((unsigned char)ch < 0x20)
				return -1;
			else
				st->state = PH_CH_TRAILER_IN;
			i++;
			break;
		case PH_CH_TRAILER_IN:
			if (ch == '\r')
				st->state = PH_CH_TRAILER_LF;
			else if ((unsigned char)ch < 0x20 && ch != '\t')
				return -1;
			i++;
			break;
		case PH_CH_TRAILER_LF:
			if (ch != '\n')
				return -1;
			st->state = PH_CH_TRAILER;
			i++;
			break;
		case PH_CH_FINAL_LF:
			if (ch != '\n')
				return -1;
			st->done = true;
			i++;
			break;
		default:
			return -1;
		}
	}
	return (ssize_t)i;
}
