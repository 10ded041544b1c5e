#ifndef SHOAL_AGENT_EXEC_H
#define SHOAL_AGENT_EXEC_H

#include <stdint.h>

struct logs;
typedef struct Shoal__ExecRequest Shoal__ExecRequest;
typedef struct Shoal__ExecInput Shoal__ExecInput;

/*
 * `shoal exec` on this node: the scheduler relays an ExecRequest here over the session (as it
 * does logs). The command runs through `shoal-shim exec` (container_exec_start), so exactly
 * as confined as the container's own process; its stdout and stderr come back as ExecOutput
 * frames with the request's id, the last one carrying its exit status. The sessions hang off
 * the agent's log service, the other thing the scheduler relays.
 */

/* A request: start the command, or (cancel) kill the one started with id. */
void exec_request(struct logs *l, uint64_t id, const Shoal__ExecRequest *req);
/* -i/-t: input for (or a resize of the terminal of) the command started with id. Input the
 * command does not read yet is held (up to 16 MiB, then its stdin is closed with a message). */
void exec_input(struct logs *l, uint64_t id, const Shoal__ExecInput *in);
/* The session dropped: every command is killed (nobody reads its output any more). */
void exec_reset(struct logs *l);

#endif
