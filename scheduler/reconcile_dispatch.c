#include "reconcile_dispatch.h"

#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "server-t.h"
#include "service.h"
#include "shoal.pb-c.h"
#include "task.h"
#include "util.h"

/* The index in vers[0..nv) of t's (service, version), or nv. */
static size_t
find_version(const Shoal__ServiceVersion *vers, size_t nv, const struct task *t, uint64_t stamp)
{
	size_t k = t->svc->pack_idx;

	if (t->svc->pack_stamp == stamp && vers[k].version == t->version)
		return k;
	/* Two versions of one service on a node (a rolling update): look at them all. */
	for (k = 0; k < nv; k++)
		if (vers[k].version == t->version && vers[k].service == t->svc->name)
			return k;
	return nv;
}

void
reconcile_dispatch(struct sched_server *srv, struct node *n)
{
	static uint64_t stamp;
	cleanup_free char **live = NULL;
	size_t nlive = 0;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Assignments as = SHOAL__ASSIGNMENTS__INIT;
	Shoal__TaskSpec *specs, **sp;
	Shoal__ServiceVersion *vers, **vp;
	bool *held;
	size_t nt = 0, nv = 0, cap = n->ntasks ? n->ntasks : 1;
	struct shoal_err err;

	if (n->conn == NULL || n->status != NODE_READY)
		return;
	stamp++;
	specs = xcalloc(cap, sizeof(*specs));
	sp = xcalloc(cap, sizeof(*sp));
	vers = xcalloc(cap, sizeof(*vers));
	vp = xcalloc(cap, sizeof(*vp));
	held = xcalloc(cap, sizeof(*held));
	for (struct task *t = n->tasks; t; t = t->node_next) {
		Shoal__TaskSpec *ts;
		size_t k;
		if (t->phase == TASK_PHASE_SHUTDOWN || task_terminal(t))
			continue;
		ts = &specs[nt];
		shoal__task_spec__init(ts);
		ts->task_id = t->id;
		ts->name = t->name;
		ts->service = t->svc->name;
		ts->slot = t->slot;
		ts->version = t->version;
		sp[nt++] = ts;
		/* One spec per (service, version). A service's name string is its own: comparing
		 * the pointers compares the services. */
		k = find_version(vers, nv, t, stamp);
		if (k == nv) {
			shoal__service_version__init(&vers[nv]);
			vers[nv].service = t->svc->name;
			vers[nv].version = t->version;
			/* A task of an older version runs the previous spec. */
			vers[nv].spec_json = (char *)service_wire_spec(
			    t->svc, t->version == t->svc->version || !t->svc->prev_spec_json
			                ? t->svc->spec_json
			                : t->svc->prev_spec_json);
			/* Pinned: the agent runs name@digest, whatever the tag says now. The pin is
			 * sent every time: it may have come after the spec did. */
			vers[nv].image_digest = (char *)service_pin_get(t->svc, t->version);
			if (vers[nv].image_digest == NULL)
				vers[nv].image_digest = "";
			vp[nv] = &vers[nv];
			t->svc->pack_stamp = stamp;
			t->svc->pack_idx = nv;
			nv++;
		}
		/* The agent holds this task from an earlier frame of this session, and with it the
		 * version's spec: a new task of the version can take it from there. */
		held[k] |= t->sent;
	}
	if (n->keeps_specs)
		for (size_t k = 0; k < nv; k++)
			if (held[k])
				vers[k].spec_json = "";
	/* The agent keeps ended tasks' containers for their logs, of these services only. */
	live = xcalloc(srv->services.n + 1, sizeof(*live));
	for (size_t i = 0; i < srv->services.n; i++)
		if (!srv->services.v[i]->removed)
			live[nlive++] = srv->services.v[i]->name;
	as.services = live;
	as.n_services = nlive;
	as.generation = ++n->assign_gen;
	as.tasks = sp;
	as.n_tasks = nt;
	as.specs = vp;
	as.n_specs = nv;
	env.body_case = SHOAL__ENVELOPE__BODY_ASSIGNMENTS;
	env.assignments = &as;
	if (rpc_send(n->conn, &env, &err) == -1) {
		shoal_log(LOG_WARNING, "assignments to %s: %s", n->name, err.msg);
	} else {
		shoal_log(LOG_DEBUG, "assignments gen=%llu to %s: %zu tasks",
		          (unsigned long long)as.generation, n->name, nt);
		for (struct task *t = n->tasks; t; t = t->node_next)
			if (t->phase != TASK_PHASE_SHUTDOWN && !task_terminal(t))
				t->sent = true;
	}
	free(specs);
	free(sp);
	free(vers);
	free(vp);
	free(held);
}
