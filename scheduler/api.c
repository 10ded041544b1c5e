#include "api.h"

#include <errno.h>

#include "api_agent.h"
#include "api_node.h"
#include "api_service.h"
#include "evstream.h"
#include "log.h"
#include "logs.h"
#include "reply.h"
#include "server-t.h"
#include "shoal.pb-c.h"
#include "util.h"
#include "version.h"

static void
get_version(struct sched_conn *sc, const Shoal__Envelope *env)
{
	reply_ok(sc, env->id, "%s", version_string());
}

/*
 * Every request the scheduler answers: its body, the token that may send it (agents report,
 * the CLI administers) and the module that handles it (api_agent.c, api_node.c,
 * api_service.c; logs and exec in logs.c, events in evstream.c). A body not listed is
 * refused as unsupported. A new request is one row, at the end.
 */
static const struct {
	Shoal__Envelope__BodyCase body;
	enum token_role role;
	void (*handle)(struct sched_conn *sc, const Shoal__Envelope *env);
} requests[] = {
    /* From agents. */
    {SHOAL__ENVELOPE__BODY_REGISTER, TOKEN_ROLE_WORKER, api_agent_register},
    {SHOAL__ENVELOPE__BODY_HEARTBEAT, TOKEN_ROLE_WORKER, api_agent_heartbeat},
    {SHOAL__ENVELOPE__BODY_TASK_REPORT, TOKEN_ROLE_WORKER, api_agent_task_report},
    {SHOAL__ENVELOPE__BODY_PROXY_HINT, TOKEN_ROLE_WORKER, api_agent_proxy_hint},
    {SHOAL__ENVELOPE__BODY_LOG_CHUNK, TOKEN_ROLE_WORKER, logs_chunk},
    {SHOAL__ENVELOPE__BODY_EXEC_OUTPUT, TOKEN_ROLE_WORKER, logs_exec_output},
    {SHOAL__ENVELOPE__BODY_ENDPOINTS_SUBSCRIBE, TOKEN_ROLE_WORKER, api_agent_endpoints_subscribe},
    /* From the CLI: services and their tasks. */
    {SHOAL__ENVELOPE__BODY_APPLY, TOKEN_ROLE_ADMIN, api_service_apply},
    {SHOAL__ENVELOPE__BODY_LIST_SERVICES, TOKEN_ROLE_ADMIN, api_service_list},
    {SHOAL__ENVELOPE__BODY_LIST_TASKS, TOKEN_ROLE_ADMIN, api_service_list_tasks},
    {SHOAL__ENVELOPE__BODY_SCALE, TOKEN_ROLE_ADMIN, api_service_scale},
    {SHOAL__ENVELOPE__BODY_REMOVE_SERVICE, TOKEN_ROLE_ADMIN, api_service_remove},
    {SHOAL__ENVELOPE__BODY_ROLLBACK, TOKEN_ROLE_ADMIN, api_service_rollback},
    /* From the CLI: nodes. */
    {SHOAL__ENVELOPE__BODY_LIST_NODES, TOKEN_ROLE_ADMIN, api_node_list},
    {SHOAL__ENVELOPE__BODY_SET_AVAILABILITY, TOKEN_ROLE_ADMIN, api_node_set_availability},
    {SHOAL__ENVELOPE__BODY_REMOVE_NODE, TOKEN_ROLE_ADMIN, api_node_remove},
    {SHOAL__ENVELOPE__BODY_UPDATE_NODE, TOKEN_ROLE_ADMIN, api_node_update},
    /* From the CLI: logs, exec, events, version. */
    {SHOAL__ENVELOPE__BODY_LOGS, TOKEN_ROLE_ADMIN, logs_start},
    {SHOAL__ENVELOPE__BODY_EXEC, TOKEN_ROLE_ADMIN, logs_exec_start},
    {SHOAL__ENVELOPE__BODY_EXEC_INPUT, TOKEN_ROLE_ADMIN, logs_exec_input},
    {SHOAL__ENVELOPE__BODY_EVENTS, TOKEN_ROLE_ADMIN, evstream_start},
    {SHOAL__ENVELOPE__BODY_GET_VERSION, TOKEN_ROLE_ADMIN, get_version},
};

void
api_handle(struct sched_conn *sc, const Shoal__Envelope *env)
{
	enum token_role have = rpc_conn_role(sc->rpc);
	size_t i;

	for (i = 0; i < ARRAY_SIZE(requests); i++)
		if (requests[i].body == env->body_case)
			break;
	if (i == ARRAY_SIZE(requests)) {
		reply_error(sc, env->id, EOPNOTSUPP, "unsupported request (body %d)",
		            (int)env->body_case);
		return;
	}
	if (requests[i].role != have) {
		shoal_log(LOG_WARNING, "%s: refused a %s request from a %s token",
		          rpc_conn_peer(sc->rpc), token_role_name(requests[i].role),
		          token_role_name(have));
		if (requests[i].role == TOKEN_ROLE_ADMIN)
			reply_error(sc, env->id, EACCES,
			            "permission denied: this is a worker token; admin "
			            "requests need the admin token (admin.token in the "
			            "scheduler's data dir)");
		else
			reply_error(sc, env->id, EACCES,
			            "permission denied: only agents (worker token) may send "
			            "this");
		return;
	}
	requests[i].handle(sc, env);
}
