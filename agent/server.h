#ifndef SHOAL_AGENT_SERVER_H
#define SHOAL_AGENT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server-t.h"

struct shoal_err;

int agent_server_init(struct agent_server *a, const struct agent_options *opt,
                      struct shoal_err *err);
int agent_server_run(struct agent_server *a);
void agent_server_free(struct agent_server *a);

#endif
