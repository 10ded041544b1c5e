#ifndef SHOAL_COMMON_ADMIT_H
#define SHOAL_COMMON_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/*
 * Admission of a new connection before any work is spent on it (no crypto, no buffer): a
 * listener asks admit_take() right after accept() and closes the socket at once when told
 * no. Three limits:
 *   - unauthenticated (pre-handshake) connections in all, so idle sockets cannot take every
 *     fd of the daemon;
 *   - unauthenticated connections per source address, so one host cannot take that whole
 *     allowance from everyone else;
 *   - a token bucket of new connections per source address, so one host cannot make the
 *     daemon run a handshake (a signature, two X25519) thousands of times a second.
 * A connection stops counting as unauthenticated with admit_release() (its handshake
 * completed, or it closed before that). Loopback sources (127/8, ::1) are exempt from the
 * per-source limits: they are processes of this host's own network namespace (containers
 * have their own), and benchmarks simulate thousands of nodes from there.
 *
 * Single-threaded: the owner's event loop calls every function.
 */

struct admit_limits {
	unsigned max_unauth;         /* unauthenticated connections in all; 0 = 1024 */
	unsigned max_unauth_per_src; /* per source address; 0 = 32 */
	unsigned rate_per_src;       /* new connections per second per source; 0 = 50 */
	unsigned burst_per_src;      /* bucket size; 0 = 2 x rate */
};

enum admit_verdict {
	ADMIT_OK = 0,
	ADMIT_FULL,     /* max_unauth reached */
	ADMIT_SRC_FULL, /* max_unauth_per_src reached for this source */
	ADMIT_SRC_RATE, /* this source's bucket is empty */
};

struct admit;

struct admit *admit_new(const struct admit_limits *limits);
void admit_free(struct admit *a);

/* Count one new unauthenticated connection from sa, or say why not (nothing counted then). */
enum admit_verdict admit_take(struct admit *a, const struct sockaddr *sa, int64_t now_ms);

/* The connection admitted from sa is no longer unauthenticated (ready, or closed). */
void admit_release(struct admit *a, const struct sockaddr *sa);

/* Forget sources with nothing open and a full bucket (call now and then, e.g. every 10 s). */
void admit_expire(struct admit *a, int64_t now_ms);

/* "too many unauthenticated connections", ... for log lines. */
const char *admit_verdict_str(enum admit_verdict v);

/* Unauthenticated connections counted now. */
unsigned admit_unauth(const struct admit *a);

#endif
