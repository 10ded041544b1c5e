#include "reconcile_dispatch.h"

#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "server-t.h"
#include "service.h"
#include "shoal.pb-c.h"
#include "task.h"
#include "util.h"

void
reconcile_dispatch(struct sched_server *srv, struct node *n)
{
	cleanup_free char **live = NULL;
	size_t nlive = 0;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Assignments as = SHOAL__ASSIGNMENTS__INIT;
	Shoal__TaskSpec *specs, **sp;
	Shoal__ServiceVersion *vers, **vp;
	size_t nt = 0, nv = 0;
	struct shoal_err err;

	if (n->conn == NULL || n->status != NODE_READY)
		return;
	specs = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*specs));
	sp = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*sp));
	vers = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*vers));
	vp = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*vp));
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
		for (k = 0; k < nv; k++)
			if (vers[k].version == t->version && vers[k].service == t->svc->name)
				break;
		if (k == nv) {
			shoal__service_version__init(&vers[nv]);
			vers[nv].service = t->svc->name;
			vers[nv].version = t->version;
			/* A task of an older version runs the previous spec. */
			vers[nv].spec_json =
			    t->version == t->svc->version || !t->svc->prev_spec_json
			        ? t->svc->spec_json
			        : t->svc->prev_spec_json;
			/* Pinned: the agent runs name@digest, whatever the tag says now. */
			vers[nv].image_digest = (char *)service_pin_get(t->svc, t->version);
			if (vers[nv].image_digest == NULL)
				vers[nv].image_digest = "";
			vp[nv] = &vers[nv];
			nv++;
		}
	}
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
	if (rpc_send(n->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "assignments to %s: %s", n->name, err.msg);
	else
		shoal_log(LOG_DEBUG, "assignments gen=%llu to %s: %zu tasks",
		          (unsigned long long)as.generation, n->name, nt);
	free(specs);
	free(sp);
	free(vers);
	free(vp);
}
