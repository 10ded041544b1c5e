#ifndef SHOAL_COMMON_SCHEDLIST_H
#define SHOAL_COMMON_SCHEDLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h" /* SHOAL_ENOTLEADER: a follower's Error code */

/*
 * Every scheduler a client knows (`--scheduler H1:7100,H2:7100,H3:7100`) and which one to
 * talk to. With several schedulers one leads; a follower answers every request with an Error
 * saying who leads (schedlist_not_leader), and the client goes there. A single address is the
 * one scheduler of today and behaves exactly as before.
 *
 * Two users: the agent keeps a cursor (schedlist_target, _failed, _redirect, _connected) over
 * its reconnects; the CLI walks the list once per command (schedlist_walk).
 */

#define SCHEDLIST_MAX      16
#define SCHEDLIST_HOST_MAX 256
/* "host:port" as text: what a follower names and what error messages print. */
#define SCHEDLIST_ADDR_MAX (SCHEDLIST_HOST_MAX + 8)

struct sched_addr {
	char host[SCHEDLIST_HOST_MAX];
	uint16_t port;
};

struct schedlist {
	struct sched_addr addr[SCHEDLIST_MAX];
	size_t n;
	size_t cur;                 /* the list's next entry to try */
	struct sched_addr redirect; /* the leader a follower named, tried next, once */
	bool has_redirect;
	bool via_redirect; /* the session in place came through a redirect: cur already moved */
};

/*
 * Parse "HOST:PORT[,HOST:PORT...]" (blanks around entries are ignored, duplicates are
 * dropped). An empty HOST becomes default_host when it is not NULL, else is an error (an
 * agent must name a host). One entry keeps util_parse_hostport's errors word for word.
 */
int schedlist_parse(struct schedlist *l, const char *spec, const char *default_host,
                    struct shoal_err *err);

/* "host:port" of a into buf. */
const char *schedlist_addr_str(const struct sched_addr *a, char *buf, size_t len);

/*
 * Is this Error a follower's "not the leader"? Then *leader is who leads ("host:port"),
 * "" when no one does (an election under way, etcd out of quorum).
 */
bool schedlist_not_leader(uint32_t code, const char *leader_field, const char **leader);

/* ---- the agent's cursor ---- */

/* Where to connect now: the pending redirect, else the list's current entry. */
const struct sched_addr *schedlist_target(struct schedlist *l);
/* The target did not take us (unreachable, closed, refused): the next entry next time. */
void schedlist_failed(struct schedlist *l);
/*
 * A follower named leader: connect there next, at once. Returns true when the caller should
 * go at once; false when there is no one to go to (leader "" or unparsable) or the target
 * that named it was itself a redirect (two followers naming each other must not make a busy
 * loop): then the caller backs off and the list moves on.
 */
bool schedlist_redirect(struct schedlist *l, const char *leader);
/* Registered with the target: a later loss starts over from the list's next entry. */
void schedlist_connected(struct schedlist *l);

/* ---- the CLI's walk ---- */

enum sched_try {
	SCHED_TRY_OK = 0,      /* answered; done */
	SCHED_TRY_FAILED,      /* failed after the request went out: final, never retried */
	SCHED_TRY_UNREACHABLE, /* nothing was sent: the next scheduler may be tried */
	SCHED_TRY_NOT_LEADER,  /* a follower; leader filled ("" when none leads) */
};

/*
 * One attempt at host:port. On SCHED_TRY_NOT_LEADER fill leader (at most leaderlen bytes);
 * on FAILED and UNREACHABLE fill err with a message naming host:port.
 */
typedef enum sched_try (*sched_try_fn)(const struct sched_addr *to, void *arg, char *leader,
                                       size_t leaderlen, struct shoal_err *err);

/*
 * Try each scheduler in turn until one answers; a follower naming its leader is followed
 * once, at once. 0 when one answered; -1 with err otherwise: one scheduler's own error
 * when the list has one, else "no scheduler answers" or "no scheduler leads" with what each
 * one said.
 */
int schedlist_walk(const struct schedlist *l, sched_try_fn fn, void *arg, struct shoal_err *err);

#endif
