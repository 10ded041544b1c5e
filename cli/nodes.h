#ifndef SHOAL_CLI_NODES_H
#define SHOAL_CLI_NODES_H

struct cli_ctx;

extern const char nodes_usage[];

/* `shoal nodes`: the cluster's nodes as a table or JSON. */
int nodes_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
