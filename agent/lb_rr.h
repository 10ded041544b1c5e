#ifndef SHOAL_AGENT_LB_RR_H
#define SHOAL_AGENT_LB_RR_H

#include "lb_ops.h"

/* Round-robin: strict rotation over the usable backends, fair across threads. */
extern const struct lb_ops lb_rr_ops;

#endif
