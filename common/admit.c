#include "admit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

#define ADMIT_BUCKETS 1024
/* Sources remembered at most: past that a new source is only held to the global limit
 * (distinct addresses each cost the attacker a real TCP handshake). */
#define ADMIT_MAX_SOURCES 65536

struct admit_src {
	struct admit_src *next;
	uint8_t key[16]; /* IPv6, or IPv4-mapped */
	unsigned unauth;
	double tokens;
	int64_t last_ms; /* when tokens was last refilled */
};

struct admit {
	struct admit_limits lim;
	unsigned unauth;
	size_t nsrc;
	struct admit_src *buckets[ADMIT_BUCKETS];
};

struct admit *
admit_new(const struct admit_limits *limits)
{
	struct admit *a = xcalloc(1, sizeof(*a));

	if (limits != NULL)
		a->lim = *limits;
	if (a->lim.max_unauth == 0)
		a->lim.max_unauth = 1024;
	if (a->lim.max_unauth_per_src == 0)
		a->lim.max_unauth_per_src = 32;
	if (a->lim.rate_per_src == 0)
		a->lim.rate_per_src = 50;
	if (a->lim.burst_per_src == 0)
		a->lim.burst_per_src = 2 * a->lim.rate_per_src;
	return a;
}

void
admit_free(struct admit *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < ADMIT_BUCKETS; i++) {
		struct admit_src *s = a->buckets[i], *next;

		for (; s; s = next) {
			next = s->next;
			free(s);
		}
	}
	free(a);
}

/* The source's key; false for loopback and unknown families (no per-source limits). */
static bool
admit_key(const struct sockaddr *sa, uint8_t key[16])
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127)
			return false;
		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return false;
		memcpy(key, &sin6->sin6_addr, 16);
		return !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) || key[12] != 127;
	}
	return false;
}

static size_t
admit_hash(const uint8_t key[16])
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ull;
	return (size_t)(h % ADMIT_BUCKETS);
}

static struct admit_src *
admit_find(struct admit *a, const uint8_t key[16], bool create, int64_t now)
{
	size_t h = admit_hash(key);
	struct admit_src *s;

	for (s = a->buckets[h]; s; s = s->next)
		if (memcmp(s->key, key, 16) == 0)
			return s;
	if (!create || a->nsrc >= ADMIT_MAX_SOURCES)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	memcpy(s->key, key, 16);
	s->tokens = a->lim.burst_per_src;
	s->last_ms = now;
	s->next = a->buckets[h];
	a->buckets[h] = s;
	a->nsrc++;
	return s;
}

static void
admit_refill(const struct admit *a, struct admit_src *s, int64_t now)
{
	if (now > s->last_ms) {
		s->tokens += (double)(now - s->last_ms) * a->lim.rate_per_src / 1000.0;
		if (s->tokens > a->lim.burst_per_src)
			s->tokens = a->lim.burst_per_src;
		s->last_ms = now;
	}
}

enum admit_verdict
admit_take(struct admit *a, const struct sockaddr *sa, int64_t now_ms)
{
	struct admit_src *s = NULL;
	uint8_t key[16];

	if (admit_key(sa, key)) {
		s = admit_find(a, key, true, now_ms);
		if (s != NULL) {
			admit_refill(a, s, now_ms);
			/* A refused attempt costs a token too: a client that hammers stays out
			 * until it slows down. */
			if (s->tokens < 1.0)
				return ADMIT_SRC_RATE;
			s->tokens -= 1.0;
			if (s->unauth >= a->lim.max_unauth_per_src)
				return ADMIT_SRC_FULL;
		}
	}
	if (a->unauth >= a->lim.max_unauth)
		return ADMIT_FULL;
	a->unauth++;
	if (s != NULL)
		s->unauth++;
	return ADMIT_OK;
}

void
admit_release(struct admit *a, const struct sockaddr *sa)
{
	struct admit_src *s;
	uint8_t key[16];

	if (a->unauth > 0)
		a->unauth--;
	if (admit_key(sa, key) && (s = admit_find(a, key, false, 0)) != NULL && s->unauth > 0)
		s->unauth--;
}

void
admit_expire(struct admit *a, int64_t now_ms)
{
	for (size_t i = 0; i < ADMIT_BUCKETS; i++) {
		struct admit_src **sp = &a->buckets[i];

		while (*sp) {
			struct admit_src *s = *sp;

			admit_refill(a, s, now_ms);
			if (s->unauth == 0 && s->tokens >= a->lim.burst_per_src) {
				*sp = s->next;
				free(s);
				a->nsrc--;
			} else {
				sp = &s->next;
			}
		}
	}
}

const char *
admit_verdict_str(enum admit_verdict v)
{
	switch (v) {
	case ADMIT_OK:
		return "admitted";
	case ADMIT_FULL:
		return "too many unauthenticated connections";
	case ADMIT_SRC_FULL:
		return "too many unauthenticated connections from this address";
	case ADMIT_SRC_RATE:
		return "too many new connections per second from this address";
	}
	return "?";
}

unsigned
admit_unauth(const struct admit *a)
{
	return a->unauth;
}
