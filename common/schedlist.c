#include "schedlist.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "util.h"

static int
schedlist_parse_one(const char *s, const char *default_host, struct sched_addr *a,
                    struct shoal_err *err)
{
	if (util_parse_hostport(s, a->host, sizeof(a->host), &a->port, err) == -1)
		return -1;
	if (a->host[0] != '\0')
		return 0;
	if (default_host == NULL)
		return err_set(err, 0, "%s: needs a host", s);
	snprintf(a->host, sizeof(a->host), "%s", default_host);
	return 0;
}

int
schedlist_parse(struct schedlist *l, const char *spec, const char *default_host,
                struct shoal_err *err)
{
	char item[SCHEDLIST_ADDR_MAX + 64];
	const char *p = spec;

	memset(l, 0, sizeof(*l));
	if (strchr(spec, ',') == NULL) {
		/* One scheduler: exactly today's parsing and messages. */
		if (schedlist_parse_one(spec, default_host, &l->addr[0], err) == -1)
			return -1;
		l->n = 1;
		return 0;
	}
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		struct sched_addr a;
		bool dup = false;

		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0)
			return err_set(err, 0, "%s: empty entry in the list", spec);
		if (len >= sizeof(item))
			return err_set(err, 0, "%.*s...: entry too long", 40, p);
		memcpy(item, p, len);
		item[len] = '\0';
		if (schedlist_parse_one(item, default_host, &a, err) == -1)
			return -1;
		for (size_t i = 0; i < l->n; i++)
			if (l->addr[i].port == a.port && strcmp(l->addr[i].host, a.host) == 0)
				dup = true;
		if (!dup) {
			if (l->n == SCHEDLIST_MAX)
				return err_set(err, 0, "%s: more than %d schedulers", spec,
				               SCHEDLIST_MAX);
			l->addr[l->n++] = a;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}

const char *
schedlist_addr_str(const struct sched_addr *a, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%u", a->host, (unsigned)a->port);
	return buf;
}

bool
schedlist_not_leader(uint32_t code, const char *leader_field, const char **leader)
{
	if (code != SHOAL_ENOTLEADER)
		return false;
	*leader = leader_field != NULL ? leader_field : "";
	return true;
}

/* ---- the agent's cursor ---- */

const struct sched_addr *
schedlist_target(struct schedlist *l)
{
	if (l->has_redirect)
		return &l->redirect;
	return &l->addr[l->cur % l->n];
}

void
schedlist_failed(struct schedlist *l)
{
	/* A redirect is one attempt, and the list's cursor moved on when it was made; but when
	 * the list's next entry is the very scheduler that just failed, it is skipped too (a
	 * follower that still names a dead leader must not cost a second connect timeout). */
	if (l->has_redirect || l->via_redirect) {
		const struct sched_addr *next = &l->addr[l->cur % l->n];
		if (l->n > 1 && next->port == l->redirect.port &&
		    strcmp(next->host, l->redirect.host) == 0)
			l->cur = (l->cur + 1) % l->n;
		l->has_redirect = false;
		l->via_redirect = false;
		return;
	}
	l->cur = (l->cur + 1) % l->n;
}

bool
schedlist_redirect(struct schedlist *l, const char *leader)
{
	struct shoal_err err;
	struct sched_addr a;
	bool was_redirect = l->has_redirect;

	/* The target that said "not me" is done either way. */
	schedlist_failed(l);
	if (leader == NULL || leader[0] == '\0' || was_redirect)
		return false;
	if (schedlist_parse_one(leader, NULL, &a, &err) == -1)
		return false;
	l->redirect = a;
	l->has_redirect = true;
	return true;
}

void
schedlist_connected(struct schedlist *l)
{
	/* Once this session is lost, the list goes on from where it is: just past the follower
	 * that named this leader, or past this one when the list itself led here. */
	l->via_redirect = l->has_redirect;
	l->has_redirect = false;
}

/* ---- the CLI's walk ---- */

/* Append "; " and fmt to buf (its first entry without the separator), as far as it fits. */
static void __attribute__((format(printf, 3, 4)))
schedlist_note(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 3 >= len)
		return;
	if (used > 0) {
		memcpy(buf + used, "; ", 3);
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

int
schedlist_walk(const struct schedlist *l, sched_try_fn fn, void *arg, struct shoal_err *err)
{
	char notes[sizeof(err->msg)] = "", leader[SCHEDLIST_ADDR_MAX], where[SCHEDLIST_ADDR_MAX];
	bool redirected = false, follower = false;
	size_t attempts = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct sched_addr *to = &l->addr[i];
		struct sched_addr lead;
		enum sched_try r;

		leader[0] = '\0';
		r = fn(to, arg, leader, sizeof(leader), err);
		attempts++;
		schedlist_addr_str(to, where, sizeof(where));
		if (r == SCHED_TRY_OK)
			return 0;
		if (r == SCHED_TRY_FAILED)
			return -1;
		if (r == SCHED_TRY_UNREACHABLE) {
			schedlist_note(notes, sizeof(notes), "%s", err->msg);
			continue;
		}
		/* A follower. */
		follower = true;
		if (leader[0] == '\0') {
			schedlist_note(notes, sizeof(notes), "%s: a follower, no leader elected",
			               where);
			continue;
		}
		if (redirected || schedlist_parse_one(leader, NULL, &lead, err) == -1) {
			schedlist_note(notes, sizeof(notes), "%s: a follower, names %s", where,
			               leader);
			continue;
		}
		redirected = true;
		leader[0] = '\0';
		r = fn(&lead, arg, leader, sizeof(leader), err);
		attempts++;
		if (r == SCHED_TRY_OK)
			return 0;
		if (r == SCHED_TRY_FAILED)
			return -1;
		if (r == SCHED_TRY_UNREACHABLE) {
			schedlist_note(notes, sizeof(notes), "%s names leader %s: %s", where,
			               schedlist_addr_str(&lead, leader, sizeof(leader)), err->msg);
		} else {
			schedlist_note(notes, sizeof(notes), "%s names leader %s, a follower too",
			               where, schedlist_addr_str(&lead, leader, sizeof(leader)));
		}
	}
	/* One scheduler that was unreachable: its own message, as before lists existed. */
	if (l->n == 1 && attempts == 1 && !follower)
		return -1;
	if (follower)
		return err_set(err, 0, "no scheduler leads (an election may be under way): %s",
		               notes);
	return err_set(err, 0, "no scheduler answers: %s", notes);
}
