#ifndef SHOAL_CLI_NODES_H
#define SHOAL_CLI_NODES_H

struct cli_ctx;

extern const char nodes_usage[];
extern const char nodes_drain_usage[];
extern const char nodes_activate_usage[];
extern const char nodes_node_usage[];

/* `shoal nodes`: the cluster's nodes as a table or JSON. */
int nodes_cmd(struct cli_ctx *ctx, int argc, char **argv);

/* `shoal drain NODE`: place no task on NODE and move its tasks away. */
int nodes_drain_cmd(struct cli_ctx *ctx, int argc, char **argv);
/* `shoal activate NODE`: let NODE take tasks again. */
int nodes_activate_cmd(struct cli_ctx *ctx, int argc, char **argv);
/* `shoal node rm [--force] NODE`: forget a node and its key binding. */
int nodes_node_cmd(struct cli_ctx *ctx, int argc, char **argv);

#endif
