#ifndef SHOAL_AGENT_RETIRED_H
#define SHOAL_AGENT_RETIRED_H

#include <stddef.h>

struct shoal_err;

/*
 * Ended tasks' containers, kept stripped (state.json and log: container_strip) so their
 * output outlives them: `shoal logs` of a crashed task, `--previous`, `shoalrt logs`. The
 * scheduler keeps SLOT_HISTORY (3) ended tasks per slot and the slot's current one may have
 * ended too: the agent keeps that many containers per slot (by name, SERVICE.SLOT.xxxx,
 * newest finished first) and at most
 * RETIRED_MAX in all, so a removed service's leftovers age out too. Each holds at most two
 * log files of CONTAINER_LOG_MAX.
 */
#define RETIRED_PER_SLOT 4
#define RETIRED_MAX      64

/* Remove the exited containers under root beyond those limits, and every one of gone_service
 * (being removed; NULL: none). Blocking: a worker's job. Returns how many went. */
size_t retired_prune(const char *root, const char *gone_service, struct shoal_err *err);

/* "web.3" of the container name "web.3.k3x9" into out (a name without two dots: itself). */
void retired_slot_of(const char *name, char *out, size_t outlen);

#endif
