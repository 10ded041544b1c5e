#include "dnsmsg.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define HDR 12

#define QR        0x8000
#define OPCODE    0x7800
#define AA        0x0400
#define TC        0x0200
#define RD        0x0100
#define RA        0x0080
#define TYPE_A    1
#define TYPE_ANY  255
#define CLASS_IN  1
#define CLASS_ANY 255

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

int
dnsmsg_parse_query(const uint8_t *q, size_t qlen, struct dnsmsg_question *out)
{
	size_t off = HDR, nl = 0;

	if (q == NULL || qlen < HDR + 5)
		return -1;
	uint16_t flags = get16(q + 2);
	/* A reply (or anything but a standard query with one question) is never answered: two
	 * resolvers must not bounce messages between them. */
	if ((flags & QR) || (flags & OPCODE) || get16(q + 4) != 1 || get16(q + 6) != 0)
		return -1;
	out->id = get16(q);
	for (;;) {
		if (off >= qlen)
			return -1;
		uint8_t len = q[off++];
		if (len == 0)
			break;
		/* Labels only: a question is never compressed, a pointer here is an attack. */
		if (len > 63 || off + len > qlen || nl + len + 1 > 255)
			return -1;
		if (nl > 0)
			out->name[nl++] = '.';
		for (size_t i = 0; i < len; i++) {
			uint8_t c = q[off + i];
			/* A dot or NUL inside a label would alias another name. */
			if (c == '.' || c == '\0')
				return -1;
			out->name[nl++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		off += len;
	}
	out->name[nl] = '\0';
	if (off + 4 > qlen)
		return -1;
	out->qtype = get16(q + off);
	out->qclass = get16(q + off + 2);
	out->end = off + 4;
	return 0;
}

static const struct dnsmsg_service *
find(const struct dnsmsg_table *t, const char *name, size_t len)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strncmp(t->v[mid].name, name, len);
		if (c == 0 && t->v[mid].name[len] != '\0')
			c = 1;
		if (c == 0)
			return &t->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Header and question of a reply to q (question copied as asked: the case a client used is
 * what it checks). Returns the offset after them. */
static size_t
reply_head(const uint8_t *q, const struct dnsmsg_question *qu, uint8_t *out, int rcode, bool aa)
{
	uint16_t flags = QR | RA | (get16(q + 2) & RD) | (aa ? AA : 0) | (uint16_t)(rcode & 15);

	put16(out, qu->id);
	put16(out + 2, flags);
	put16(out + 4, 1);
	put16(out + 6, 0);
	put16(out + 8, 0);
	put16(out + 10, 0);
	memcpy(out + HDR, q + HDR, qu->end - HDR);
	return qu->end;
}

size_t
dnsmsg_error(const uint8_t *q, size_t qlen, int rcode, uint8_t *out, size_t cap)
{
	struct dnsmsg_question qu;

	if (dnsmsg_parse_query(q, qlen, &qu) == -1 || qu.end > cap)
		return 0;
	return reply_head(q, &qu, out, rcode, false);
}

/* Strip the cluster domain: "web.shoal" -> "web" (length), *internal set when it was there. */
static size_t
strip_domain(const char *name, bool *internal)
{
	size_t n = strlen(name), d = strlen(DNSMSG_DOMAIN);

	*internal = false;
	if (n > d + 1 && name[n - d - 1] == '.' && strcmp(name + n - d, DNSMSG_DOMAIN) == 0) {
		*internal = true;
		return n - d - 1;
	}
	return n;
}

enum dnsmsg_verdict
dnsmsg_answer(const struct dnsmsg_table *t, const uint8_t *q, size_t qlen, uint8_t *out, size_t cap,
              size_t *outlen, uint32_t rotate)
{
	struct dnsmsg_question qu;
	const struct dnsmsg_service *svc;
	const struct in_addr *addrs;
	size_t naddrs, len, off;
	bool internal, tasks;
	const char *name;

	*outlen = 0;
	if (dnsmsg_parse_query(q, qlen, &qu) == -1 || qu.end > cap)
		return DNSMSG_DROP;
	len = strip_domain(qu.name, &internal);
	name = qu.name;
	tasks = len > 6 && strncmp(name, "tasks.", 6) == 0;
	if (tasks) {
		name += 6;
		len -= 6;
	}
	/* Ours: one label (a service name never holds a dot) after the optional "tasks.". */
	if (len == 0 || memchr(name, '.', len) != NULL)
		return internal ? (*outlen = reply_head(q, &qu, out, 3, true), DNSMSG_REPLY)
		                : DNSMSG_FORWARD;
	svc = find(t, name, len);
	if (svc == NULL) {
		if (!internal && !tasks)
			return DNSMSG_FORWARD;
		*outlen = reply_head(q, &qu, out, 3, true);
		return DNSMSG_REPLY;
	}
	off = reply_head(q, &qu, out, 0, true);
	if ((qu.qtype != TYPE_A && qu.qtype != TYPE_ANY) ||
	    (qu.qclass != CLASS_IN && qu.qclass != CLASS_ANY)) {
		*outlen = off;
		return DNSMSG_REPLY;
	}
	tasks |= svc->addr.s_addr == 0;
	addrs = tasks ? svc->tasks : &svc->addr;
	naddrs = tasks ? svc->ntasks : 1;
	uint16_t an = 0;
	for (size_t i = 0; i < naddrs; i++) {
		const struct in_addr *a = &addrs[(i + rotate) % naddrs];
		if (off + 16 > cap) {
			put16(out + 2, get16(out + 2) | TC);
			break;
		}
		put16(out + off, 0xc000 | HDR); /* the name: a pointer to the question's */
		put16(out + off + 2, TYPE_A);
		put16(out + off + 4, CLASS_IN);
		put16(out + off + 6, 0);
		put16(out + off + 8, DNSMSG_TTL);
		put16(out + off + 10, 4);
		memcpy(out + off + 12, &a->s_addr, 4);
		off += 16;
		an++;
	}
	put16(out + 6, an);
	*outlen = off;
	return DNSMSG_REPLY;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct dnsmsg_service *)a)->name,
	              ((const struct dnsmsg_service *)b)->name);
}

void
dnsmsg_table_sort(struct dnsmsg_table *t)
{
	if (t->n > 1)
		qsort(t->v, t->n, sizeof(*t->v), by_name);
}

void
dnsmsg_table_clear(struct dnsmsg_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		free(t->v[i].tasks);
	}
	free(t->v);
	t->v = NULL;
	t->n = 0;
}
