#ifndef SHOAL_CLI_SERVICES_H
#define SHOAL_CLI_SERVICES_H

#include <stddef.h>
#include <stdint.h>

struct cli_ctx;
struct service_spec;
struct shoal_err;

extern const char services_usage[];
extern const char services_inspect_usage[];
extern const char services_scale_usage[];
extern const char services_rm_usage[];
extern const char services_rollback_usage[];

/* Most replicas a scale asks for: the manifest's own bound (manifests/README.md). */
#define SERVICES_MAX_REPLICAS 10000

/*
 * Format a spec's ports for the PORTS column: "8080->8080,8081->80", an unpublished port as
 * its target alone, "-" when there is none. Truncates to len; returns buf.
 */
char *services_format_ports(const struct service_spec *spec, char *buf, size_t len);

/*
 * Parse one `shoal scale` argument "NAME=REPLICAS" (REPLICAS 0 to 10000, digits only) into
 * name (NUL-terminated, at most namelen - 1 characters) and *replicas. -1 with a message that
 * quotes arg when it is malformed.
 */
int services_parse_scale(const char *arg, char *name, size_t namelen, uint32_t *replicas,
                         struct shoal_err *err);

/* `shoal services [--stats]`: the services as a table or JSON. */
int services_cmd(struct cli_ctx *ctx, int argc, char **argv);
/* `shoal inspect SERVICE`: one service, its spec and its tasks as JSON. */
int services_inspect_cmd(struct cli_ctx *ctx, int argc, char **argv);
/* `shoal scale NAME=N ...`: one all-or-nothing ScaleRequest. */
int services_scale_cmd(struct cli_ctx *ctx, int argc, char **argv);
/* `shoal rm SERVICE ...`: remove each; report every missing one, exit 1 if any. */
int services_rm_cmd(struct cli_ctx *ctx, int argc, char **argv);
/* `shoal rollback SERVICE`: back to the previous spec. */
int services_rollback_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
