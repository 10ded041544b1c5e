#ifndef SHOAL_CLI_WATCH_H
#define SHOAL_CLI_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cli_ctx;
typedef struct Shoal__Event Shoal__Event;

/*
 * Watching a rollout (`shoal apply`, `scale`, `rollback` without --detach): the scheduler's
 * event stream for the services, from the seq its reply named, until each one converges
 * (every slot running, healthy, at the current version) or fails: its update paused or
 * rolled back, or it made no progress for update.timeout (`stuck`). In a terminal one live
 * line per slot, as `docker service update` draws; otherwise one plain line per event.
 */

enum watch_kind {
	WATCH_APPLY = 0, /* apply, scale: a rollback is a failure */
	WATCH_ROLLBACK,  /* `shoal rollback`: rolled back is the goal */
};

#define WATCH_MAX_SLOTS 64 /* slots drawn per service in a terminal; more are summed up */

struct watch_slot {
	uint32_t num;
	char task[96];
	char action[24];
	char node[64];
	char message[160];
	uint64_t version;
};

struct watch_service {
	const char *name; /* borrowed */
	bool done, failed;
	char status[320]; /* "updating 2/3", "converged: 3/3 running", the failure's reason */
	uint64_t version; /* the version the rollout goes to, 0 until known */
	struct watch_slot *slots;
	size_t nslots;
};

struct watch_state {
	enum watch_kind kind;
	struct watch_service *v;
	size_t n;
	bool tty;     /* redraw lines in place */
	size_t drawn; /* lines drawn last time (tty) */
	uint64_t last_seq;
	bool streaming; /* the history batch was read */
	FILE *out;
};

/* Feed one event to the state: true when it changed something worth printing. Plain mode
 * prints its line to st->out here. */
bool watch_event(struct watch_state *st, const Shoal__Event *e);
/* Every service done (converged, or failed)? */
bool watch_finished(const struct watch_state *st);
/* Redraw the live lines (tty). */
void watch_draw(struct watch_state *st);

/* Take -d/--detach out of argv (shifting the rest down, *argc shrinks): whether it was there. */
bool watch_detach_arg(int *argc, char **argv);

/*
 * Watch services[0..n) from the event after since_seq. Returns 0 when every one converged,
 * 1 when one failed or the stream broke (the reason on stderr).
 */
int watch_rollout(struct cli_ctx *ctx, const char *const *services, size_t n, uint64_t since_seq,
                  enum watch_kind kind);

#endif
