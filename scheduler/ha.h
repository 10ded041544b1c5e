#ifndef SHOAL_SCHEDULER_HA_H
#define SHOAL_SCHEDULER_HA_H

#include <stdbool.h>

#include "rpc.h"

/*
 * Several schedulers on one etcd store, one of them leading (leader.h). A scheduler starts as
 * a follower: it holds no state, answers every request with Error{SHOAL_ENOTLEADER, leader}
 * and does no work. Elected, it loads the desired state from etcd (as a restart does from
 * SQLite) and learns the observed state from the agents as they register, so no container is
 * restarted. Deposed (its lease lost, or a write refused by the fence), it re-executes itself
 * at once: every connection, queued Assignment and in-memory belief of a leader is dropped in
 * one step, nothing more is sent, and the new process campaigns again as a follower.
 */

struct sched_server;
struct sched_conn;
struct sched_options;
struct shoal_err;
struct ha;

/* Open the etcd store of opt->store into srv->store and make srv a contender (not started);
 * srv->base must exist. */
int ha_init(struct sched_server *srv, const struct sched_options *opt, struct shoal_err *err);
/* Start campaigning (after the listener is up). */
void ha_start(struct sched_server *srv);
/* Resign if leading (a successor need not wait for the TTL) and free; before the event base
 * goes. NULL-safe. */
void ha_free(struct sched_server *srv);

/* True when srv acts: the SQLite store, or etcd and this scheduler leads. */
bool ha_acting(const struct sched_server *srv);

/* A request to a scheduler that does not lead: answer NOT_LEADER and return true. */
bool ha_refuse(struct sched_conn *sc, const Shoal__Envelope *env);

/* The text a follower answers (pure; unit-tested). */
void ha_not_leader_message(const char *leader, char *buf, size_t len);

#endif
