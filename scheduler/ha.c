#include "ha.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "err.h"
#include "etcd.h"
#include "leader.h"
#include "log.h"
#include "reconcile.h"
#include "server.h"
#include "shoal.pb-c.h"
#include "store_etcd.h"
#include "util.h"

/* Lease TTL: a dead leader's successor campaigns within this (failover < 5 s). */
#define HA_TTL_S 3
/* Per attempt of an etcd request: a write the leader blocks on with etcd unreachable fails
 * within endpoints x this, near the TTL, not after a long stall. */
#define HA_ETCD_TIMEOUT_MS 1000

struct ha {
	struct sched_server *srv;
	struct etcd *etcd;
	struct leader *leader;
	bool leading; /* elected and its state loaded */
	char leader_addr[256];
	char *const *argv; /* to re-execute when deposed */
};

void
ha_not_leader_message(const char *leader, char *buf, size_t len)
{
	if (leader && leader[0])
		snprintf(buf, len, "not the leader; the leader is %s", leader);
	else
		snprintf(buf, len,
		         "not the leader; no scheduler leads at the moment (an election is under "
		         "way, or etcd has lost its quorum)");
}

/* Step down: replace this process by a fresh follower. Never returns. */
static void
restart_as_follower(struct ha *ha, const char *why)
{
	shoal_log(LOG_WARNING, "stepping down: %s; restarting as a follower", why);
	/* Every socket (agents, CLI, etcd, the listener) closes with the old image: no
	 * Assignment queued by this deposed leader leaves. stdio stays for the log. */
	closefrom(3);
	execv("/proc/self/exe", (char *const *)ha->argv);
	fprintf(stderr, "shoal-scheduler: cannot restart as a follower: %s\n", strerror(errno));
	_exit(1);
}

static void
on_elected(int64_t fence, void *arg)
{
	struct ha *ha = arg;
	struct sched_server *srv = ha->srv;
	struct shoal_err err;

	store_etcd_set_fence(srv->store.etcd, leader_key(ha->leader), fence,
	                     leader_value(ha->leader));
	/* As after a restart: nodes wait for their agents (restart grace), tasks keep running
	 * and are matched to the agents' reports. */
	srv->started = util_now_ms();
	if (nodes_load(&srv->nodes, &srv->store, &err) == -1 || reconcile_load(srv, &err) == -1) {
		char why[320];
		snprintf(why, sizeof(why), "cannot load the state from etcd: %s", err.msg);
		restart_as_follower(ha, why);
	}
	ha->leading = true;
	shoal_log(LOG_NOTICE, "leading (fence %lld): %zu nodes, %zu services loaded from etcd",
	          (long long)fence, srv->nodes.n, srv->services.n);
}

static void
on_deposed(const char *why, void *arg)
{
	struct ha *ha = arg;

	if (ha->leading)
		restart_as_follower(ha, why);
}

static void
on_leader_is(const char *id, const char *address, void *arg)
{
	struct ha *ha = arg;

	(void)id;
	if (strcmp(ha->leader_addr, address ? address : "") != 0)
		shoal_log(LOG_INFO, "leader: %s", address && address[0] ? address : "none");
	snprintf(ha->leader_addr, sizeof(ha->leader_addr), "%s", address ? address : "");
}

static const struct leader_ops ha_leader_ops = {
    .elected = on_elected,
    .deposed = on_deposed,
    .leader_is = on_leader_is,
};

/* A write refused by the fence: another scheduler leads. */
static void
on_fenced(const char *why, void *arg)
{
	restart_as_follower(arg, why);
}

/* Between the transactions of a long synchronous commit: keep the lease. */
static void
on_commit_progress(void *arg)
{
	struct ha *ha = arg;

	leader_renew_sync(ha->leader);
}

int
ha_init(struct sched_server *srv, const struct sched_options *opt, struct shoal_err *err)
{
	struct ha *ha = xcalloc(1, sizeof(*ha));
	struct etcd_config ec = {
	    .endpoints = opt->store,
	    .cacert = opt->etcd_cacert,
	    .cert = opt->etcd_cert,
	    .key = opt->etcd_key,
	    .timeout_ms = HA_ETCD_TIMEOUT_MS,
	};
	struct leader_config lc = {
	    .prefix = opt->store_prefix ? opt->store_prefix : "/shoal/",
	    .id = srv->advertise,
	    .address = srv->advertise,
	    .ttl_s = opt->lease_ttl_s ? opt->lease_ttl_s : HA_TTL_S,
	};

	ha->srv = srv;
	ha->argv = opt->argv;
	srv->ha = ha;
	if (opt->argv == NULL)
		return err_set(err, 0, "ha: no command line to restart with");
	ha->etcd = etcd_new(srv->base, &ec, err);
	if (ha->etcd == NULL)
		return err_prefix(err, "--store");
	if (store_open_etcd(&srv->store, ha->etcd, lc.prefix, err) == -1)
		return err_prefix(err, "--store-prefix");
	srv->store.fenced = on_fenced;
	srv->store.fenced_arg = ha;
	srv->store.etcd->between = on_commit_progress;
	srv->store.etcd->between_arg = ha;
	ha->leader = leader_new(ha->etcd, srv->base, &lc, &ha_leader_ops, ha, err);
	if (ha->leader == NULL)
		return -1;
	srv->leader_id = srv->advertise;
	return 0;
}

void
ha_start(struct sched_server *srv)
{
	if (srv->ha) {
		shoal_log(LOG_INFO, "store: etcd at %s; campaigning as %s", etcd_endpoint(srv->ha->etcd),
		          srv->advertise);
		leader_start(srv->ha->leader);
	}
}

void
ha_free(struct sched_server *srv)
{
	struct ha *ha = srv->ha;

	if (ha == NULL)
		return;
	if (ha->leader) {
		/* Shutting down: the resignation's deposed callback must not restart us. */
		ha->leading = false;
		if (leader_is_leader(ha->leader))
			leader_resign(ha->leader);
		leader_free(ha->leader);
	}
	/* The store borrows the client: it is closed (memory only) after this. */
	if (ha->etcd)
		etcd_free(ha->etcd);
	free(ha);
	srv->ha = NULL;
}

bool
ha_acting(const struct sched_server *srv)
{
	return srv->ha == NULL || (srv->ha->leading && leader_is_leader(srv->ha->leader));
}

bool
ha_refuse(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__Error e = SHOAL__ERROR__INIT;
	char msg[320];
	struct shoal_err err;

	if (ha_acting(srv))
		return false;
	/* Leading by the lease but not by the local clock any more: the step-down is due. */
	ha_not_leader_message(srv->ha->leading ? "" : srv->ha->leader_addr, msg, sizeof(msg));
	e.code = SHOAL_ENOTLEADER;
	e.message = msg;
	e.leader = srv->ha->leading ? "" : srv->ha->leader_addr;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_ERROR;
	reply.error = &e;
	if (rpc_send(sc->rpc, &reply, &err) == -1)
		shoal_log(LOG_WARNING, "reply to %s: %s", rpc_conn_peer(sc->rpc), err.msg);
	return true;
}
